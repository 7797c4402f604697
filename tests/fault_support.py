"""One test per fault kind: ``spotlake.testing.faults.fault_matrix`` as a pytest parametrisation."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from spotlake.testing.faults import fault_matrix


def each_fault(
    endpoint: str,
    *,
    kinds: Iterable[str] | None = None,
    rate: float = 0.3,
    seed: int = 0,
    retry_after: int = 1,
) -> pytest.MarkDecorator:
    """Parametrise a test's ``kind`` and ``faults`` over ``fault_matrix(endpoint, ...)`` (ids: the kinds).

    The test builds ``Faults(<endpoint>=faults)``; ``kind`` is the name, for kind-specific checks.
    """
    matrix = fault_matrix(endpoint, kinds=kinds, rate=rate, seed=seed, retry_after=retry_after)
    return pytest.mark.parametrize(
        ("kind", "faults"), [pytest.param(kind, faults, id=kind) for kind, faults in matrix.items()]
    )
