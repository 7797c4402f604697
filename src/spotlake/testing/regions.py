"""Real Azure public-cloud regions for the emulator: ARM name, display name, availability zones.

Ordered roughly by size (how many VM families Azure deploys there), biggest first, so a world of
``n`` regions takes the ``n`` biggest and the rollout model can give early regions more families.
Zones are "1", "2", "3" where the region has availability zones, none otherwise.

``SOVEREIGN_REGIONS`` appear only in price rows (the Retail Prices API lists US Government regions
alongside public ones); collectors must drop them and the SPS world does not know them.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PUBLIC_REGIONS", "SOVEREIGN_REGIONS", "ZONES"]

ZONES: Final = ("1", "2", "3")

#: (arm name, display name, has availability zones)
PUBLIC_REGIONS: Final[tuple[tuple[str, str, bool], ...]] = (
    ("eastus", "East US", True),
    ("eastus2", "East US 2", True),
    ("westeurope", "West Europe", True),
    ("westus2", "West US 2", True),
    ("southcentralus", "South Central US", True),
    ("northeurope", "North Europe", True),
    ("centralus", "Central US", True),
    ("westus3", "West US 3", True),
    ("uksouth", "UK South", True),
    ("southeastasia", "Southeast Asia", True),
    ("australiaeast", "Australia East", True),
    ("japaneast", "Japan East", True),
    ("canadacentral", "Canada Central", True),
    ("francecentral", "France Central", True),
    ("germanywestcentral", "Germany West Central", True),
    ("centralindia", "Central India", True),
    ("swedencentral", "Sweden Central", True),
    ("koreacentral", "Korea Central", True),
    ("eastasia", "East Asia", True),
    ("westus", "West US", False),
    ("northcentralus", "North Central US", False),
    ("brazilsouth", "Brazil South", True),
    ("switzerlandnorth", "Switzerland North", True),
    ("norwayeast", "Norway East", True),
    ("uaenorth", "UAE North", True),
    ("southafricanorth", "South Africa North", True),
    ("italynorth", "Italy North", True),
    ("polandcentral", "Poland Central", True),
    ("westcentralus", "West Central US", False),
    ("japanwest", "Japan West", False),
    ("australiasoutheast", "Australia Southeast", False),
    ("ukwest", "UK West", False),
    ("canadaeast", "Canada East", False),
    ("southindia", "South India", False),
    ("israelcentral", "Israel Central", True),
    ("qatarcentral", "Qatar Central", True),
    ("spaincentral", "Spain Central", True),
    ("mexicocentral", "Mexico Central", True),
    ("koreasouth", "Korea South", False),
    ("francesouth", "France South", False),
    ("germanynorth", "Germany North", False),
    ("norwaywest", "Norway West", False),
    ("switzerlandwest", "Switzerland West", False),
    ("australiacentral", "Australia Central", False),
    ("westindia", "West India", False),
    ("uaecentral", "UAE Central", False),
    ("brazilsoutheast", "Brazil Southeast", False),
    ("southafricawest", "South Africa West", False),
    ("swedensouth", "Sweden South", False),
    ("newzealandnorth", "New Zealand North", True),
    ("jioindiawest", "Jio India West", False),
    ("jioindiacentral", "Jio India Central", False),
    ("australiacentral2", "Australia Central 2", False),
    ("indonesiacentral", "Indonesia Central", True),
    ("malaysiawest", "Malaysia West", True),
    ("chilecentral", "Chile Central", True),
    ("austriaeast", "Austria East", True),
    ("belgiumcentral", "Belgium Central", True),
    ("denmarkeast", "Denmark East", True),
    ("taiwannorth", "Taiwan North", True),
)

#: US Government regions: present in the Retail Prices API, absent from the public SPS world.
SOVEREIGN_REGIONS: Final[tuple[tuple[str, str], ...]] = (
    ("usgovvirginia", "US Gov Virginia"),
    ("usgovarizona", "US Gov Arizona"),
    ("usgovtexas", "US Gov Texas"),
    ("usdodcentral", "US DoD Central"),
)
