"""Collectors of Azure spot data: prices, placement scores, eviction rates and size families.

See ``docs/collectors.md``. Each collector follows :class:`spotlake.collect.base.Collector`.
"""
