"""Fixtures for the emulator's own tests: small worlds so every test stays fast."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from spotlake.clock import FakeClock
from spotlake.testing.azure import AzureEmulator
from spotlake.testing.world import World


@pytest.fixture(scope="session")
def small_world() -> World:
    return World.generate(7, n_regions=22, n_sizes=120)


@pytest.fixture
def emu(small_world: World) -> AzureEmulator:
    return AzureEmulator(small_world, clock=FakeClock())


@pytest.fixture
def client(emu: AzureEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=emu.transport(), base_url="https://management.azure.com") as c:
        yield c


@pytest.fixture
def auth(emu: AzureEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.issue_token()}"}
