"""Argument types the subcommands share."""

from __future__ import annotations

import argparse

__all__ = ["positive_float"]


def positive_float(text: str) -> float:
    """An argparse type: a number above zero (``nan`` and ``-1`` are refused alike)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
