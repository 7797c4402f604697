"""The ``spotlake`` command's help: the epilogs (environment, exit codes, times, the ``show --json``
shape) and a formatter that shows every option's default."""

from __future__ import annotations

import argparse
from typing import Any

from spotlake import __version__
from spotlake.cli._format import GRID_MINUTES

__all__ = ["ENVIRONMENT", "EPILOG", "SHOW_EPILOG", "HelpFormatter", "Parser"]

ENVIRONMENT = """\
environment:
  AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_SUBSCRIPTION_IDS (comma-separated)
      the service principal `collect azure` uses (--credentials env, the default)
  SPOTLAKE_STORE              the default --store (else ./spotlake-data)
  SPOTLAKE_SLACK_WEBHOOK_URL  the webhook `collect azure --slack` posts to (else the SSM parameter)
  AWS_PROFILE, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, ...
      boto3's usual variables, for s3:// stores, --credentials dynamodb and the AWS sinks
  AWS_BATCH_JOB_ARRAY_INDEX   the shard index of `collect azure --shard auto/N`"""

EPILOG = f"""\
{ENVIRONMENT}

exit codes:
  0 done (or already done); 1 the run failed; 2 bad usage or configuration (also: no store at
  --store, no run at `show --at`); 3 committed, but some SPS calls failed or the sinks were not fed;
  75 another run holds the store's lock; 141 stdout was closed early (e.g. piped into head)

times:
  every time printed, text or JSON, is ISO 8601 UTC to the second: 2026-03-02T00:10:00+00:00.
  `collect` snaps its run time (--at or now) down to the {GRID_MINUTES}-minute grid: 12:17 runs as 12:10,
  so a rerun within the same {GRID_MINUTES} minutes is the same run (a no-op once committed).

version {__version__}; `python -m spotlake` is the same command."""

SHOW_EPILOG = """\
--json prints one object (the shape is stable):
  {"kind": "merged" | "changes", "run_at": TIME | null, "total": N, "shown": N,
   "truncated": true | false, "rows": [{COLUMN: VALUE, ...}, ...]}
  total counts the rows passing --where; truncated is true when --limit cut rows off (shown < total).
  Times are ISO 8601 UTC (2026-03-02T00:10:00+00:00); a missing value is null.

exit codes: 0 rows shown (also an existing store with no run committed yet: total 0, no rows);
  2 no store at --store (a local directory that does not exist), no run at --at, a bad --where.
  An s3:// prefix with nothing under it is an empty store."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs as written; every option with a value shows its default (unless its help says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if (
            not text
            or "default" in text
            or not action.option_strings
            or action.nargs == 0
            or action.default in (None, argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser with :class:`HelpFormatter` (its subcommands' parsers too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
