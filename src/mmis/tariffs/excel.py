"""The price table as an Excel workbook (openpyxl): one row per version, one column per price."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from mmis.customers.models import UsageCategory, VoltageLevel
from mmis.tariffs import queries, rules
from mmis.tariffs.models import Tariff, TariffVersion

PERIODS = ("sharp", "peak", "flat", "valley")


def _num(value) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def price_table(tariffs: list[Tariff], *, on: date, include_drafts: bool = False) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "电价表"
    component_codes: list[str] = []
    rows = []
    for t in tariffs:
        for row in reversed(queries.timeline(t, on=on)):
            v: TariffVersion = row.version
            if not v.is_published and not include_drafts:
                continue
            for c in v.pricing.get("components") or []:
                if c["code"] not in component_codes:
                    component_codes.append(c["code"])
            rows.append((t, row))
    fund_codes = list(rules.FUND_NAMES)
    header = [
        "电价码", "名称", "发布单位", "用电类别", "电压等级", "版本", "状态",
        "生效日期", "失效日期", "执行中", "电度电价类型",
        "单一电价", "第一档上限", "第一档", "第二档上限", "第二档", "第三档", "阶梯基准",
        *(f"{rules.PERIOD_NAMES[p]}" for p in PERIODS),
        *(rules.COMPONENT_NAMES.get(c, c) for c in component_codes),
        "容量电价(元/kVA·月)", "需量电价(元/kW·月)", "功率因数标准",
        *(rules.FUND_NAMES[f] for f in fund_codes), "基金及附加合计",
    ]  # fmt: skip
    ws.append(header)
    categories = dict(UsageCategory.choices)
    voltages = dict(VoltageLevel.choices)
    for t, row in rows:
        v = row.version
        p = v.pricing
        e = p["energy"]
        tiers = e.get("tiers") or []
        tier_cells: list = []
        for i in range(3):
            tier = tiers[i] if i < len(tiers) else None
            if i < 2:
                tier_cells.append(_num(tier.get("up_to")) if tier else None)
            tier_cells.append(_num(tier.get("price", tier.get("increment"))) if tier else None)
        comps = {c["code"]: c for c in p.get("components") or []}
        funds = {f["code"]: _num(f["price"]) for f in p.get("funds") or []}
        bp = v.basic_prices or {}
        ws.append(
            [
                t.code, t.name, t.org.name, str(categories.get(t.usage_category, t.usage_category)),
                str(voltages.get(t.voltage_level, "不分")) if t.voltage_level else "不分",
                v.label, v.get_state_display(), v.effective_from, row.effective_to,
                "是" if row.in_force else "",
                {"flat": "单一", "tiered": "阶梯", "tou": "分时"}[e["type"]], _num(e.get("price")),
                *tier_cells,
                {"monthly": "月度", "annual": "年度"}.get(e.get("basis", ""), "") if tiers else "",
                *(_num((e.get("prices") or {}).get(x)) for x in PERIODS),
                *(_num(comps[c]["price"]) if c in comps else None for c in component_codes),
                _num(bp.get("capacity")), _num(bp.get("demand_contract") or bp.get("demand_actual")),
                (p.get("power_factor") or {}).get("standard", ""),
                *(funds.get(f) for f in fund_codes),
                sum((x for x in funds.values() if x is not None), Decimal(0)),
            ]
        )  # fmt: skip
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDEBF7")
    for i, _ in enumerate(header, start=1):
        cell = ws.cell(row=1, column=i)
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        ws.column_dimensions[get_column_letter(i)].width = 12 if i > 2 else 22
    for r in ws.iter_rows(min_row=2):
        for cell in r:
            if isinstance(cell.value, Decimal):
                cell.number_format = "0.00######"
            elif isinstance(cell.value, date):
                cell.number_format = "yyyy-mm-dd"
    ws.freeze_panes = "C2"
    out = BytesIO()
    wb.save(out)
    return out.getvalue()
