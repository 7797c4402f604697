"""An offline, deterministic Azure for tests, demos and benchmarks.

::

    from spotlake.testing.world import World
    from spotlake.testing.azure import AzureEmulator, Faults, EndpointFaults

    emu = AzureEmulator(World.generate(seed=1))
    client = httpx.Client(transport=emu.transport(), base_url="https://emulator")
    with emu.serve() as base_url: ...                   # loopback HTTP server

Or from a shell: ``python -m spotlake.testing.azure serve --port 0 --seed 1`` (prints the URL and
the credentials on one line). See ``docs/emulator.md``.
"""

from spotlake.testing.azure.emulator import AzureEmulator, EmulatorStats, Reply
from spotlake.testing.faults import Decision, EndpointFaults, Faults, fault_matrix

__all__ = [
    "AzureEmulator",
    "Decision",
    "EmulatorStats",
    "EndpointFaults",
    "Faults",
    "Reply",
    "fault_matrix",
]
