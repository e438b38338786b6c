"""The 业扩报装 and 变更用电 processes as data for the work-order engine (DOMAIN.md §8).

Each process is a definition published by the province (lower orgs inherit); the time limits
are the supply service commitments of §8.2 (`commitments.COMMITMENTS`), parameters a province
changes by publishing a new version. Every process ends in an effect handler
(`services.effects`) that changes the customer file, metering and contract in one transaction.

Customer-side steps (paying fees, building the customer's installation, signing) are marked
`customer_side`: their time does not count against the utility's commitment.
"""

from __future__ import annotations

from typing import Any

from mmis.services.commitments import COMMITMENTS

# --- form fields --------------------------------------------------------------------------------
USAGE = [
    ["residential", "居民生活"],
    ["general_ci", "一般工商业"],
    ["large_industry", "大工业"],
    ["agricultural", "农业生产"],
]
VOLTAGE_LV = [["220V", "220 V"], ["380V", "380 V"]]
VOLTAGE_HV = [["10kV", "10 kV"], ["35kV", "35 kV"], ["110kV", "110 kV"]]
VOLTAGE_ALL = VOLTAGE_LV + VOLTAGE_HV


def f(name: str, label: str, type_: str = "text", *, required: bool = True, **kw: Any) -> dict:
    return {"name": name, "label": label, "type": type_, "required": required, **kw}


PARTY = [
    f("customer_kind", "客户类型", "choice", choices=[["individual", "个人"], ["organisation", "单位"]]),
    f("customer_name", "户名"),
    f(
        "id_type",
        "证件类型",
        "choice",
        choices=[
            ["resident_id", "居民身份证"],
            ["credit_code", "统一社会信用代码"],
            ["passport", "护照"],
            ["other", "其他证件"],
        ],
    ),
    f("id_number", "证件号码"),
    f("phone", "联系电话"),
    f("contact_name", "联系人", required=False),
]
ADDRESS = [
    f("region", "省市区县"),
    f("street", "街道/乡镇", required=False),
    f("detail", "详细地址"),
]
EXISTING = [f("customer_no", "户号")]
EXISTING_POINT = [
    f("customer_no", "户号"),
    f("point_no", "计量点编号", required=False, help="不填则为主计量点"),
]
METER = [
    f("meter_asset_no", "电能表资产号"),
    f("ct_asset_no", "电流互感器资产号", required=False),
    f("pt_asset_no", "电压互感器资产号", required=False),
    f("initial_reading", "表码底数", "decimal", min=0, required=False),
    f("installed_on", "装表日期", "date"),
]


def limit(days: float | int, *, cases: list | None = None, unit: str = "working_days") -> dict:
    out: dict[str, Any] = {"value": days, "unit": unit}
    if cases:
        out["cases"] = cases
    return out


def step(
    code: str,
    name: str,
    role: str,
    nxt: list | None = None,
    *,
    level: str = "county",
    days: float | int | None = 1,
    form: list | None = None,
    **kw: Any,
) -> dict:
    out: dict[str, Any] = {"code": code, "name": name, "role": role, "org_level": level, "next": nxt or []}
    if days is not None:
        out["time_limit"] = days if isinstance(days, dict) else limit(days)
    if form:
        out["form"] = form
    out.update(kw)
    return out


def accept(nxt: list, form: list | None = None) -> dict:
    return step(
        "accept",
        "业务受理",
        "counter_staff",
        nxt,
        level="initiator",
        days=1,
        assign="initiator",
        form=[f("documents_ok", "资料齐全", "bool", required=False), *(form or [])],
        attachments=["身份证明", "产权证明", "用电申请书"],
        can_send_back=False,
    )


def survey(nxt: list, *, days: int = 1, extra: list | None = None) -> dict:
    return step(
        "survey",
        "现场勘查",
        "inspector",
        nxt,
        level="station",
        days=days,
        form=[
            f("survey_result", "勘查结论", "choice", choices=[["ok", "具备供电条件"], ["not_ok", "不具备"]]),
            f("supply_point", "供电电源点", required=False),
            f("survey_note", "勘查意见", "textarea", required=False),
            *(extra or []),
        ],
    )


def fees(nxt: list) -> dict:
    return step(
        "fees",
        "确定费用及缴费",
        "counter_staff",
        nxt,
        days=2,
        customer_side=True,
        form=[
            f("fee_amount", "业务费用(元)", "decimal", min=0),
            f("fee_paid", "客户已缴费", "bool", required=False),
        ],
    )


def contract(nxt: list, *, term_years: int = 5) -> dict:
    return step(
        "contract",
        "签订供用电合同",
        "counter_staff",
        nxt,
        days=1,
        form=[
            f("signed_on", "签订日期", "date"),
            f("contract_years", "合同期限(年)", "int", min=1, help=f"默认 {term_years} 年"),
        ],
    )


def install(nxt: list, effect: str, *, days: int = 2, extra: list | None = None) -> dict:
    return step(
        "install",
        "装表接电",
        "meter_reader",
        nxt,
        level="station",
        days=days,
        form=[*METER, f("energised_on", "送电日期", "date"), *(extra or [])],
        effect=effect,
        can_send_back=True,
    )


def change(nxt: list, effect: str, name: str = "现场实施", form: list | None = None, days: int = 2) -> dict:
    return step(
        "execute",
        name,
        "meter_reader",
        nxt,
        level="station",
        days=days,
        form=[f("done_on", "实施日期", "date"), *(form or [])],
        effect=effect,
    )


def archive(nxt: list | None = None) -> dict:
    return step(
        "archive",
        "资料归档",
        "counter_staff",
        nxt,
        days=1,
        form=[f("archive_note", "归档说明", required=False)],
        effect="services.archived",
        can_send_back=True,
    )


def callback() -> dict:
    return step(
        "callback",
        "客户回访",
        "service_agent",
        None,
        level="city",
        days=3,
        customer_side=True,
        can_send_back=False,
        form=[
            f(
                "satisfaction",
                "满意度",
                "choice",
                choices=[["satisfied", "满意"], ["neutral", "一般"], ["unsatisfied", "不满意"]],
            ),
            f("callback_note", "回访记录", required=False),
        ],
    )


def approve(code: str, name: str, nxt: list, *, days: int = 1, role: str = "manager") -> dict:
    return step(
        code,
        name,
        role,
        nxt,
        days=days,
        form=[
            f("approved", "审批意见", "choice", choices=[["yes", "同意"], ["no", "不同意"]]),
            f("approval_note", "说明", required=False),
        ],
    )


def spec(code: str, steps: list[dict], start_form: list[dict], *, warn_share: str = "0.8") -> dict:
    c = COMMITMENTS[code]
    out: dict[str, Any] = {"start": steps[0]["code"], "warn_share": warn_share, "steps": steps}
    out["start_form"] = start_form
    out["time_limit"] = {"value": c.value, "unit": c.unit}
    if c.cases:
        out["time_limit"]["cases"] = c.cases
    return out


REFUSED = {"field": "approved", "value": "no"}
NOT_OK = {"field": "survey_result", "value": "not_ok"}


def new_connection_steps(effect: str, *, hv: bool = False, fees_step: bool = True) -> list[dict]:
    if hv:
        plan_days = limit(15, cases=[{"when": {"field": "supply_mode", "value": "dual"}, "value": 30}])
        return [
            accept(["survey"]),
            survey(["plan"], days=2),
            step(
                "plan",
                "供电方案答复",
                "manager",
                ["design_review"],
                days=plan_days,
                form=[
                    f("supply_plan", "供电方案", "textarea"),
                    f("feeders", "电源线路", required=False),
                    f(
                        "metering_position",
                        "计量方式",
                        "choice",
                        choices=[["boundary", "高供高计"], ["hv_supply_lv_metering", "高供低计"]],
                    ),
                ],
            ),
            step(
                "design_review",
                "设计审查",
                "inspector",
                ["construction"],
                days=10,
                form=[
                    f(
                        "design_result",
                        "审查结论",
                        "choice",
                        choices=[["pass", "通过"], ["revise", "需修改"]],
                    ),
                    f("design_note", "审查意见", required=False),
                ],
            ),
            step(
                "construction",
                "客户工程施工",
                "counter_staff",
                ["mid_inspection"],
                days=60,
                customer_side=True,
                form=[f("construction_done_on", "竣工报验日期", "date")],
            ),
            step(
                "mid_inspection",
                "中间检查",
                "inspector",
                ["final_inspection"],
                days=5,
                form=[f("mid_result", "检查结论", "choice", choices=[["pass", "合格"], ["fail", "不合格"]])],
            ),
            step(
                "final_inspection",
                "竣工检验",
                "inspector",
                ["fees"],
                days=5,
                form=[
                    f("final_result", "检验结论", "choice", choices=[["pass", "合格"], ["fail", "不合格"]])
                ],
            ),
            fees(["contract"]),
            contract(["install"]),
            install(["archive"], effect, days=5),
            archive(["callback"]),
            callback(),
        ]
    steps = [accept(["survey"]), survey(["fees" if fees_step else "contract"])]
    if fees_step:
        steps.append(fees(["contract"]))
    steps += [contract(["install"]), install(["archive"], effect), archive(["callback"]), callback()]
    return steps


NEW_LV_FORM = [
    *PARTY,
    *ADDRESS,
    f("usage_category", "用电类别", "choice", choices=USAGE),
    f("voltage_level", "电压等级", "choice", choices=VOLTAGE_LV),
    f("capacity_kva", "申请容量(kVA)", "decimal", min=0),
    f("tier_persons", "家庭人口", "int", required=False, min=0),
    f("tariff_code", "电价码", required=False),
    f("reading_book_code", "抄表段", required=False),
]
NEW_HV_FORM = [
    *PARTY,
    *ADDRESS,
    f("usage_category", "用电类别", "choice", choices=USAGE[1:]),
    f("voltage_level", "电压等级", "choice", choices=VOLTAGE_HV),
    f("capacity_kva", "申请容量(kVA)", "decimal", min=0),
    f("supply_mode", "供电方式", "choice", choices=[["single", "单电源"], ["dual", "双电源"]]),
    f(
        "basic_charge_mode",
        "基本电费计收方式",
        "choice",
        required=False,
        choices=[
            ["capacity", "按容量"],
            ["demand_contract", "按合同最大需量"],
            ["demand_actual", "按实际最大需量"],
        ],
    ),
    f("contract_demand_kw", "合同最大需量(kW)", "decimal", required=False, min=0),
    f(
        "pf_standard",
        "力调标准",
        "choice",
        required=False,
        choices=[["0.90", "0.90"], ["0.85", "0.85"], ["0.80", "0.80"]],
    ),
    f("tariff_code", "电价码", required=False),
    f("reading_book_code", "抄表段", required=False),
]


def _definitions() -> dict[str, dict]:
    d: dict[str, dict] = {}
    d["lv_residential_new"] = spec(
        "lv_residential_new",
        new_connection_steps("services.new_connection", fees_step=False),
        [x for x in NEW_LV_FORM if x["name"] != "usage_category"],
    )
    d["lv_nonresidential_new"] = spec(
        "lv_nonresidential_new",
        new_connection_steps("services.new_connection"),
        [x for x in NEW_LV_FORM if x["name"] != "tier_persons"],
    )
    d["hv_new"] = spec("hv_new", new_connection_steps("services.new_connection", hv=True), NEW_HV_FORM)
    d["temporary_supply"] = spec(
        "temporary_supply",
        new_connection_steps("services.new_connection"),
        [
            *[x for x in NEW_LV_FORM if x["name"] not in ("tier_persons",)],
            f("purpose", "临时用电用途"),
            f("supply_until", "用电截止日期", "date", help="一般不超过6个月"),
        ],
    )
    for code, sign in (("capacity_increase", "增容"),):
        d[code] = spec(
            code,
            [
                accept(["survey"]),
                survey(["fees"], days=2),
                fees(["contract"]),
                contract(["execute"]),
                change(
                    ["archive"],
                    "services.capacity_increase",
                    "装表接电",
                    [
                        f("meter_asset_no", "电能表资产号", required=False, help="换表时填写"),
                        f("end_reading", "拆表表码", "decimal", min=0, required=False, help="换表时必填"),
                        *METER[1:4],
                        f("installed_on", "装表日期", "date", required=False),
                    ],
                    days=3,
                ),
                archive(["callback"]),
                callback(),
            ],
            [
                *EXISTING_POINT,
                f("new_capacity_kva", f"{sign}后容量(kVA)", "decimal", min=0),
                f("voltage_level", "电压等级", "choice", required=False, choices=VOLTAGE_ALL),
            ],
        )
    simple = {
        "capacity_reduction": (
            "减容",
            "services.capacity_reduction",
            [
                f("reduced_kva", "减少容量(kVA)", "decimal", min=0),
                f("start_on", "减容开始日期", "date"),
                f("end_on", "减容结束日期", "date", required=False),
            ],
            [f("sealed", "设备已加封", "bool")],
        ),
        "capacity_reduction_restore": (
            "减容恢复",
            "services.capacity_reduction_restore",
            [
                f("restore_on", "恢复日期", "date"),
            ],
            [f("seal_removed", "已启封", "bool")],
        ),
        "suspension": (
            "暂停",
            "services.suspension",
            [
                f("suspended_kva", "暂停容量(kVA)", "decimal", min=0, help="整台变压器容量"),
                f("start_on", "暂停开始日期", "date"),
                f("end_on", "暂停结束日期", "date"),
            ],
            [f("sealed", "设备已加封", "bool")],
        ),
        "suspension_restore": (
            "暂停恢复",
            "services.suspension_restore",
            [
                f("restore_on", "恢复日期", "date"),
            ],
            [f("seal_removed", "已启封", "bool")],
        ),
        "meter_relocation": (
            "移表",
            "services.meter_relocation",
            [
                f("new_location", "新装表位置"),
                f("reason", "移表原因", required=False),
            ],
            [f("end_reading", "拆表表码", "decimal", min=0, required=False)],
        ),
        "address_move": (
            "迁址",
            "services.address_move",
            [
                f("new_region", "新址省市区县"),
                f("new_street", "新址街道/乡镇", required=False),
                f("new_detail", "新址详细地址"),
            ],
            [],
        ),
        "name_change": (
            "更名",
            "services.name_change",
            [
                f("new_name", "新户名"),
                f("reason", "更名原因", required=False),
            ],
            [],
        ),
        "transfer": (
            "过户",
            "services.transfer",
            [
                f(
                    "new_customer_kind",
                    "新客户类型",
                    "choice",
                    choices=[["individual", "个人"], ["organisation", "单位"]],
                ),
                f("new_name", "新户名"),
                f(
                    "new_id_type",
                    "新证件类型",
                    "choice",
                    choices=[
                        ["resident_id", "居民身份证"],
                        ["credit_code", "统一社会信用代码"],
                        ["passport", "护照"],
                        ["other", "其他证件"],
                    ],
                ),
                f("new_id_number", "新证件号码"),
                f("new_phone", "新联系电话"),
                f(
                    "tier_year",
                    "阶梯年度",
                    "choice",
                    choices=[["continue", "延续"], ["restart", "重新计算"]],
                    required=False,
                ),
            ],
            [],
        ),
        "account_split": (
            "分户",
            "services.account_split",
            [
                f("point_no", "分出的计量点编号"),
                *[
                    {**x, "name": "new_" + x["name"] if x["name"] != "customer_name" else "new_name"}
                    for x in PARTY
                    if x["name"] != "customer_kind"
                ],
                f(
                    "new_customer_kind",
                    "新客户类型",
                    "choice",
                    choices=[["individual", "个人"], ["organisation", "单位"]],
                ),
            ],
            [],
        ),
        "account_merge": (
            "并户",
            "services.account_merge",
            [
                f("merged_customer_no", "并入的户号(将被注销)"),
            ],
            [],
        ),
        "voltage_change": (
            "改压",
            "services.voltage_change",
            [
                f("new_voltage_level", "新电压等级", "choice", choices=VOLTAGE_ALL),
            ],
            [],
        ),
        "category_change": (
            "改类",
            "services.category_change",
            [
                f("new_usage_category", "新用电类别", "choice", choices=USAGE),
                f("new_tariff_code", "新电价码", required=False),
            ],
            [],
        ),
        "account_closure": (
            "销户",
            "services.account_closure",
            [
                f("reason", "销户原因"),
            ],
            [f("final_reading", "拆表表码", "decimal", min=0, required=False)],
        ),
    }
    for code, (name, effect, start_form, exec_form) in simple.items():
        is_party = code in ("name_change", "transfer", "account_split", "account_merge")
        steps = [accept(["survey"] if not is_party else ["approve"])]
        if is_party:
            steps.append(
                approve("approve", f"{name}审核", [{"to": "end_refused", "when": REFUSED}, "execute"])
            )
        else:
            steps.append(survey([{"to": "end_refused", "when": NOT_OK}, "execute"]))
        if code == "account_closure":
            steps[-1] = survey(["settle"])
            steps.append(
                step(
                    "settle",
                    "结清电费",
                    "cashier",
                    ["execute"],
                    days=2,
                    customer_side=True,
                    form=[
                        f("settled", "已结清电费及违约金", "bool"),
                        f("final_bill_no", "末次账单号", required=False),
                    ],
                )
            )
        steps.append(change(["archive"], effect, f"{name}实施", exec_form))
        steps.append(archive(["callback"]))
        steps.append(callback())
        if code != "account_closure":
            steps.append(
                step(
                    "end_refused",
                    "不予办理归档",
                    "counter_staff",
                    None,
                    days=1,
                    form=[f("refusal_note", "告知客户说明")],
                )
            )
        start_fields = (
            EXISTING_POINT
            if code not in ("name_change", "transfer", "account_merge", "account_closure", "account_split")
            else EXISTING
        )
        d[code] = spec(code, steps, [*start_fields, *start_form])
    return d


DEFINITIONS = _definitions()


def definitions() -> dict[str, dict]:
    return DEFINITIONS
