"""Request builders shared by the emulator tests."""

from __future__ import annotations

SPS_API = "2025-06-05"
EVICTION_QUERY = (
    "SpotResources | where type =~ 'microsoft.compute/skuspotevictionrate/location' "
    "| project location, skuName=tostring(properties.skuName), evictionRate=tostring(properties.evictionRate)"
)
SPEC_FILTER = "serviceName eq 'Virtual Machines' and priceType eq 'Consumption'"


def sps_url(subscription: str, location: str = "eastus", api_version: str | None = SPS_API) -> str:
    url = (
        f"https://management.azure.com/subscriptions/{subscription}/providers/Microsoft.Compute"
        f"/locations/{location}/placementScores/spot/generate"
    )
    return f"{url}?api-version={api_version}" if api_version else url


def sps_body(regions: list[str], sizes: list[str], count: int = 1, zonal: bool = True) -> dict[str, object]:
    return {
        "desiredLocations": regions,
        "desiredSizes": [{"sku": s} for s in sizes],
        "desiredCount": count,
        "availabilityZones": zonal,
    }
