"""What every `deepsvdd` command shares: the one-line user error, checked number types, output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


class UsageError(Exception):
    """A problem with the user's arguments or data, reported in one line."""


def checked(
    parse: Callable[[str], float], ok: Callable[[float], bool], rule: str
) -> Callable[[str], Any]:
    """An argparse type: parses with `parse` and refuses values outside `rule`."""
    kind = "an integer" if parse is int else "a number"

    def convert(text: str) -> float:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{value} must be {rule}")
        return value

    return convert


positive_int = checked(int, lambda v: v >= 1, ">= 1")
nonneg_int = checked(int, lambda v: v >= 0, ">= 0")
positive_float = checked(float, lambda v: v > 0, "> 0")
rate = checked(float, lambda v: 0.0 < v < 1.0, "in (0, 1)")
nu_value = checked(float, lambda v: 0.0 < v <= 1.0, "in (0, 1] (nu)")


def comma_list(text: str) -> tuple[str, ...]:
    """An argparse type: 'A,B' -> ("A", "B"), empty entries dropped."""
    return tuple(part for part in text.split(",") if part.strip())


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, default=float))
