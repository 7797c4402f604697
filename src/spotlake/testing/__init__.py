"""Test support shipped with spotlake: a faithful, deterministic Azure emulator and fakes."""
