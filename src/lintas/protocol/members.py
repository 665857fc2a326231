"""Member codes: ISO 3166-1 alpha-3 for states, short codes for organisations."""

from __future__ import annotations

import re
from typing import Literal

MemberKind = Literal["state", "organisation"]

# ISO 3166-1 alpha-3, officially assigned codes. Kept here because the list is small,
# stable and must not depend on a run-time download.
ISO3166_ALPHA3 = frozenset(
    """
    ABW AFG AGO AIA ALA ALB AND ARE ARG ARM ASM ATA ATF ATG AUS AUT AZE BDI BEL BEN BES BFA
    BGD BGR BHR BHS BIH BLM BLR BLZ BMU BOL BRA BRB BRN BTN BVT BWA CAF CAN CCK CHE CHL CHN
    CIV CMR COD COG COK COL COM CPV CRI CUB CUW CXR CYM CYP CZE DEU DJI DMA DNK DOM DZA ECU
    EGY ERI ESH ESP EST ETH FIN FJI FLK FRA FRO FSM GAB GBR GEO GGY GHA GIB GIN GLP GMB GNB
    GNQ GRC GRD GRL GTM GUF GUM GUY HKG HMD HND HRV HTI HUN IDN IMN IND IOT IRL IRN IRQ ISL
    ISR ITA JAM JEY JOR JPN KAZ KEN KGZ KHM KIR KNA KOR KWT LAO LBN LBR LBY LCA LIE LKA LSO
    LTU LUX LVA MAC MAF MAR MCO MDA MDG MDV MEX MHL MKD MLI MLT MMR MNE MNG MNP MOZ MRT MSR
    MTQ MUS MWI MYS MYT NAM NCL NER NFK NGA NIC NIU NLD NOR NPL NRU NZL OMN PAK PAN PCN PER
    PHL PLW PNG POL PRI PRK PRT PRY PSE PYF QAT REU ROU RUS RWA SAU SDN SEN SGP SGS SHN SJM
    SLB SLE SLV SMR SOM SPM SRB SSD STP SUR SVK SVN SWE SWZ SXM SYC SYR TCA TCD TGO THA TJK
    TKL TKM TLS TON TTO TUN TUR TUV TWN TZA UGA UKR UMI URY USA UZB VAT VCT VEN VGB VIR VNM
    VUT WLF WSM YEM ZAF ZMB ZWE
    """.split()  # noqa: SIM905 - a compact table reads better than 249 list items
)

_ORG = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")


class InvalidMemberCode(ValueError):
    pass


def member_kind(code: str) -> MemberKind:
    """The kind a member code denotes, or InvalidMemberCode saying why it is not one."""
    if not isinstance(code, str) or not _ORG.match(code):
        raise InvalidMemberCode(
            f"member code {code!r}: use ISO 3166-1 alpha-3 for a state (e.g. AUS) or 2-10 "
            "upper-case letters/digits for an organisation (e.g. IOM, UNHCR)"
        )
    return "state" if code in ISO3166_ALPHA3 else "organisation"


def is_member_code(code: object) -> bool:
    try:
        member_kind(code)  # type: ignore[arg-type]
    except InvalidMemberCode:
        return False
    return True
