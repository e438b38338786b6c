"""Supply service commitments (供电服务承诺) of DOMAIN.md §8.2 as the default configuration: the
whole-process limit of each process. They are parameters: a province publishes a new version of
a process definition with other limits (and an effective date) to change them.

The commitment counts utility-side time only: customer-side steps (fees, construction, callback)
and suspension stop the clock (the engine moves the due date by that time).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Commitment:
    name: str
    category: str  # connection | change
    value: int
    unit: str = "working_days"
    cases: list = field(default_factory=list)
    source: str = ""
    prefix: str = "BG"


DUAL = {"field": "supply_mode", "value": "dual"}

COMMITMENTS: dict[str, Commitment] = {
    "lv_residential_new": Commitment(
        "低压居民新装", "connection", 5, source="居民客户报装全过程 ≤ 5 个工作日", prefix="YK"
    ),
    "lv_nonresidential_new": Commitment(
        "低压非居民新装", "connection", 6, source="低压非居民供电企业环节合计 ≤ 6 个工作日", prefix="YK"
    ),
    "hv_new": Commitment(
        "高压新装",
        "connection",
        22,
        cases=[{"when": DUAL, "value": 32}],
        source="高压单电源 ≤ 22、双电源 ≤ 32 个工作日(供电企业环节合计)",
        prefix="YK",
    ),
    "capacity_increase": Commitment(
        "增容", "connection", 22, source="按高压单电源报装时限 ≤ 22 个工作日", prefix="YK"
    ),
    "temporary_supply": Commitment(
        "临时用电", "connection", 6, source="按低压非居民报装时限 ≤ 6 个工作日", prefix="YK"
    ),
    "capacity_reduction": Commitment("减容", "change", 5, source="变更用电 5 个工作日(省公司参数)"),
    "capacity_reduction_restore": Commitment("减容恢复", "change", 5, source="变更用电 5 个工作日"),
    "suspension": Commitment("暂停", "change", 5, source="变更用电 5 个工作日"),
    "suspension_restore": Commitment("暂停恢复", "change", 5, source="变更用电 5 个工作日"),
    "meter_relocation": Commitment("移表", "change", 5, source="变更用电 5 个工作日"),
    "address_move": Commitment("迁址", "change", 5, source="变更用电 5 个工作日"),
    "name_change": Commitment("更名", "change", 5, source="变更用电 5 个工作日"),
    "transfer": Commitment("过户", "change", 5, source="变更用电 5 个工作日"),
    "account_split": Commitment("分户", "change", 5, source="变更用电 5 个工作日"),
    "account_merge": Commitment("并户", "change", 5, source="变更用电 5 个工作日"),
    "voltage_change": Commitment("改压", "change", 10, source="变更用电 10 个工作日"),
    "category_change": Commitment("改类", "change", 5, source="变更用电 5 个工作日"),
    "account_closure": Commitment("销户", "change", 5, source="变更用电 5 个工作日"),
}

# step limits of §8.2 written into the definitions (working days)
STEP_LIMITS = {
    "supply_plan_single": 15,
    "supply_plan_dual": 30,
    "design_review": 10,
    "intermediate_inspection": 5,
    "completion_acceptance": 5,
    "hv_meter_installation": 5,
}

# provincial parameters of §3.4 (suspension and reduction)
SUSPENSION_MIN_DAYS = 15
SUSPENSION_MAX_DAYS_PER_YEAR = 183  # "at most 6 months per calendar year"
REDUCTION_RESTORE_YEARS = 2
TWO_PART_REQUIRED_KVA = 315
TEMPORARY_SUPPLY_MAX_DAYS = 183  # 1996 default: 6 months unless extended
