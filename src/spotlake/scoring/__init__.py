"""Pure scoring engine: SPS call planner, desired-count rotation, merge, T2/T3 history and diff."""
