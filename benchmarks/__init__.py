"""spotlake benchmarks. Run ``make bench`` (``python -m benchmarks``).

Each ``benchmarks/bench_*.py`` module defines ``run(quick: bool) -> dict`` returning::

    {"name": str, "title": str, "rows": [dict, ...], "targets": {description: bool},
     "markdown": str}

``rows`` hold the measured numbers (ours and the baselines measured in the same run), ``targets``
the issue's goals checked against them, and ``markdown`` a short human section for the report.
"""
