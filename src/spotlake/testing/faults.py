"""Seeded, deterministic fault injection for the Azure emulator.

Each endpoint ("prices", "sps", "graph", "skus", "token") has its own :class:`EndpointFaults`.
Whether a request is hit by a fault is decided by hashing (seed, endpoint, request identity,
attempt number of that identity), never by a shared RNG: a retry of the same request is a new
attempt and may succeed, and the outcome does not depend on thread timing or request order.

Faults decided *before* the service answers: latency (+ jitter), timeout, connection reset, an
injected HTTP status. Faults that *alter* a successful answer: truncated JSON, malformed JSON,
an empty ``NextPageLink`` on a full page (prices), schema drift (missing optional fields, unknown
score or bucket strings).

:func:`fault_matrix` names one :class:`EndpointFaults` per fault kind, to run a client against each
in turn (``pytest.mark.parametrize`` over its items).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import attrs

from spotlake.errors import ConfigError

__all__ = [
    "ALTERING_KINDS",
    "ENDPOINTS",
    "FAILING_KINDS",
    "FAULT_KINDS",
    "Decision",
    "EndpointFaults",
    "Faults",
    "fault_matrix",
]

#: The emulated services, as named in fault configuration and statistics.
ENDPOINTS: Final = ("prices", "sps", "graph", "skus", "token")
#: Statuses an injected error may have.
INJECTABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

Kind = Literal["ok", "timeout", "reset", "status"]


def _rate(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"fault knob {attr.name} must be a rate within [0, 1], got {value}")


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ConfigError(f"fault knob {attr.name} must be >= 0 seconds, got {value}")


def _errors(_inst: object, _attr: attrs.Attribute[Mapping[int, float]], value: Mapping[int, float]) -> None:
    for status, rate in value.items():
        if status not in INJECTABLE_STATUSES:
            raise ConfigError(
                f"fault errors: status {status} cannot be injected (use {sorted(INJECTABLE_STATUSES)})"
            )
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"fault errors: rate for {status} must be within [0, 1], got {rate}")
    if sum(value.values()) > 1.0:
        raise ConfigError(f"fault errors: rates add up to more than 1: {dict(value)}")


def _to_errors(value: Mapping[int, float] | Iterable[tuple[int, float]]) -> Mapping[int, float]:
    items = value.items() if isinstance(value, Mapping) else value
    return {int(k): float(v) for k, v in items}


@attrs.frozen(kw_only=True)
class EndpointFaults:
    """Fault knobs of one endpoint. Every rate is a probability per request attempt.

    ``latency``/``jitter``: seconds added before answering (jitter uniform in [0, jitter]).
    ``errors``: status -> rate (429, 500, 502, 503, 504); a 429 carries ``Retry-After: retry_after``.
    ``timeout_rate``: the request stalls (in-process: ``httpx.ReadTimeout``; loopback: the server
    holds the connection ``stall`` seconds, then closes it without answering).
    ``reset_rate``: the connection is dropped without an answer.
    ``truncated_rate`` / ``malformed_rate``: a 200 whose JSON body is cut in half / not JSON.
    ``empty_next_link_rate`` (prices): a full, non-final page whose ``NextPageLink`` is null or "".
    ``drift_rate``: a 200 whose payload drifts (optional fields missing, unknown enum strings).
    """

    latency: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    errors: Mapping[int, float] = attrs.field(factory=dict, converter=_to_errors, validator=_errors)
    retry_after: int = 1
    timeout_rate: float = attrs.field(default=0.0, validator=_rate)
    reset_rate: float = attrs.field(default=0.0, validator=_rate)
    truncated_rate: float = attrs.field(default=0.0, validator=_rate)
    malformed_rate: float = attrs.field(default=0.0, validator=_rate)
    empty_next_link_rate: float = attrs.field(default=0.0, validator=_rate)
    drift_rate: float = attrs.field(default=0.0, validator=_rate)
    stall: float = attrs.field(default=2.0, validator=_non_negative)
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.timeout_rate + self.reset_rate + sum(self.errors.values()) > 1.0:
            raise ConfigError("fault rates timeout_rate + reset_rate + errors add up to more than 1")

    @property
    def active(self) -> bool:
        """True when any knob is set (a quiet endpoint skips the bookkeeping)."""
        return self != EndpointFaults(seed=self.seed, stall=self.stall, retry_after=self.retry_after)

    def decide(self, endpoint: str, identity: str, attempt: int) -> Decision:
        """The fault outcome of attempt number ``attempt`` (1-based) of the request ``identity``."""
        key = (endpoint, identity, attempt)
        delay = self.latency + (self.jitter * _u(self.seed, "jitter", *key) if self.jitter else 0.0)
        x = _u(self.seed, "fault", *key)
        kind: Kind = "ok"
        status: int | None = None
        edge = self.timeout_rate
        if x < edge:
            kind = "timeout"
        elif x < (edge := edge + self.reset_rate):
            kind = "reset"
        else:
            for code in sorted(self.errors):
                edge += self.errors[code]
                if x < edge:
                    kind, status = "status", code
                    break
        return Decision(
            kind=kind,
            status=status,
            delay=delay,
            truncated=_u(self.seed, "truncate", *key) < self.truncated_rate,
            malformed=_u(self.seed, "malformed", *key) < self.malformed_rate,
            empty_next_link=_u(self.seed, "empty-next", *key) < self.empty_next_link_rate,
            drift=_u(self.seed, "drift", *key) < self.drift_rate,
            salt=_h(self.seed, "salt", *key),
        )


@attrs.frozen(kw_only=True)
class Decision:
    """What the fault layer does to one request attempt."""

    kind: Kind = "ok"
    status: int | None = None
    delay: float = 0.0
    truncated: bool = False
    malformed: bool = False
    empty_next_link: bool = False
    drift: bool = False
    salt: int = 0  # a deterministic number the endpoint may use to vary a drifted payload


QUIET: Final = EndpointFaults()


@attrs.frozen(kw_only=True)
class Faults:
    """Fault configuration of every endpoint (all quiet by default)."""

    prices: EndpointFaults = QUIET
    sps: EndpointFaults = QUIET
    graph: EndpointFaults = QUIET
    skus: EndpointFaults = QUIET
    token: EndpointFaults = QUIET

    def for_endpoint(self, endpoint: str) -> EndpointFaults:
        if endpoint not in ENDPOINTS:
            raise ConfigError(f"unknown emulator endpoint {endpoint!r} (known: {', '.join(ENDPOINTS)})")
        faults: EndpointFaults = getattr(self, endpoint)
        return faults

    @classmethod
    def parse(cls, assignments: Iterable[str]) -> Faults:
        """Build from CLI assignments ``endpoint.knob=value`` (``all.`` sets every endpoint).

        Examples: ``prices.latency=0.1``, ``sps.errors.429=0.2``, ``all.reset_rate=0.01``,
        ``graph.seed=7``.
        """
        values: dict[str, dict[str, Any]] = {e: {} for e in ENDPOINTS}
        for item in assignments:
            target, sep, raw = item.partition("=")
            parts = target.strip().split(".")
            if not sep or len(parts) < 2:
                raise ConfigError(f"fault {item!r} is not 'endpoint.knob=value' (e.g. prices.latency=0.1)")
            endpoint, knob = parts[0], parts[1]
            endpoints = ENDPOINTS if endpoint == "all" else (endpoint,)
            for ep in endpoints:
                if ep not in values:
                    raise ConfigError(
                        f"fault {item!r}: unknown endpoint {ep!r} (known: all, {', '.join(ENDPOINTS)})"
                    )
                if knob == "errors":
                    if len(parts) != 3:
                        raise ConfigError(
                            f"fault {item!r}: write errors.<status>=<rate>, e.g. sps.errors.429=0.2"
                        )
                    errs = values[ep].setdefault("errors", {})
                    assert isinstance(errs, dict)
                    errs[int(parts[2])] = _number(item, raw)
                elif knob in _KNOBS:
                    values[ep][knob] = int(_number(item, raw)) if knob in _INT_KNOBS else _number(item, raw)
                else:
                    raise ConfigError(
                        f"fault {item!r}: unknown knob {knob!r} (known: errors, {', '.join(_KNOBS)})"
                    )
        built = {ep: EndpointFaults(**kw) for ep, kw in values.items() if kw}
        return cls(**built)


#: Fault kinds that spoil a request attempt: an injected status, no answer at all, or a 200 whose body
#: is not the JSON (cut in half, an HTML page). A client must retry them (or give up and say so).
FAILING_KINDS: Final = ("429", "500", "502", "503", "504", "timeout", "reset", "truncated", "malformed")
#: Fault kinds that answer 200 with a usable but altered body, which a client must accept as it is:
#: an empty ``NextPageLink`` on a full page (prices only), schema drift (not the token endpoint).
ALTERING_KINDS: Final = ("empty-next-link", "drift")
#: Every kind :func:`fault_matrix` knows, in its order: the failing and altering kinds, ``"latency"``
#: (slow answers: ``latency`` seconds plus up to half as much jitter) and ``"mixed"`` (all at once).
FAULT_KINDS: Final = (*FAILING_KINDS, *ALTERING_KINDS, "latency", "mixed")
# Kinds an endpoint's answers cannot show.
_UNSHOWN: Final = {
    "prices": frozenset[str](),
    "sps": frozenset({"empty-next-link"}),
    "graph": frozenset({"empty-next-link"}),
    "skus": frozenset({"empty-next-link"}),
    "token": frozenset({"empty-next-link", "drift"}),
}


def fault_matrix(
    endpoint: str | None = None,
    *,
    kinds: Iterable[str] | None = None,
    rate: float = 0.3,
    seed: int = 0,
    retry_after: int = 1,
    latency: float = 2.0,
) -> dict[str, EndpointFaults]:
    """One :class:`EndpointFaults` per fault kind (:data:`FAULT_KINDS`), each injecting that kind alone.

    Run the code under test once per item, e.g. ``Faults(prices=faults)`` for each ``kind, faults``.
    ``endpoint`` keeps only the kinds its answers can show (``"empty-next-link"`` is prices only; the
    token endpoint never drifts); ``kinds`` picks some of them, in the order given. ``rate`` is the
    probability per request attempt of the kind (``"429"``: an injected 429 carrying
    ``Retry-After: retry_after``). ``"latency"`` delays every answer ``latency`` s plus a jitter of up
    to ``latency / 2`` (on the emulator's clock in-process: instant with a ``FakeClock``; slept for real
    over loopback). ``"mixed"`` is every kind the endpoint can show at once: each failing kind at
    ``rate / 8``, an empty ``NextPageLink`` at ``rate / 2``, drift at ``rate / 4``, no latency.

    Every kind uses ``seed``, so the same request attempts are hit whichever status or stall is
    injected; which ones are is fixed by ``seed`` (pick one that hits what your test needs).
    :class:`ConfigError` for an unknown endpoint or kind, a kind the endpoint cannot show, or a
    ``rate`` outside ``(0, 1]``.
    """
    if endpoint is not None and endpoint not in _UNSHOWN:
        raise ConfigError(f"unknown emulator endpoint {endpoint!r} (known: {', '.join(ENDPOINTS)})")
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"fault_matrix: rate must be within (0, 1], got {rate}")
    unshown = _UNSHOWN[endpoint] if endpoint is not None else frozenset[str]()
    wanted = tuple(kinds) if kinds is not None else tuple(k for k in FAULT_KINDS if k not in unshown)
    for kind in wanted:
        if kind not in FAULT_KINDS:
            raise ConfigError(f"fault_matrix: unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        if kind in unshown:
            raise ConfigError(f"fault_matrix: {endpoint} answers cannot show the fault kind {kind!r}")
    common: dict[str, Any] = {"seed": seed, "retry_after": retry_after}
    share = rate / 8
    mixed = EndpointFaults(
        errors={int(k): share for k in FAILING_KINDS if k.isdigit()},
        timeout_rate=share,
        reset_rate=share,
        truncated_rate=share,
        malformed_rate=share,
        empty_next_link_rate=0.0 if "empty-next-link" in unshown else rate / 2,
        drift_rate=0.0 if "drift" in unshown else rate / 4,
        **common,
    )
    single = {
        **{k: EndpointFaults(errors={int(k): rate}, **common) for k in FAILING_KINDS if k.isdigit()},
        "timeout": EndpointFaults(timeout_rate=rate, **common),
        "reset": EndpointFaults(reset_rate=rate, **common),
        "truncated": EndpointFaults(truncated_rate=rate, **common),
        "malformed": EndpointFaults(malformed_rate=rate, **common),
        "empty-next-link": EndpointFaults(empty_next_link_rate=rate, **common),
        "drift": EndpointFaults(drift_rate=rate, **common),
        "latency": EndpointFaults(latency=latency, jitter=latency / 2, **common),
        "mixed": mixed,
    }
    return {kind: single[kind] for kind in wanted}


_KNOBS: Final = tuple(a.name for a in attrs.fields(EndpointFaults) if a.name != "errors")
_INT_KNOBS: Final = frozenset({"seed", "retry_after"})


def _number(item: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"fault {item!r}: {raw!r} is not a number") from None


def _h(seed: int, *parts: object) -> int:
    key = "\x1f".join([str(seed), *(str(p) for p in parts)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _u(seed: int, *parts: object) -> float:
    return _h(seed, *parts) / float(1 << 64)
