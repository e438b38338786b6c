"""Supply contracts (供用电合同, DOMAIN.md §8.4): templates per contract type whose fields are filled
from the customer file, the PDF (reportlab, CJK font STSong-Light), and renewal alerts. The
contract's states live in customers.services (state machine, `contract_display_state`)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

from django.db.models import QuerySet

from mmis.customers.models import Account, MeteringPoint, SupplyContract
from mmis.customers.services import contract_display_state
from mmis.org.models import User
from mmis.org.scope import DataScope

RENEWAL_WARN_DAYS = 60

COMMON = [
    (
        "供电方式与质量",
        "供电人以 {voltage} 电压向用电人供电，供电质量符合国家标准。"
        "供电时间为全天连续供电，计划检修按规定提前通知。",
    ),
    ("用电地址与容量", "用电地址：{address}。合同容量 {capacity} kVA，用电类别：{category}。"),
    ("计量", "计量点 {point_no}，电能表 {meters}，综合倍率 {multiplier}，计量方式：{position}。"),
    (
        "电价与电费结算",
        "按政府核定的电价（电价码 {tariff}）计收电费，缴费方式：{payment}。逾期缴纳按规定计收电费违约金。",
    ),
    (
        "产权分界与维护责任",
        "以{boundary}为产权分界点，分界点电源侧由供电人维护，负荷侧由用电人维护；产权分界点为合同履行地点。",
    ),
    (
        "合同期限",
        "本合同自 {effective_from} 起生效，有效期至 {expires_on}。期满前双方未提出异议的，可按规定续签。",
    ),
    (
        "违约责任",
        "双方按《中华人民共和国民法典》第六百四十八条至第六百五十六条及《供电营业规则》承担违约责任。",
    ),
]

EXTRA = {
    SupplyContract.Type.HIGH_VOLTAGE: [
        ("电源与线路", "供电电压 {voltage}，电源线路 {feeders}；备用电源按供电方案执行。"),
        (
            "基本电费与功率因数",
            "基本电费计收方式：{basic_mode}，合同最大需量 {demand} kW；功率因数考核标准 {pf}。",
        ),
        ("负荷管理与调度", "用电人服从电网调度与有序用电安排，自备电源未经许可不得并网。"),
    ],
    SupplyContract.Type.RESIDENTIAL: [
        ("阶梯电价", "执行居民阶梯电价，家庭人口 {persons} 人，按年度阶梯电量计算。"),
    ],
    SupplyContract.Type.LOW_VOLTAGE: [
        ("表计位置", "电能表安装于 {address} 表箱内，用电人负责妥善保护。"),
    ],
    SupplyContract.Type.TEMPORARY: [
        ("临时用电", "用途：{purpose}。临时用电期限至 {expires_on}，期满即终止供电，需延期的应提前办理。"),
        ("预付电费", "用电人按约定预付电费，预付不足时供电人按规定催缴。"),
    ],
    SupplyContract.Type.PREPAID: [
        ("费控", "余额低于预警阈值时发出通知；余额不足且超过宽限期的，供电人可远程停电，缴费后远程复电。"),
    ],
}

TITLES = {t.value: str(t.label) for t in SupplyContract.Type}


@dataclass
class ContractDocument:
    title: str
    number: str
    parties: list[tuple[str, str]]
    clauses: list[tuple[str, str]]
    state: str


def contract_fields(contract: SupplyContract, *, extra: dict | None = None) -> dict[str, str]:
    """Fields of the template, from the customer file as it is now."""
    customer = contract.customer
    points = list(MeteringPoint.objects.filter(customer=customer).exclude(status="closed").order_by("pk"))
    p = points[0] if points else None
    account = customer.accounts.order_by("pk").first()
    meters = ", ".join(m.asset_no for m in (p.meters.filter(state="installed") if p else [])) or "—"
    fields = {
        "customer": customer.name,
        "customer_no": customer.customer_no,
        "id": customer.id_number_mask,
        "org": contract.org.name,
        "address": p.address.full_text
        if p
        else (customer.addresses.first().full_text if customer.addresses.exists() else "—"),
        "capacity": f"{contract.capacity_kva.normalize():f}",
        "voltage": p.voltage_level if p else "—",
        "category": p.get_usage_category_display() if p else "—",
        "point_no": p.point_no if p else "—",
        "meters": meters,
        "multiplier": f"{p.multiplier.normalize():f}" if p else "1",
        "position": p.get_position_display() if p else "—",
        "tariff": (p.tariff_code or "按目录") if p else "—",
        "payment": dict(Account.PaymentMethod.choices).get(account.payment_method, "") if account else "—",
        "boundary": "计量装置出线侧"
        if p is None or p.voltage_level in ("220V", "380V")
        else "用电人进线开关电源侧",
        "effective_from": f"{contract.effective_from or contract.signed_on or '签订之日'}",
        "expires_on": f"{contract.expires_on or '长期'}",
        "feeders": "按供电方案",
        "basic_mode": (p.get_basic_charge_mode_display() if p else "") or "单一制",
        "demand": f"{p.contract_demand_kw}" if p and p.contract_demand_kw else "—",
        "pf": p.pf_standard if p and p.pf_standard else "不考核",
        "persons": str(p.tier_persons) if p else "—",
        "purpose": "临时用电",
    }
    fields.update(extra or {})
    return fields


def build_document(contract: SupplyContract, *, today: date, extra: dict | None = None) -> ContractDocument:
    fields = contract_fields(contract, extra=extra)
    clauses = [
        (title, text.format(**fields)) for title, text in COMMON + EXTRA.get(contract.contract_type, [])
    ]
    return ContractDocument(
        title=TITLES.get(contract.contract_type, "供用电合同"),
        number=contract.contract_no,
        parties=[
            ("供电人", fields["org"]),
            ("用电人", f"{fields['customer']}（户号 {fields['customer_no']}，证件 {fields['id']}）"),
        ],
        clauses=clauses,
        state=contract_display_state(contract, today=today, warn_days=RENEWAL_WARN_DAYS),
    )


STATE_LABELS = {
    "draft": "草拟",
    "signed": "已签订",
    "effective": "生效",
    "expiring": "即将到期",
    "terminated": "终止",
}


def render_pdf(contract: SupplyContract, *, today: date, extra: dict | None = None) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = "STSong-Light"
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    doc = build_document(contract, today=today, extra=extra)
    title = ParagraphStyle("t", fontName=font, fontSize=18, leading=26, alignment=1, spaceAfter=6)
    small = ParagraphStyle("s", fontName=font, fontSize=9.5, leading=14, alignment=1)
    head = ParagraphStyle("h", fontName=font, fontSize=11.5, leading=18, spaceBefore=8)
    body = ParagraphStyle("b", fontName=font, fontSize=10.5, leading=17, firstLineIndent=21, wordWrap="CJK")
    out = io.BytesIO()
    pdf = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=22 * mm,
        rightMargin=22 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
        title=f"{doc.title} {doc.number}",
        author="MMIS",
    )
    story = [
        Paragraph(doc.title, title),
        Paragraph(f"合同编号：{doc.number}　　状态：{STATE_LABELS.get(doc.state, doc.state)}", small),
        Spacer(1, 6 * mm),
    ]
    for role, who in doc.parties:
        story.append(Paragraph(f"{role}：{who}", ParagraphStyle("p", parent=body, firstLineIndent=0)))
    story.append(
        Paragraph(
            "双方依据《中华人民共和国民法典》《电力供应与使用条例》《供电营业规则》，经协商一致，订立本合同。",
            body,
        )
    )
    for i, (heading, text) in enumerate(doc.clauses, start=1):
        story.append(Paragraph(f"第{i}条　{heading}", head))
        story.append(Paragraph(text, body))
    story.append(Spacer(1, 12 * mm))
    sign = Table(
        [
            ["供电人（盖章）", "用电人（签章）"],
            [
                f"签订日期：{contract.signed_on or '　　年　月　日'}",
                f"签订日期：{contract.signed_on or '　　年　月　日'}",
            ],
        ],
        colWidths=[80 * mm, 80 * mm],
    )
    sign.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), font),
                ("FONTSIZE", (0, 0), (-1, -1), 10.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 10),
            ]
        )
    )
    story.append(sign)
    pdf.build(story)
    return out.getvalue()


def contracts(user: User) -> QuerySet[SupplyContract]:
    return DataScope.for_user(user).filter(SupplyContract.objects.select_related("customer", "org"), "org")


def expiring(user: User, *, today: date, warn_days: int = RENEWAL_WARN_DAYS) -> list[SupplyContract]:
    """Renewal alerts: effective contracts within `warn_days` of expiry (and already expired ones
    still effective), soonest first."""
    qs = (
        contracts(user)
        .filter(state=SupplyContract.State.EFFECTIVE, expires_on__isnull=False)
        .order_by("expires_on")
    )
    return [c for c in qs if contract_display_state(c, today=today, warn_days=warn_days) == "expiring"]
