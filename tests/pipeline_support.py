"""Shared helpers for the pipeline and CLI tests: a small emulator world and access to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spotlake.clock import FakeClock
from spotlake.collect.auth import AzureCredentials, TokenProvider
from spotlake.pipeline import AzureAccess
from spotlake.testing.azure import AzureEmulator
from spotlake.testing.world import World

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def small_world(seed: int = 11) -> World:
    return World.generate(seed, n_regions=6, n_sizes=40)


def emulator(world: World | None = None, **kwargs: object) -> AzureEmulator:
    return AzureEmulator(world or small_world(), clock=FakeClock(T0), **kwargs)  # type: ignore[arg-type]


def credentials_of(emu: AzureEmulator) -> AzureCredentials:
    return AzureCredentials(
        tenant_id=emu.tenant_id,
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        subscriptions=emu.subscriptions,
    )


def in_process_access(emu: AzureEmulator) -> AzureAccess:
    creds = credentials_of(emu)
    azure_transport = emu.azure_transport()
    return AzureAccess(
        credentials=creds,
        transport=emu.transport(),
        azure_transport=azure_transport,
        token=TokenProvider(creds, transport=azure_transport, clock=emu.clock),
    )


def run_time(i: int) -> datetime:
    """The i-th 10-minute run time from T0."""
    return T0 + timedelta(minutes=10 * i)


def fill_store(root: object, runs: int) -> object:
    """``runs`` committed 10-minute runs of the small world's emulator into a store at ``root``."""
    from pathlib import Path

    from spotlake.pipeline import run_cycle
    from spotlake.storage import open_store

    emu = emulator()
    store = open_store(str(root))
    for i in range(runs):
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        report = run_cycle(run_time(i), store=store, azure=in_process_access(emu), clock=emu.clock)
        assert report.status == "committed", report
    return Path(str(root))
