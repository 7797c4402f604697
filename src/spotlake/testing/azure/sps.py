"""The emulated Spot Placement Scores API and its quota.

``POST /subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/placementScores/spot/generate``
scores every (size, region[, zone]) of the request from the world's SPS model at the emulator clock's
time. Checks run in the real API's order: api-version, bearer token, subscription (404 unknown, 403
forbidden), URL location; then the quota is taken (so requests that fail validation still count);
then the body is validated, naming the first offending value.

The quota is per (subscription, URL location): at most ``sps_calls_per_hour`` calls in a sliding
window of :data:`SPS_WINDOW_SECONDS`; over it, a plain-text 429 with ``Retry-After`` (the seconds
until the oldest call leaves the window).
"""

from __future__ import annotations

import collections
import json
import math
import re
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from spotlake.clock import ensure_utc
from spotlake.model import MAX_SPS_REGIONS, MAX_SPS_SIZES
from spotlake.testing.azure._arm import check_api_version
from spotlake.testing.azure._replies import Reply, ServiceRequest, error_reply, ok_reply, too_many_requests

if TYPE_CHECKING:
    from spotlake.testing.azure.emulator import AzureEmulator
    from spotlake.testing.azure.identity import IdentityService

__all__ = ["DRIFT_SCORES", "MAX_DESIRED_COUNT", "SPS_WINDOW_SECONDS", "SpsService"]

#: The SPS quota window (observed in production: ~10 calls per hour per subscription and location).
SPS_WINDOW_SECONDS: Final = 3600
#: Largest desiredCount the SPS API accepts.
MAX_DESIRED_COUNT: Final = 1000
#: Unknown scores a drifted payload may carry (collectors must keep them, not crash).
DRIFT_SCORES: Final = ("VeryHigh", "Unavailable", "RestrictedSkuNotAvailableInZone")

_SPS_PATH: Final = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.compute/locations/(?P<loc>[^/]+)"
    r"/placementscores/spot/generate/?$",
    re.IGNORECASE,
)


class SpsService:
    """Answers SPS requests from ``emu.world`` at ``emu.clock``'s time and keeps the quota windows.

    Reads the world, clock, quota limit and forbidden subscriptions from ``emu`` when it answers.
    """

    endpoint = "sps"

    def __init__(self, emu: AzureEmulator, identity: IdentityService) -> None:
        self._emu = emu
        self._identity = identity
        self._lock = threading.Lock()
        self._quota: dict[tuple[str, str], collections.deque[datetime]] = {}

    def accepts(self, method: str, path: str) -> bool:
        return bool(_SPS_PATH.match(path)) and method == "POST"

    def __call__(self, request: ServiceRequest) -> Reply:
        ep = self.endpoint
        world = self._emu.world
        m = _SPS_PATH.match(request.path)
        assert m is not None
        sub, loc = m["sub"], m["loc"]
        bad = (
            check_api_version(request, ep)
            or self._identity.check_bearer(request.headers, ep)
            or self._check_subscription(sub)
        )
        if bad is not None:
            return bad
        if not world.has_region(loc):
            return error_reply(
                400,
                "InvalidParameter",
                f"The value '{loc}' provided for the input parameter 'location' is not valid.",
                ep,
            )
        retry = self._take_quota(sub, loc)
        if retry is not None:
            return too_many_requests(retry, ep)
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return error_reply(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized.",
                ep,
            )
        if not isinstance(data, dict):
            return error_reply(400, "InvalidRequestContent", "The request content must be a JSON object.", ep)
        for field in ("desiredLocations", "desiredSizes", "desiredCount"):
            if data.get(field) is None:
                return error_reply(400, "BadRequest", f"Required parameter '{field}' is missing (null).", ep)
        locations, sizes_in, count = data["desiredLocations"], data["desiredSizes"], data["desiredCount"]
        zonal = data.get("availabilityZones", False)
        if not isinstance(locations, list) or not locations or not all(isinstance(x, str) for x in locations):
            return error_reply(
                400, "InvalidParameter", "'desiredLocations' must be a non-empty list of region names.", ep
            )
        if len(locations) > MAX_SPS_REGIONS:
            return error_reply(
                400,
                "InvalidParameter",
                f"The number of desiredLocations ({len(locations)}) exceeds the maximum of "
                f"{MAX_SPS_REGIONS}.",
                ep,
            )
        if (
            not isinstance(sizes_in, list)
            or not sizes_in
            or not all(isinstance(x, dict) and isinstance(x.get("sku"), str) for x in sizes_in)
        ):
            return error_reply(
                400,
                "InvalidParameter",
                '\'desiredSizes\' must be a non-empty list of objects like {"sku": "Standard_D2s_v3"}.',
                ep,
            )
        if len(sizes_in) > MAX_SPS_SIZES:
            return error_reply(
                400,
                "InvalidParameter",
                f"The number of desiredSizes ({len(sizes_in)}) exceeds the maximum of {MAX_SPS_SIZES}.",
                ep,
            )
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_DESIRED_COUNT:
            return error_reply(
                400,
                "InvalidParameter",
                f"The value '{count}' provided for the input parameter 'desiredCount' is not valid. "
                f"It must be an integer between 1 and {MAX_DESIRED_COUNT}.",
                ep,
            )
        if not isinstance(zonal, bool):
            return error_reply(
                400,
                "InvalidParameter",
                f"The value '{zonal}' provided for the input parameter 'availabilityZones' is not valid.",
                ep,
            )
        for region in locations:
            if not world.has_region(region):
                return error_reply(
                    400,
                    "InvalidParameter",
                    f"The value '{region}' provided for the input parameter 'desiredLocations' is not valid.",
                    ep,
                )
        sizes = [x["sku"] for x in sizes_in]
        for size in sizes:
            if not world.has_size(size):
                return error_reply(
                    400,
                    "InvalidParameter",
                    f"The value '{size}' provided for the input parameter 'desiredSizes' is not valid.",
                    ep,
                )
        now = self._emu.clock.now()
        scores: list[dict[str, object]] = []
        for size in sizes:
            for region in locations:
                zones = world.region(region).zones if zonal else ()
                for zone in zones or (None,):
                    entry: dict[str, object] = {"sku": size, "region": region}
                    if zone is not None:
                        entry["availabilityZone"] = zone
                    entry["score"] = world.sps_score(region, size, zone, count, now)
                    entry["isQuotaAvailable"] = world.quota_available(region, size, count, now)
                    scores.append(entry)
        if request.decision.drift and scores:
            victim = scores[request.decision.salt % len(scores)]
            victim["score"] = DRIFT_SCORES[request.decision.salt % len(DRIFT_SCORES)]
            for entry in scores:
                entry.pop("isQuotaAvailable", None)
        payload = {
            "desiredLocations": locations,
            "desiredSizes": [{"sku": s} for s in sizes],
            "desiredCount": count,
            "availabilityZones": zonal,
            "placementScores": scores,
        }
        return ok_reply(payload, ep)

    def _check_subscription(self, subscription: str) -> Reply | None:
        emu, ep = self._emu, self.endpoint
        if subscription not in emu.world.subscriptions:
            return error_reply(
                404,
                "SubscriptionNotFound",
                f"The subscription '{subscription}' could not be found.",
                ep,
            )
        if subscription in emu.forbidden_subscriptions:
            return error_reply(
                403,
                "AuthorizationFailed",
                f"The client '{emu.client_id}' does not have authorization to perform action "
                "'Microsoft.Compute/locations/placementScores/generate/action' over scope "
                f"'/subscriptions/{subscription}' or the scope is invalid.",
                ep,
            )
        return None

    def _take_quota(self, subscription: str, location: str) -> int | None:
        """Count one call on (subscription, location); seconds to wait when over the limit."""
        now = ensure_utc(self._emu.clock.now())
        window = timedelta(seconds=SPS_WINDOW_SECONDS)
        with self._lock:
            calls = self._quota.setdefault((subscription.lower(), location.lower()), collections.deque())
            while calls and calls[0] <= now - window:
                calls.popleft()
            if len(calls) >= self._emu.sps_calls_per_hour:
                return max(1, math.ceil((calls[0] + window - now).total_seconds()))
            calls.append(now)
            return None

    def quota_used(self, subscription: str, location: str) -> int:
        """SPS calls counted in the current window of (subscription, location)."""
        now = ensure_utc(self._emu.clock.now())
        with self._lock:
            calls = self._quota.get((subscription.lower(), location.lower()), collections.deque())
            return sum(1 for t in calls if t > now - timedelta(seconds=SPS_WINDOW_SECONDS))
