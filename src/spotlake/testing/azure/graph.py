"""The emulated Azure Resource Graph: the spot eviction-rate query only.

``POST /providers/Microsoft.ResourceGraph/resources`` answers a query that reads
``SpotResources`` ... ``skuspotevictionrate`` with the world's eviction buckets (one row per
supported pair that has one); any other query is a 400 ``InvalidQuery`` (there is no KQL engine).
Options: ``$top`` (1..1000), ``$skip``, ``$skipToken`` (on every page but the last) and
``resultFormat`` ``objectArray`` (default) or ``table``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Final

from spotlake.testing.azure._arm import check_api_version, skip_offset, skip_token
from spotlake.testing.azure._replies import Reply, ServiceRequest, dumps, error_reply, ok_reply

if TYPE_CHECKING:
    from spotlake.testing.azure.emulator import AzureEmulator
    from spotlake.testing.azure.identity import IdentityService

__all__ = ["DRIFT_BUCKETS", "GRAPH_PAGE_SIZE", "GraphService"]

#: Resource Graph's page size ($top is capped at 1000).
GRAPH_PAGE_SIZE: Final = 1000
#: Unknown buckets a drifted payload may carry (collectors must keep them, not crash).
DRIFT_BUCKETS: Final = ("20-25", "unknown")

_GRAPH_PATH: Final = re.compile(r"^/providers/microsoft\.resourcegraph/resources/?$", re.IGNORECASE)
_EVICTION_QUERY: Final = re.compile(r"spotresources.*skuspotevictionrate", re.IGNORECASE | re.DOTALL)
_SUPPORT_INFO: Final = "Please provide below info when asking for support: timestamp, correlationId."
_INVALID_QUERY: Final = (
    "Query is invalid. The emulator answers only the spot eviction-rate query "
    "(SpotResources | where type =~ 'microsoft.compute/skuspotevictionrate/location' | project ...)."
)


class GraphService:
    """Answers Resource Graph queries from ``emu.world``'s eviction rows."""

    endpoint = "graph"

    def __init__(self, emu: AzureEmulator, identity: IdentityService) -> None:
        self._emu = emu
        self._identity = identity

    def accepts(self, method: str, path: str) -> bool:
        return bool(_GRAPH_PATH.match(path)) and method == "POST"

    def __call__(self, request: ServiceRequest) -> Reply:
        ep = self.endpoint
        world = self._emu.world
        bad = check_api_version(request, ep) or self._identity.check_bearer(request.headers, ep)
        if bad is not None:
            return bad
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return error_reply(
                400, "BadRequest", "The request content was invalid and could not be deserialized.", ep
            )
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            return error_reply(
                400, "BadRequest", "The request must be a JSON object with a 'query' string.", ep
            )
        subs = data.get("subscriptions") or []
        if not isinstance(subs, list) or any(s not in world.subscriptions for s in subs):
            return error_reply(
                400, "BadRequest", "One or more subscriptions are invalid or not accessible.", ep
            )
        if not _EVICTION_QUERY.search(data["query"]):
            details = [{"code": "InvalidQuery", "message": _INVALID_QUERY}]
            error = {"code": "BadRequest", "message": _SUPPORT_INFO, "details": details}
            return Reply(status=400, body=dumps({"error": error}), endpoint=ep)
        options = data.get("options") or {}
        if not isinstance(options, dict):
            return error_reply(400, "BadRequest", "'options' must be an object.", ep)
        top = options.get("$top", GRAPH_PAGE_SIZE)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= GRAPH_PAGE_SIZE:
            return error_reply(400, "BadRequest", f"$top must be an integer within 1..{GRAPH_PAGE_SIZE}.", ep)
        offset = options.get("$skip", 0) or 0
        token = options.get("$skipToken")
        if token:
            try:
                offset = skip_offset(str(token))
            except (ValueError, KeyError, TypeError):
                return error_reply(400, "BadRequest", "The $skipToken is invalid.", ep)
        if not isinstance(offset, int) or offset < 0:
            return error_reply(400, "BadRequest", "$skip must be a non-negative integer.", ep)
        rows = world.eviction_rows()
        chunk = rows[offset : offset + top]
        records = [{"location": r, "skuName": s, "evictionRate": b} for r, s, b in chunk]
        if request.decision.drift and records:
            salt = request.decision.salt
            records[salt % len(records)]["evictionRate"] = DRIFT_BUCKETS[salt % 2]
        result_format = options.get("resultFormat", "objectArray")
        payload: dict[str, object] = {"totalRecords": len(rows), "count": len(records)}
        if result_format == "table":
            payload["data"] = {
                "columns": [{"name": n, "type": "string"} for n in ("location", "skuName", "evictionRate")],
                "rows": [[x["location"], x["skuName"], x["evictionRate"]] for x in records],
            }
        else:
            payload["data"] = records
        payload["facets"] = []
        payload["resultTruncated"] = "false"
        if offset + top < len(rows):
            payload["$skipToken"] = skip_token(offset + top)
        return ok_reply(payload, ep)
