"""Retry policies for the synchronous parts of spotlake, built on tenacity, sleeping on a :class:`Clock`.

* :func:`polling` waits for a condition (a run lock held by someone else) until a deadline on the
  clock, checking every ``every`` seconds;
* :func:`backing_off` retries an operation a few times with exponential backoff (records a sink
  rejected).

The HTTP collectors' async policy (jitter, Retry-After) is :func:`spotlake.collect.http.retrying`.
Every policy reads time from the injected clock, so tests with a
:class:`~spotlake.clock.FakeClock` never sleep for real.
"""

from __future__ import annotations

import tenacity

from spotlake.clock import Clock

__all__ = ["backing_off", "polling"]


def polling(*, clock: Clock, timeout: float, every: float, on: type[BaseException]) -> tenacity.Retrying:
    """Retry while ``on`` is raised, every ``every`` seconds, for at most ``timeout`` seconds.

    The last ``on`` is re-raised once the time is up (at once when ``timeout`` is 0).
    """
    deadline = clock.monotonic() + max(timeout, 0.0)

    def wait(_state: tenacity.RetryCallState) -> float:
        return max(0.0, min(every, deadline - clock.monotonic()))

    return tenacity.Retrying(
        stop=lambda _state: clock.monotonic() >= deadline,
        wait=wait,
        retry=tenacity.retry_if_exception_type(on),
        sleep=clock.sleep,
        reraise=True,
    )


def backing_off(*, clock: Clock, attempts: int, base: float, on: type[BaseException]) -> tenacity.Retrying:
    """Up to ``attempts`` tries while ``on`` is raised, waiting ``base * 2**(n-1)`` after try ``n``."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=base, exp_base=2),
        retry=tenacity.retry_if_exception_type(on),
        sleep=clock.sleep,
        reraise=True,
    )
