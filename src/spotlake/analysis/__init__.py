"""Reading what spotlake collected: ``spotlake.open(store)`` and its frames (docs/analysis.md)."""

from spotlake.analysis.lake import CELL, VALUE_COLUMNS, Analysis, When, open

__all__ = ["CELL", "VALUE_COLUMNS", "Analysis", "When", "open"]
