"""Example counts that follow the hypothesis profile (see ``tests/conftest.py``)."""

from __future__ import annotations

import math

from hypothesis import settings

#: Examples per property in the ``ci`` profile (hypothesis's own default: today's depth).
CI_EXAMPLES = 100
#: Examples per property in the ``default`` profile (``make test``).
DEFAULT_EXAMPLES = 20
#: The fewest examples :func:`examples` gives a property in any profile.
HANDFUL = 5


def examples(n: int) -> int:
    """``n`` examples in the ``ci`` profile, scaled like the loaded profile's ``max_examples`` elsewhere.

    ``default`` runs a fifth of ``n``, but at least :data:`HANDFUL` (or ``n`` when smaller); a profile
    with more examples than ``ci`` scales ``n`` up. Read when the test module is imported, i.e. after
    ``tests/conftest.py`` (and ``--hypothesis-profile``) loaded the profile.
    """
    scaled = math.ceil(n * settings().max_examples / CI_EXAMPLES)
    return max(scaled, min(n, HANDFUL))


def hash_seeds() -> tuple[str, ...]:
    """``PYTHONHASHSEED`` values a determinism test runs its subprocesses under: three in the
    ``ci`` profile, two (still two different hash orders) in ``default``, where each subprocess's
    start-up is most of the suite's time for those tests."""
    return ("0", "1", "12345") if settings().max_examples >= CI_EXAMPLES else ("0", "12345")
