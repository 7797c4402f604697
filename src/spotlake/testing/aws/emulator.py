"""An AWS world for a whole AWS cycle, offline: every call answered behind real boto3 clients.

:class:`AwsEmulator` puts the pieces of :mod:`spotlake.testing.aws` together the way a collection
run meets them: EC2 (zones, instance types and offerings, spot prices), the Pricing API, the
Spot Instance Advisor's document, and placement scores for several accounts, each with EC2's
limit of new configurations. Clients are real boto3 clients with dummy credentials whose calls
botocore event hooks answer; their endpoint is a closed loopback port, so a call nothing answers
fails at once instead of reaching AWS.

    emulator = AwsEmulator(AwsCatalog.generate(seed=1), accounts=3, clock=clock)
    access = AwsAccess(regions=emulator.regions, accounts=emulator.accounts,
                       clients=emulator.clients, advisor_transport=emulator.advisor_transport())

It is what ``make demo`` and the pipeline's AWS tests collect from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

import httpx

from spotlake.clock import Clock, FakeClock
from spotlake.collect.aws import AwsAccount
from spotlake.testing.aws.catalog import (
    NOW,
    AwsCatalog,
    AwsFaults,
    advisor_transport,
    install_instance_types,
    install_pricing,
    install_spot_prices,
    install_zones,
)
from spotlake.testing.aws.sps import PlacementScoreFake

__all__ = ["CLOSED_ENDPOINT", "AwsEmulator"]

#: Where the emulator's clients point: nothing listens there, so an unanswered call fails fast.
CLOSED_ENDPOINT: Final = "http://127.0.0.1:9"


class AwsEmulator:
    """The world of ``catalog`` behind boto3 clients (see the module docstring).

    ``accounts`` placement-score accounts (``account-1`` ...), each allowed ``config_limit`` new
    configurations a day; ``faults`` for the EC2 and Pricing hooks; ``scores`` a placement-score
    fake of your own (default: one over the catalog's offerings, on ``clock``).
    """

    def __init__(
        self,
        catalog: AwsCatalog | None = None,
        *,
        accounts: int = 2,
        config_limit: int = 100,
        clock: Clock | None = None,
        seed: int = 0,
        faults: AwsFaults | None = None,
        scores: PlacementScoreFake | None = None,
    ) -> None:
        self.catalog = catalog if catalog is not None else AwsCatalog.generate(seed)
        self.clock: Clock = clock or FakeClock(NOW)
        self.seed = seed
        self.faults = faults
        offerings = [(t, self.catalog.region_of(z), z) for t, z in self.catalog.offerings]
        self.scores = scores or PlacementScoreFake(
            seed=seed, clock=self.clock, offerings=offerings, config_limit=config_limit
        )
        self._names = tuple(f"account-{i + 1}" for i in range(accounts))
        self.config_limit = config_limit
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return (
            f"AwsEmulator(regions={list(self.regions)}, types={len(self.catalog.types)}, "
            f"accounts={list(self._names)})"
        )

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.catalog.regions)

    def clients(self, service: str, region: str) -> Any:
        """A boto3 client for ``service`` in ``region`` answered by the world (EC2 and Pricing);
        one per (service, region), built once (building a boto3 client takes a fifth of a second)."""
        with self._lock:
            client = self._clients.get((service, region))
            if client is None:
                client = self._clients[(service, region)] = _client(service, region)
                if service == "ec2":
                    install_zones(client, self.catalog, faults=self.faults)
                    install_spot_prices(client, self.catalog, faults=self.faults)
                    install_instance_types(client, self.catalog, faults=self.faults)
                elif service == "pricing":
                    install_pricing(client, self.catalog, faults=self.faults)
        return client

    @property
    def accounts(self) -> tuple[AwsAccount, ...]:
        """The placement-score accounts, their EC2 clients answered by :attr:`scores`."""
        return tuple(
            AwsAccount(name=name, client_factory=self._factory(name), config_limit=self.config_limit)
            for name in self._names
        )

    def _factory(self, name: str) -> Callable[[], Any]:
        def make() -> Any:
            with self._lock:
                key = ("sps", name)
                if key not in self._clients:
                    self._clients[key] = self.scores.install(_client("ec2", "us-east-1"), account=name)
                return self._clients[key]

        return make

    def advisor_transport(self) -> httpx.MockTransport:
        """An httpx transport serving the Spot Instance Advisor's document for the world."""
        return advisor_transport(self.catalog, self.seed)


_SESSION: list[Any] = []  # one botocore session: it caches the service models clients load


def _client(service: str, region: str) -> Any:
    import boto3
    import botocore.session
    from botocore.config import Config

    with _SESSION_LOCK:
        if not _SESSION:
            _SESSION.append(botocore.session.get_session())
        session = boto3.session.Session(botocore_session=_SESSION[0], region_name=region)
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=1
        )
        return session.client(
            service,
            region_name=region,
            endpoint_url=CLOSED_ENDPOINT,
            config=config,
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator",
            aws_session_token="emulator",
        )


_SESSION_LOCK = threading.Lock()
