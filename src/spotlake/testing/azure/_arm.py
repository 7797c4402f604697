"""Azure Resource Manager conventions the ARM services share (SPS, Resource Graph, Compute SKUs).

Every ARM request needs an ``api-version`` query parameter of the form ``yyyy-mm-dd[-preview]``
(:func:`check_api_version`), and paged answers hand the client an opaque continuation token
(:func:`skip_token`, read back by :func:`skip_offset`).
"""

from __future__ import annotations

import json
import re
from typing import Final

from spotlake.testing.azure._replies import Reply, ServiceRequest, b64url, dumps, error_reply, unb64url

__all__ = ["check_api_version", "skip_offset", "skip_token"]

_API_VERSION: Final = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def check_api_version(request: ServiceRequest, endpoint: str) -> Reply | None:
    """The 400 ARM answers a missing or malformed ``api-version`` with; ``None`` when it is fine."""
    version = request.query.get("api-version")
    if not version:
        return error_reply(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
            endpoint,
        )
    if not _API_VERSION.match(version):
        return error_reply(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are of the form "
            "'yyyy-mm-dd' or 'yyyy-mm-dd-preview'.",
            endpoint,
        )
    return None


def skip_token(offset: int) -> str:
    """The continuation token of the page starting at row ``offset``."""
    return b64url(dumps({"o": offset}))


def skip_offset(token: str) -> int:
    """The row offset a :func:`skip_token` stands for.

    Raises ValueError, KeyError or TypeError for a token this emulator did not issue.
    """
    return int(json.loads(unb64url(token))["o"])
