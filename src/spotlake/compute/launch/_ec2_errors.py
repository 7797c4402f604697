"""EC2's refusals as :class:`~spotlake.compute.launch.base.LaunchError` values, for the EC2 launcher.

Provider errors are mapped here, once, to an error in the result, never raised: API codes through
:data:`~spotlake.compute.launch.base.EC2_FAILURES` (unknown codes are ``OTHER``), closed spot
requests through :data:`SPOT_STATUS_FAILURES`, network failures as ``OTHER`` (the allocator tries
elsewhere). Messages are scrubbed and cut short, since EC2 messages can carry long encoded blobs
and an error travels into logs and reports. What is not a provider error is a bug, for the caller
to re-raise. botocore is imported only when an error is classified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from spotlake.compute.launch.base import EC2_FAILURES, LaunchError, LaunchFailure
from spotlake.compute.values import Offer
from spotlake.redact import scrub
from spotlake.storage.aws import error_code, error_message

__all__ = [
    "SPOT_STATUS_FAILURES",
    "clean",
    "exc_text",
    "fulfilled",
    "is_provider_error",
    "launch_error",
    "provider_error",
    "request_error",
    "unsettled",
]

#: ``Status.Code`` of a spot request that closed unfulfilled, and what it means for allocation.
#: A request still *open* at the timeout is ``TIMEOUT`` whatever its status says.
SPOT_STATUS_FAILURES: Final[Mapping[str, LaunchFailure]] = {
    "price-too-low": LaunchFailure.PRICE_TOO_LOW,
    "capacity-not-available": LaunchFailure.NO_CAPACITY,
    "capacity-oversubscribed": LaunchFailure.NO_CAPACITY,
    "constraint-not-fulfillable": LaunchFailure.NO_CAPACITY,
    "launch-group-constraint": LaunchFailure.NO_CAPACITY,
    "az-group-constraint": LaunchFailure.NO_CAPACITY,
    "placement-group-constraint": LaunchFailure.NO_CAPACITY,
    "schedule-expired": LaunchFailure.TIMEOUT,
}

_MESSAGE_MAX: Final = 400
_CLOSED_STATES: Final = frozenset({"closed", "cancelled", "failed"})


def clean(text: str) -> str:
    """A provider message fit for an error: scrubbed, on one line, not too long."""
    text = " ".join(scrub(text).split())
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 1] + "…"


def exc_text(exc: BaseException) -> str:
    """An exception for a log line or a note: its code and cleaned message, else its type and text."""
    code = error_code(exc)
    return f"{code}: {clean(error_message(exc))}" if code else f"{type(exc).__name__}: {clean(str(exc))}"


def launch_error(
    offer: Offer, kind: LaunchFailure, message: str, code: str | None = None, *, prefix: bool = True
) -> LaunchError:
    """A :class:`LaunchError` on ``offer``'s pool, its message prefixed with the launch unless not."""
    text = f"{offer.capacity_type} launch in {offer.pool}: {message}" if prefix else message
    return LaunchError(text, kind=kind, pool=offer.pool, capacity_type=offer.capacity_type, code=code)


def is_provider_error(exc: BaseException) -> bool:
    """An error EC2, or the way to it, answered with, as opposed to a bug in the call."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if isinstance(exc, ParamValidationError):
        return False  # botocore refused to send the call: a bug (or a configuration value) to fix
    return isinstance(exc, ClientError | BotoCoreError)


def provider_error(offer: Offer, exc: BaseException) -> LaunchError | None:
    """The :class:`LaunchError` for a provider failure; ``None`` for a bug (to be re-raised)."""
    if not is_provider_error(exc):
        return None
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    code = error_code(exc)
    if code is not None:
        kind = EC2_FAILURES.get(code, LaunchFailure.OTHER)
        return launch_error(offer, kind, f"{code}: {clean(error_message(exc))}", code)
    name = type(exc).__name__
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return launch_error(offer, LaunchFailure.AUTH, f"no usable AWS credentials ({name})", name)
    where = f"could not reach EC2 in {offer.pool.region} ({name}: {clean(str(exc))})"
    return launch_error(
        offer, LaunchFailure.OTHER, f"{where}; if the call was sent, instances may have started", name
    )


# --- spot requests ---------------------------------------------------------------------------------


def fulfilled(request: Mapping[str, Any] | None) -> bool:
    """A spot request that got its instance."""
    return request is not None and request.get("State") == "active" and bool(request.get("InstanceId"))


def unsettled(request: Mapping[str, Any] | None) -> bool:
    """Neither fulfilled nor closed: still waiting for capacity (or not listed yet)."""
    return not fulfilled(request) and (request is None or request.get("State") not in _CLOSED_STATES)


def request_error(
    offer: Offer,
    missing: str,
    *,
    request_ids: Sequence[str],
    seen: Mapping[str, Mapping[str, Any]],
    timeout: timedelta,
    poll_error: BaseException | None,
) -> LaunchError:
    """Why spot requests got fewer instances than asked: a polling error, the first request that
    closed unfulfilled (its status says why), or else the timeout."""
    if poll_error is not None:
        cause = provider_error(offer, poll_error)
        assert cause is not None  # the wait returns provider errors only
        return launch_error(
            offer, cause.kind, f"{missing} unresolved, cancelled: {cause}", cause.code, prefix=False
        )
    for request_id in request_ids:
        request = seen.get(request_id)
        if request is not None and not unsettled(request) and not fulfilled(request):  # closed
            status = request.get("Status") or {}
            code = str(status.get("Code") or request.get("State"))
            why = f"{request_id} {code}: {clean(str(status.get('Message') or ''))}"
            kind = SPOT_STATUS_FAILURES.get(code, LaunchFailure.OTHER)
            return launch_error(offer, kind, f"{missing} not fulfilled: {why}", code)
    still = next((seen[r] for r in request_ids if r in seen and unsettled(seen[r])), {})
    status_code = (still.get("Status") or {}).get("Code")
    last = f" (last status: {status_code})" if status_code else ""
    waited = f"{missing} still open after {timeout.total_seconds():g} s, cancelled{last}"
    return launch_error(offer, LaunchFailure.TIMEOUT, waited, str(status_code) if status_code else None)
