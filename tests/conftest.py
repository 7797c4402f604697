"""Test-wide configuration: the hypothesis profiles.

``default`` (plain ``pytest`` and ``make test``): a fifth of the examples, so the suite stays fast.
``ci``: the full depth (100 examples per property, the per-test numbers as written).
``HYPOTHESIS_PROFILE=ci pytest`` selects ``ci`` (also the choice when ``CI`` is set and
``HYPOTHESIS_PROFILE`` is not); ``pytest --hypothesis-profile=ci`` works too.

A test that needs more or fewer examples than the profile's writes
``@settings(max_examples=examples(N))`` (``hypothesis_support.examples``): N in ``ci``, scaled down
with the profile in ``default``, never a bare number, which would override every profile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from hypothesis_support import CI_EXAMPLES, DEFAULT_EXAMPLES

if TYPE_CHECKING:
    from spotlake.testing.azure import AzureEmulator

settings.register_profile("ci", settings.get_profile("default"), max_examples=CI_EXAMPLES)
settings.register_profile("default", settings.get_profile("default"), max_examples=DEFAULT_EXAMPLES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))


@pytest.fixture(scope="session")
def filled_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store the pipeline filled with 13 runs of the emulator's small world (one whole rotation
    of the desired counts and two repeats), shared by the read tests of every pytest-xdist worker
    (the first to get here fills it, under a file lock): they only read it (the digests and
    roll-ups they write are a cache, safe to build from several processes at once)."""
    import fcntl

    from pipeline_support import fill_store

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "filled-store"
    with (shared.parent / "filled-store.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (shared / ".filled").exists():
            fill_store(shared, 13)
            (shared / ".filled").touch()
    return shared


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AzureEmulator, str]]:
    """The small world's emulator on 127.0.0.1, its credentials in the ``AZURE_*`` variables."""
    from pipeline_support import emulator

    emu = emulator()
    monkeypatch.setenv("AZURE_TENANT_ID", emu.tenant_id)
    monkeypatch.setenv("AZURE_CLIENT_ID", emu.client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", emu.client_secret)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_IDS", ",".join(emu.subscriptions))
    with emu.serve() as url:
        yield emu, url
