"""AWS collectors: EC2 spot placement scores, spot prices, on-demand prices, instance types and
zone offerings, and the Spot Instance Advisor's interruption ranges (docs/collectors.md, "AWS").

Each has the shape of the Azure collectors (:class:`spotlake.collect.base.Collector`): built with
its clients and options, ``collect()``/``acollect()`` return a frame of a documented schema
(:mod:`spotlake.model`) and a report accounting for every call.
"""

from spotlake.collect.aws.accounts import AccountBook
from spotlake.collect.aws.advisor import DEFAULT_ADVISOR_URL, SpotAdvisorCollector
from spotlake.collect.aws.ondemand import AwsOnDemandCollector
from spotlake.collect.aws.plan import AwsSpsPlan, AwsSpsQuery, offerings_from_frame, plan_queries
from spotlake.collect.aws.spot_prices import AwsSpotPriceCollector, ClientFactory, default_clients
from spotlake.collect.aws.sps import AwsAccount, AwsSpsCollector, AwsSpsResult
from spotlake.collect.aws.types import AwsInstanceTypeCollector

__all__ = [
    "DEFAULT_ADVISOR_URL",
    "AccountBook",
    "AwsAccount",
    "AwsInstanceTypeCollector",
    "AwsOnDemandCollector",
    "AwsSpotPriceCollector",
    "AwsSpsCollector",
    "AwsSpsPlan",
    "AwsSpsQuery",
    "AwsSpsResult",
    "ClientFactory",
    "SpotAdvisorCollector",
    "default_clients",
    "offerings_from_frame",
    "plan_queries",
]
