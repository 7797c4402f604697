"""The streams of :mod:`spotlake.collect.aws.sps`: rounds of assignment, then one worker per account.

A round first assigns the pending queries, in query order and without I/O, by the collector's rule
(a repeat to the account that served its configuration, else the usable account with the most budget
left, ties in the order given), each new configuration reserving a unit of its account's budget; a
configuration the round already gave to an account goes to that account again (by the time it runs,
a repeat). Then each account's queue runs in its own worker thread, in order (at most
``concurrency`` at once), so an account's budget and request rate behave as in sequence. A query its
account refuses (full, denied, no client) comes back, with the queries that account can no longer
take (new configurations of a full account, every query of a denied one), and the next round
assigns them, in query order, to the accounts they have not tried; a query no account is left for
fails as it would in sequence. A query refused only because the round's reservations took the
budget it would have had waits for the next round instead (a reserving query may fail without EC2
counting it, and then its unit is free again), so streams decide as the sequence does. Outcomes are
keyed by query index: the caller puts them in order.

Stopping: when a worker raises (a bug, or an error nobody mapped), when the caller is interrupted
while it waits, or when ``run.stop`` is set from outside, every stream stops before its next query
(the ones in flight finish), the round ends and the first error (in account order) propagates, the
others logged; a stopped run starts no new round.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Final, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Sequence

    from spotlake.collect.aws.sps import AwsSpsCollector, FailedQuery, _Account, _Query, _Row, _Run

    _Outcome: TypeAlias = list[_Row] | FailedQuery
    _Queue: TypeAlias = tuple[_Account, list[_Query]]

__all__ = ["MOVED", "Moved", "run_rounds"]

log = logging.getLogger(__name__)


class Moved:
    """An attempt's outcome: the account did not take the query; another one may."""

    def __repr__(self) -> str:
        return "MOVED"


#: The one :class:`Moved`.
MOVED: Final = Moved()


def run_rounds(
    collector: AwsSpsCollector, run: _Run, states: Sequence[_Query], *, concurrency: int
) -> dict[int, _Outcome]:
    """Every query's outcome (rows or failure) by query index, the queries run as streams (until
    ``run.stop`` is set: then the outcomes so far)."""
    outcomes: dict[int, _Outcome] = {}
    pending = list(states)
    while pending and not run.stop.is_set():
        queues, back = _assign(collector, run, pending, outcomes)
        if queues:
            workers = min(concurrency, len(queues))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aws-sps") as pool:
                futures = [pool.submit(_stream, collector, run, account, queue) for account, queue in queues]
                try:
                    wait(futures, return_when=FIRST_EXCEPTION)
                except BaseException:  # interrupted while waiting: the streams stop too
                    run.stop.set()
                    raise
                if any(f.exception() is not None for f in futures if f.done()):
                    run.stop.set()  # a worker raised: the others send nothing more
            # every worker has ended here
            errors = [e for f in futures if (e := f.exception()) is not None]
            for extra in errors[1:]:
                log.error("aws_sps: another stream failed too: %r", extra, exc_info=extra)
            if errors:
                raise errors[0]
            for future in futures:
                done, moved = future.result()
                outcomes.update(done)
                back += moved
        pending = sorted(back, key=lambda state: state.index)
        run.round += 1
    return outcomes


def _assign(
    collector: AwsSpsCollector, run: _Run, pending: list[_Query], outcomes: dict[int, _Outcome]
) -> tuple[list[_Queue], list[_Query]]:
    """The round's queues, in account order, and the queries deferred to the next round; a query
    no account is left for fails (in ``outcomes``)."""
    now = collector._clock.now()
    reserved: Counter[str] = Counter()
    planned: dict[str, _Account] = {}
    queues: dict[int, _Queue] = {}
    deferred: list[_Query] = []
    for state in pending:
        account: _Account | None = planned.get(state.key)
        if account is None or account.spec.name in state.tried:
            account, repeat = collector._choose(state, run, now, reserved)
            if account is None:
                if reserved and collector._choose(state, run, now)[0] is not None:
                    deferred.append(state)  # only the round's reservations stand in its way
                else:
                    outcomes[state.index] = collector._no_account(state, run)
                continue
            if not repeat:
                reserved[account.spec.name] += 1
                planned[state.key] = account
        queues.setdefault(account.index, (account, []))[1].append(state)
    return [queues[i] for i in sorted(queues)], deferred


def _stream(
    collector: AwsSpsCollector, run: _Run, account: _Account, queue: list[_Query]
) -> tuple[dict[int, _Outcome], list[_Query]]:
    """One account's queue, in order (a worker thread): the outcomes, and the queries to re-assign."""
    done: dict[int, _Outcome] = {}
    back: list[_Query] = []
    name, limit = account.spec.name, account.spec.config_limit
    for number, state in enumerate(queue):
        if run.stop.is_set():  # the run is abandoned: send nothing more
            back += queue[number:]
            break
        with run.lock:
            now = collector._clock.now()
            repeat = name in run.index.servers(state.key, now)
            fits = account.usable and (repeat or run.index.remaining(name, limit, now) > 0)
        outcome = collector._attempt(state, run, account, repeat=repeat) if fits else MOVED
        if isinstance(outcome, Moved):
            back.append(state)
        else:
            done[state.index] = outcome
    return done, back
