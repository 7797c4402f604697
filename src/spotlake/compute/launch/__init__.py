"""Launchers: the one narrow protocol (:mod:`.base`), EC2 (:mod:`.ec2`), an in-memory fake (:mod:`.fake`)."""

from __future__ import annotations

from spotlake.compute.launch.base import (
    EC2_FAILURES,
    Instance,
    Launcher,
    LaunchError,
    LaunchFailure,
    LaunchResult,
)
from spotlake.compute.launch.ec2 import Ec2Launcher
from spotlake.compute.launch.fake import FakeLauncher

__all__ = [
    "EC2_FAILURES",
    "Ec2Launcher",
    "FakeLauncher",
    "Instance",
    "LaunchError",
    "LaunchFailure",
    "LaunchResult",
    "Launcher",
]
