"""``python -m spotlake``: the same as the ``spotlake`` command."""

from spotlake.cli import main

raise SystemExit(main())
