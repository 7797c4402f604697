"""Stores (local directory, S3) and sinks (Timestream, CloudWatch) for snapshots, changes and state."""
