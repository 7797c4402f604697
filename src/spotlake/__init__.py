"""spotlake: spot-instance intelligence.

Collect Azure Spot Placement Scores, spot/on-demand prices, eviction rates and size families;
plan the rate-limited SPS calls; merge, score (T2/T3) and diff them into a clean time series;
store it locally or on AWS; and allocate compute spot-first with on-demand fallback.

Importing ``spotlake`` is cheap: boto3 and the Azure SDKs are imported only by the adapters
that use them.
"""

from __future__ import annotations

from spotlake.clock import Clock, FakeClock, SystemClock
from spotlake.errors import SpotlakeError, TransientError
from spotlake.model import DESIRED_COUNTS, Secret, SpsCall

__version__ = "0.1.0"

__all__ = [
    "DESIRED_COUNTS",
    "Clock",
    "FakeClock",
    "Secret",
    "SpotlakeError",
    "SpsCall",
    "SystemClock",
    "TransientError",
    "__version__",
]
