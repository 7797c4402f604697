"""Spot-first compute allocation with on-demand fallback (from the DCluster resource manager)."""
