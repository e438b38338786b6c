"""The state shared by the demo steps."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

# The demo's "today": every generated date is on or before it, whatever day the demo is built.
DEMO_TODAY = date(2026, 11, 1)
OPENED_FROM = date(2005, 1, 1)
OPENED_UNTIL = date(2026, 10, 31)
PASSWORD = "Mmis@2026"


@dataclass
class StationInfo:
    org: Any  # Org
    county: Any  # Org
    city_index: int  # into geo.CITIES
    county_index: int  # within the city
    region_code: str  # 6-digit region code of the county
    region: str  # 示范省济南市历下区
    street: str  # 龙山街道 / 城关镇
    stem: str  # 龙山
    urban: bool


@dataclass
class StepReport:
    name: str
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    table_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class DemoContext:
    customers: int = 5000
    seed: int = 2026
    progress: bool = True
    today: date = DEMO_TODAY
    log: Callable[[str], None] = print
    # filled by the steps
    province: Any = None
    cities: list = field(default_factory=list)
    counties: list = field(default_factory=list)
    stations: list[StationInfo] = field(default_factory=list)
    halls: list = field(default_factory=list)
    users: dict[str, Any] = field(default_factory=dict)
    reports: list[StepReport] = field(default_factory=list)
    # free-form results of steps for the steps after them (e.g. "customer_ids": (first, count))
    data: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def report(self, name: str) -> StepReport:
        for r in self.reports:
            if r.name == name:
                return r
        r = StepReport(name)
        self.reports.append(r)
        return r
