"""Progress lines of the long experiments: the time of day they are printed at."""

from __future__ import annotations

import datetime as dt


def now() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")
