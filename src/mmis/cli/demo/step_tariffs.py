"""Step: the province's tariff catalog (DOMAIN §3), loaded through the catalog's own import.

Codes are the ones the customer step assigns (RES-TIER, GCI-FLAT, GCI-TOU, LI-2P, AGR) plus an
annual-tier residential tariff (RES-TIER-Y). Versions from 2025-01-01; the agency-purchase
tariffs get a second version on 2026-01-01 (new agency price), the residential tariffs one more on
2026-07-01 with the same prices but the 2026 fund rates, so every page has history to show.
Deterministic and idempotent: loading it again changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mmis.cli.demo.context import DemoContext

# DOMAIN §3.6: one decomposition of 0.04716875 元/kWh for C&I users
CI_FUNDS = [
    {"code": "hydro_project", "price": "0.00196875"},
    {"code": "reservoir_resettlement", "price": "0.0062"},
    {"code": "renewable", "price": "0.019"},
    {"code": "rural_grid_loan", "price": "0.02"},
]
# residential pays far below 0.019 renewable; agricultural production is exempt from it
RES_FUNDS = [
    {"code": "hydro_project", "price": "0.00196875"},
    {"code": "reservoir_resettlement", "price": "0.0062"},
    {"code": "renewable", "price": "0.001"},
]
AGR_FUNDS = [
    {"code": "hydro_project", "price": "0.00196875"},
    {"code": "reservoir_resettlement", "price": "0.0062"},
]

# Guangdong-like TOU calendar: peak 10–12 and 14–19, valley 0–8, rest flat; sharp 11–12 and
# 15–17 in July–September (粤发改价格〔2021〕331号)
TOU_CALENDAR = {
    "seasons": [
        {
            "code": "normal",
            "name": "非夏季",
            "months": [1, 2, 3, 4, 5, 6, 10, 11, 12],
            "hours": [
                {"from": 0, "to": 8, "period": "valley"},
                {"from": 8, "to": 10, "period": "flat"},
                {"from": 10, "to": 12, "period": "peak"},
                {"from": 12, "to": 14, "period": "flat"},
                {"from": 14, "to": 19, "period": "peak"},
                {"from": 19, "to": 24, "period": "flat"},
            ],
        },
        {
            "code": "summer",
            "name": "夏季(7–9月)",
            "months": [7, 8, 9],
            "hours": [
                {"from": 0, "to": 8, "period": "valley"},
                {"from": 8, "to": 10, "period": "flat"},
                {"from": 10, "to": 11, "period": "peak"},
                {"from": 11, "to": 12, "period": "sharp"},
                {"from": 12, "to": 14, "period": "flat"},
                {"from": 14, "to": 15, "period": "peak"},
                {"from": 15, "to": 17, "period": "sharp"},
                {"from": 17, "to": 19, "period": "peak"},
                {"from": 19, "to": 24, "period": "flat"},
            ],
        },
    ]
}
# peak : flat : valley = 1.7 : 1 : 0.38, sharp = peak × 1.25 (DOMAIN §3.3)
TOU_RATIOS = {"sharp": "2.125", "peak": "1.7", "flat": "1", "valley": "0.38"}


def _v(label: str, start: str, pricing: dict, note: str, **extra: Any) -> dict[str, Any]:
    return {
        "label": label,
        "effective_from": start,
        "state": "published",
        "note": note,
        "pricing": pricing,
        "calendar": extra.get("calendar"),
        "tier_year_start_month": extra.get("tier_year_start_month", 1),
        "basic_prices": extra.get("basic_prices", {}),
    }


def _res_tier(funds: list) -> dict:
    return {
        "energy": {
            "type": "tiered",
            "basis": "monthly",
            "tiers": [
                {"up_to": "210", "price": "0.5469"},
                {"up_to": "400", "price": "0.5969"},
                {"up_to": None, "price": "0.8469"},
            ],
            "household_bonus": {"min_persons": 5, "tier1_extra": "100"},
        },
        "basic": None,
        "power_factor": None,
        "funds": funds,
    }


def _res_tier_y(funds: list) -> dict:
    return {
        "energy": {
            "type": "tiered",
            "basis": "annual",
            "tiers": [
                {"up_to": "2760", "price": "0.538"},
                {"up_to": "4800", "price": "0.588"},
                {"up_to": None, "price": "0.838"},
            ],
        },
        "basic": None,
        "power_factor": None,
        "funds": funds,
    }


def _agency(*, td: str, purchase: str, tou: bool, pf: str | None) -> dict:
    """Agency-purchase C&I price (DOMAIN §3.7): T&D energy price as the energy charge, then the
    agency purchase price (floating with TOU where the tariff is TOU), line-loss and system
    operation costs, and the funds."""
    purchase_c: dict[str, Any] = {"code": "agency_purchase", "price": purchase, "pf_base": True}
    if tou:
        purchase_c.update({"floats_with_tou": True, "tou_ratios": dict(TOU_RATIOS)})
    else:
        purchase_c["floats_with_tou"] = False
    energy: dict[str, Any] = (
        {"type": "tou", "prices": {p: td for p in ("sharp", "peak", "flat", "valley")}}
        if tou
        else {"type": "flat", "price": td}
    )
    return {
        "energy": energy,
        "basic": None,
        "power_factor": {"standard": pf} if pf else None,
        "funds": CI_FUNDS,
        "components": [
            purchase_c,
            {"code": "line_loss", "price": "0.0213", "floats_with_tou": False, "pf_base": True},
            {"code": "system_operation", "price": "0.0285", "floats_with_tou": False, "pf_base": True},
        ],
    }


def _agr() -> dict:
    return {
        "energy": {"type": "flat", "price": "0.4868"},
        "basic": None,
        "power_factor": {"standard": "0.80"},
        "funds": AGR_FUNDS,
    }


LI_BASIC = {"capacity": "25", "demand_contract": "28", "demand_actual": "28"}


def demo_catalog(province_code: str) -> dict[str, Any]:
    """The demo catalog in the export/import format of `mmis.tariffs.services`."""
    res_funds_2026 = [*RES_FUNDS[:2], {"code": "renewable", "price": "0.0015"}]

    def tariff(code: str, name: str, category: str, description: str, versions: list) -> dict:
        return {
            "org": province_code,
            "code": code,
            "name": name,
            "usage_category": category,
            "voltage_level": "",
            "description": description,
            "versions": versions,
        }

    return {
        "format": "mmis.tariffs/1",
        "tariffs": [
            tariff(
                "RES-TIER",
                "居民生活阶梯电价(月度)",
                "residential",
                "一户一表居民，月度三档；5人及以上家庭第一档增加100 kWh",
                [
                    _v("2025版", "2025-01-01", _res_tier(RES_FUNDS), "月度阶梯 210/400 kWh"),
                    _v("2026年7月", "2026-07-01", _res_tier(res_funds_2026), "可再生能源附加调整为0.0015"),
                ],
            ),
            tariff(
                "RES-TIER-Y",
                "居民生活阶梯电价(年度)",
                "residential",
                "年度阶梯 2760/4800 kWh，阶梯年度自1月起",
                [
                    _v("2025版", "2025-01-01", _res_tier_y(RES_FUNDS), "年度阶梯", tier_year_start_month=1),
                    _v(
                        "2026年7月",
                        "2026-07-01",
                        _res_tier_y(res_funds_2026),
                        "可再生能源附加调整为0.0015",
                        tier_year_start_month=1,
                    ),
                ],
            ),
            tariff(
                "GCI-FLAT",
                "一般工商业单一制(代理购电)",
                "general_ci",
                "不满1 kV 一般工商业，单一制，不分时",
                [
                    _v(
                        "2025年1月",
                        "2025-01-01",
                        _agency(td="0.1830", purchase="0.4012", tou=False, pf=None),
                        "代理购电价格0.4012",
                    ),
                    _v(
                        "2026年1月",
                        "2026-01-01",
                        _agency(td="0.1830", purchase="0.3876", tou=False, pf=None),
                        "代理购电价格0.3876",
                    ),
                ],
            ),
            tariff(
                "GCI-TOU",
                "一般工商业分时(代理购电)",
                "general_ci",
                "峰平谷 1.7:1:0.38，7–9月尖峰为高峰×1.25，仅代理购电价格浮动",
                [
                    _v(
                        "2025年1月",
                        "2025-01-01",
                        _agency(td="0.1830", purchase="0.4012", tou=True, pf="0.85"),
                        "代理购电价格0.4012",
                        calendar=TOU_CALENDAR,
                    ),
                    _v(
                        "2026年1月",
                        "2026-01-01",
                        _agency(td="0.1830", purchase="0.3876", tou=True, pf="0.85"),
                        "代理购电价格0.3876",
                        calendar=TOU_CALENDAR,
                    ),
                ],
            ),
            tariff(
                "LI-2P",
                "大工业两部制(代理购电)",
                "large_industry",
                "两部制：容量 25 元/kVA·月 或需量 28 元/kW·月；功率因数标准 0.90",
                [
                    _v(
                        "2025年1月",
                        "2025-01-01",
                        _agency(td="0.1230", purchase="0.4012", tou=True, pf="0.90"),
                        "代理购电价格0.4012",
                        calendar=TOU_CALENDAR,
                        basic_prices=LI_BASIC,
                    ),
                    _v(
                        "2026年1月",
                        "2026-01-01",
                        _agency(td="0.1230", purchase="0.3876", tou=True, pf="0.90"),
                        "代理购电价格0.3876",
                        calendar=TOU_CALENDAR,
                        basic_prices=LI_BASIC,
                    ),
                ],
            ),
            tariff(
                "AGR",
                "农业生产电价",
                "agricultural",
                "农业生产单一制，功率因数标准 0.80，免征可再生能源附加",
                [_v("2025版", "2025-01-01", _agr(), "农业生产目录电价")],
            ),
        ],
    }


def build_tariffs(ctx: DemoContext) -> None:
    from django.utils import timezone

    from mmis.tariffs import services

    actor = ctx.users.get("admin")
    at = timezone.make_aware(datetime(2024, 12, 20, 9, 0))
    report = services.import_catalog(actor=actor, payload=demo_catalog(ctx.province.code), at=at)
    rows = ctx.report("tariffs").rows
    rows["tariffs_tariff"] = report.tariffs_created
    rows["tariffs_tariffversion"] = report.versions_created
