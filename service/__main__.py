"""`python -m service`: serves with settings from the DEEPSVDD_* environment variables."""

from __future__ import annotations

import sys

from service.server import serve
from service.settings import Settings, describe_error


def main() -> None:
    try:
        settings = Settings()
    except ValueError as exc:
        sys.exit(f"bad settings: {describe_error(exc)}")
    serve(settings)


if __name__ == "__main__":
    main()
