"""The collection step of a cycle: prices, eviction rates and size families concurrently with SPS.

The SPS outcome comes from the injected :class:`~spotlake.pipeline._sps.SpsSource` (collected now,
or merged from shard parts). The first failure stops everything: a run whose price crawl failed
cannot commit, so letting its SPS calls go on would only spend quota the next run needs.
"""

from __future__ import annotations

import asyncio
from typing import cast

import attrs

from spotlake.collect.auth import BearerTokenSource
from spotlake.collect.base import CollectResult
from spotlake.collect.eviction import EvictionCollector
from spotlake.collect.prices import PriceCollector, PriceResult
from spotlake.collect.skus import SkuCollector
from spotlake.pipeline._sps import SpsOutcome, SpsSource
from spotlake.pipeline._start import RunStart
from spotlake.pipeline.options import CycleEnv

__all__ = ["Collected", "collect", "price_collector"]


@attrs.frozen(kw_only=True)
class Collected:
    """Everything one run collected."""

    prices: PriceResult
    eviction: CollectResult
    skus: CollectResult
    sps: SpsOutcome


def price_collector(env: CycleEnv) -> PriceCollector:
    return PriceCollector(
        endpoints=env.azure.endpoints,
        transport=env.azure.transport,
        clock=env.clock,
        concurrency=env.opts.price_concurrency,
        progress=env.progress("prices"),
    )


async def collect(env: CycleEnv, token: BearerTokenSource, start: RunStart, sps: SpsSource) -> Collected:
    """Every source of one run; the first failure cancels the others and is raised."""
    azure, clock = env.azure, env.clock
    subscriptions = azure.credentials.subscriptions
    prices_task = asyncio.ensure_future(price_collector(env).acollect())
    eviction_task = asyncio.ensure_future(
        EvictionCollector(
            subscriptions=subscriptions,
            credential=token,
            endpoints=azure.endpoints,
            azure_transport=azure.azure_transport,
            clock=clock,
        ).acollect()
    )
    skus_task = asyncio.ensure_future(
        SkuCollector(
            subscription=subscriptions[0],
            credential=token,
            endpoints=azure.endpoints,
            transport=azure.transport,
            clock=clock,
        ).acollect()
    )

    async def crawl() -> PriceResult:
        return await prices_task

    sps_task = asyncio.ensure_future(sps(start, crawl))
    tasks = (prices_task, eviction_task, skus_task, sps_task)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise cast(BaseException, task.exception())
        prices, eviction, skus, outcome = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return Collected(prices=prices, eviction=eviction, skus=skus, sps=outcome)
