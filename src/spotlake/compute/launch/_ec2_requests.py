"""The EC2 launcher's ``request`` mode: one-time spot requests, waited for on the clock.

``RequestSpotInstances`` (one-time), then ``DescribeSpotInstanceRequests`` polled on the injected
clock until every request is fulfilled or the launch's ``timeout`` passes. A request may wait for
capacity, but never outlives the decision that made it: at the timeout the open requests are
cancelled, an instance one of them got meanwhile is terminated, and the rest is
:attr:`~spotlake.compute.launch.base.LaunchFailure.TIMEOUT`.

The launcher hands over what it knows explicitly: the launch specification of the offer, its
clock and poll interval, ``record`` (ids -> remembered instances) and ``terminate`` (ids -> what
could not be terminated, or ``None``).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from spotlake.clock import Clock
from spotlake.compute.launch._ec2_errors import (
    exc_text,
    fulfilled,
    is_provider_error,
    launch_error,
    request_error,
    unsettled,
)
from spotlake.compute.launch._ec2_params import price, tag_spec, token
from spotlake.compute.launch.base import Instance, LaunchResult
from spotlake.compute.values import Offer
from spotlake.retry import polling
from spotlake.storage.aws import error_code

__all__ = ["request_spot"]

#: The launcher's log: what this module says is said by the launcher.
log = logging.getLogger("spotlake.compute.launch.ec2")

_REQUEST_NOT_FOUND: Final = "InvalidSpotInstanceRequestID.NotFound"


class _StillOpen(Exception):
    """Some spot request is not settled yet (the polling loop retries on it)."""


def request_spot(
    client: Any,
    offer: Offer,
    count: int,
    max_price: float | None,
    tags: Mapping[str, str],
    *,
    spec: Mapping[str, Any],
    user_data: str | None,
    timeout: timedelta,
    clock: Clock,
    poll_interval: float,
    record: Callable[[Offer, Sequence[str], Mapping[str, str]], tuple[Instance, ...]],
    terminate: Callable[[Sequence[str]], str | None],
) -> LaunchResult:
    """Request ``count`` spot instances of ``offer`` and wait for them (see the module docstring).

    ``spec`` is the ``LaunchSpecification`` without user data, which is encoded here."""
    specification = dict(spec)
    if user_data is not None:  # RequestSpotInstances wants it encoded already
        specification["UserData"] = base64.b64encode(user_data.encode()).decode("ascii")
    cap = {"SpotPrice": price(max_price)} if max_price is not None else {}
    answer = client.request_spot_instances(
        InstanceCount=count,
        Type="one-time",
        InstanceInterruptionBehavior="terminate",
        LaunchSpecification=specification,
        TagSpecifications=[tag_spec("spot-instances-request", tags)],
        ClientToken=token(),
        **cap,
    )
    request_ids = [str(r["SpotInstanceRequestId"]) for r in answer.get("SpotInstanceRequests", [])]
    seen, poll_error = _wait(client, request_ids, timeout, clock=clock, every=poll_interval)
    got = [str(seen[r]["InstanceId"]) for r in request_ids if fulfilled(seen.get(r))]
    open_ids = [r for r in request_ids if unsettled(seen.get(r))]
    notes = _withdraw(client, open_ids, terminate) if open_ids else []
    if got:  # EC2 does not copy a request's tags onto its instance
        try:
            client.create_tags(Resources=got, Tags=tag_spec("instance", tags)["Tags"])
        except Exception as exc:
            if not is_provider_error(exc):
                raise
            log.warning("could not tag spot instances %s: %s", got, exc_text(exc))
    instances = record(offer, got, tags)
    if len(got) >= count:
        return LaunchResult(instances=instances)
    missing = f"{count - len(got)} of {count} spot requests"
    error = request_error(
        offer, missing, request_ids=request_ids, seen=seen, timeout=timeout, poll_error=poll_error
    )
    if notes:
        error = launch_error(offer, error.kind, f"{error}; {'; '.join(notes)}", error.code, prefix=False)
    return LaunchResult(instances=instances, error=error)


def _wait(
    client: Any, request_ids: Sequence[str], timeout: timedelta, *, clock: Clock, every: float
) -> tuple[dict[str, dict[str, Any]], BaseException | None]:
    """Poll the requests until all are settled or ``timeout`` passes: (last seen, a fatal error)."""
    seen: dict[str, dict[str, Any]] = {}

    def look() -> None:
        try:
            answer = client.describe_spot_instance_requests(SpotInstanceRequestIds=list(request_ids))
        except Exception as exc:
            if error_code(exc) == _REQUEST_NOT_FOUND:  # not listed yet (eventual consistency)
                raise _StillOpen from exc
            raise
        seen.update({str(r["SpotInstanceRequestId"]): r for r in answer.get("SpotInstanceRequests", [])})
        if any(unsettled(seen.get(r)) for r in request_ids):
            raise _StillOpen

    try:
        for attempt in polling(clock=clock, timeout=timeout.total_seconds(), every=every, on=_StillOpen):
            with attempt:
                look()
    except _StillOpen:
        pass  # the timeout passed
    except Exception as exc:
        if not is_provider_error(exc):
            raise
        return seen, exc
    return seen, None


def _withdraw(
    client: Any, request_ids: list[str], terminate: Callable[[Sequence[str]], str | None]
) -> list[str]:
    """Cancel open requests and terminate what they got meanwhile; notes on what went wrong."""
    try:
        client.cancel_spot_instance_requests(SpotInstanceRequestIds=request_ids)
        answer = client.describe_spot_instance_requests(SpotInstanceRequestIds=request_ids)
    except Exception as exc:
        if not is_provider_error(exc):
            raise
        if error_code(exc) != _REQUEST_NOT_FOUND:  # NotFound after cancelling: nothing launched
            log.error("withdrawing spot requests %s failed: %s", request_ids, exc_text(exc))
            return [f"withdrawing {', '.join(request_ids)} failed ({exc_text(exc)}): they may launch"]
        answer = {}
    late = [str(r["InstanceId"]) for r in answer.get("SpotInstanceRequests", []) if r.get("InstanceId")]
    if not late:
        return []
    failure = terminate(late)
    if failure:
        log.error("instances of cancelled spot requests still running: %s", failure)
        return [f"instances of cancelled requests not terminated: {failure}"]
    return []
