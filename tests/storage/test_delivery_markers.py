"""Delivery markers do not pile up: the daily sweep removes those of runs long past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from spotlake.clock import FakeClock
from spotlake.storage import LocalStore
from spotlake.storage.core import DELIVERY_MARKER_AGE
from spotlake.storage.layout import DELIVERED_PREFIX

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_sweep_removes_delivery_markers_older_than_any_outbox_needs(tmp_path: Path) -> None:
    """Before: a marker per run and sink was written (144 a day per sink) and never removed."""
    clock = FakeClock(T0)
    store = LocalStore(tmp_path, clock=clock, fsync=False)
    old = store.stage(T0).name
    store.mark_delivered(old, "timeseries")
    store.mark_delivered(old, "compat-bucket")
    clock.advance(DELIVERY_MARKER_AGE.total_seconds())
    recent = store.stage(clock.now()).name
    store.mark_delivered(recent, "timeseries")
    clock.advance(3600)
    store.sweep(older_than=timedelta(hours=6), temporaries=False)  # the sweep of every run: no walk
    assert store.is_delivered(old, "timeseries")
    store.sweep(older_than=timedelta(hours=6))  # the daily one
    assert not store.is_delivered(old, "timeseries") and not store.is_delivered(old, "compat-bucket")
    assert store.is_delivered(recent, "timeseries")
    assert store.backend.children(DELIVERED_PREFIX) == [recent + "/"]
