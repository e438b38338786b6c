"""Bill documents: the bill PDF in Chinese (reportlab, CID font STSong-Light) with the lines and a
12-month usage chart, and the Excel export of a run (openpyxl, streamed in write-only mode)."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

from mmis.billing import queries
from mmis.billing.models import Bill, BillingRun

FONT = "STSong-Light"


def _font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def bill_pdf(bill: Bill) -> bytes:
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = _font()
    title = ParagraphStyle("t", fontName=font, fontSize=18, leading=24, alignment=1)
    sub = ParagraphStyle("s", fontName=font, fontSize=9, leading=12, alignment=1, textColor=colors.grey)
    body = ParagraphStyle("b", fontName=font, fontSize=10, leading=14)
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm, bottomMargin=16 * mm
    )
    c, p, acc = bill.customer, bill.point, bill.account
    story = [
        Paragraph(f"{bill.org.name} 电费账单", title),
        Paragraph("Electricity bill", sub),
        Spacer(1, 6 * mm),
    ]
    trace = bill.full_trace
    segs = trace.get("seg") or [{}]
    version = segs[-1].get("vl") or f"版本 {bill.tariff_version_id}"
    last_day = bill.period_end - timedelta(days=1)  # the period is [start, end)
    small = ParagraphStyle("a", fontName=font, fontSize=9, leading=11)
    head = [
        ["户号 Customer no.", c.customer_no, "账单号 Bill no.", bill.number],
        ["户名 Name", Paragraph(c.name, small), "计费期 Period", f"{bill.period_start} 至 {last_day}"],
        ["账户 Account", acc.account_no, "用电类别 Category", p.get_usage_category_display()],
        ["计量点 Point", p.point_no, "电价 Tariff", f"{bill.tariff_code} ({version})"],
        [
            "用电地址 Address",
            Paragraph(p.address.full_text if p.address_id else "", small),
            "状态 State",
            bill.get_state_display(),
        ],
    ]
    t = Table(head, colWidths=[32 * mm, 55 * mm, 30 * mm, 57 * mm])
    t.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), font, 9),
                ("TEXTCOLOR", (0, 0), (0, -1), colors.grey),
                ("TEXTCOLOR", (2, 0), (2, -1), colors.grey),
                ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.grey),
            ]
        )
    )
    story += [t, Spacer(1, 5 * mm)]
    r = trace.get("r", {})
    reading_rows = [["起码 Start", "止码 End", "倍率 Multiplier", "电量 kWh", "估抄 Estimated"]]
    reading_rows.append(
        [
            _regs(r.get("start")),
            _regs(r.get("end")),
            r.get("mult", ""),
            f"{bill.energy_kwh.normalize():f}",
            "是" if bill.estimated else "否",
        ]
    )
    rt = Table(reading_rows, colWidths=[45 * mm, 45 * mm, 26 * mm, 32 * mm, 26 * mm])
    rt.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), font, 9),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef3f8")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey),
            ]
        )
    )
    story += [rt, Spacer(1, 5 * mm)]
    rows = [["项目 Item", "电量/基数 Quantity", "单价 Price", "金额(元) Amount"]]
    for ln in bill.lines.all():
        rows.append(
            [
                queries.line_label(ln.code),
                f"{ln.quantity.normalize():f}",
                f"{ln.price.normalize():f}",
                f"{ln.amount:,.2f}",
            ]
        )
    rows.append(["合计 Total", "", "", f"{bill.amount:,.2f}"])
    lt = Table(rows, colWidths=[64 * mm, 40 * mm, 32 * mm, 38 * mm])
    lt.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), font, 9),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef3f8")),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                ("FONT", (0, -1), (-1, -1), font, 11),
                ("LINEABOVE", (0, -1), (-1, -1), 1, colors.black),
            ]
        )
    )
    story += [lt, Spacer(1, 4 * mm)]
    if bill.due_date:
        story.append(Paragraph(f"请于 {bill.due_date:%Y年%m月%d日} 前缴纳电费 {bill.amount:,.2f} 元。", body))
    vat = _vat(bill)
    story.append(Paragraph(f"电价含增值税(13%);其中税额约 {vat:,.2f} 元,政府性基金及附加不计税。", body))
    story.append(Spacer(1, 5 * mm))
    hist = queries.usage_history(bill)
    d = Drawing(170 * mm, 62 * mm)
    d.add(String(0, 57 * mm, "近12个月用电量(kWh) Usage, last 12 months", fontName=font, fontSize=10))
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 12 * mm, 10 * mm, 150 * mm, 42 * mm
    chart.data = [[float(h["kwh"]) for h in hist] or [0]]
    chart.categoryAxis.categoryNames = [h["month"][2:] for h in hist] or [""]
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.bars[0].fillColor = colors.HexColor("#2f6fb0")
    d.add(chart)
    story.append(d)
    doc.build(story)
    return buf.getvalue()


def _regs(v) -> str:
    if isinstance(v, dict):
        parts = [
            f"{k}:{x}" for k, x in v.items() if x not in (None, "") and k in ("total", "date", "reading_date")
        ]
        return " ".join(parts) or "—"
    return str(v or "—")


def _vat(bill: Bill) -> Decimal:
    taxable = sum((ln.amount for ln in bill.lines.all() if not ln.code.startswith("fund.")), Decimal(0))
    return (taxable / Decimal("1.13") * Decimal("0.13")).quantize(Decimal("0.01"))


def run_excel(run: BillingRun, user=None) -> bytes:
    """The run's bills, exceptions and partitions as a workbook; with `user`, only the bills and
    exceptions inside the user's data scope (a county auditor exporting a province's run)."""
    from openpyxl import Workbook

    from mmis.org.scope import DataScope

    scope = DataScope.for_user(user) if user is not None else None

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("账单 Bills")
    ws.append(
        [
            "账单号",
            "户号",
            "户名",
            "计量点",
            "电价码",
            "计费期起",
            "计费期止",
            "电量(kWh)",
            "电费(元)",
            "状态",
            "估抄",
            "审核标记",
            "风险",
        ]
    )
    bills = Bill.objects.filter(run=run)
    if scope is not None:
        bills = scope.filter(bills, "org")
    qs = bills.order_by("pk").values_list(
        "number",
        "customer__customer_no",
        "customer__name",
        "point__point_no",
        "tariff_code",
        "period_start",
        "period_end",
        "energy_kwh",
        "amount",
        "state",
        "estimated",
        "flags",
        "risk",
    )
    states = dict(Bill.State.choices)
    for row in qs.iterator(chunk_size=5000):
        row = list(row)
        row[9] = str(states.get(row[9], row[9]))
        row[10] = "是" if row[10] else ""
        row[11] = ",".join(row[11] or [])
        ws.append(row)
    ex = wb.create_sheet("异常 Exceptions")
    ex.append(["计量点", "户号", "分区", "原因", "说明"])
    exceptions = queries.exceptions(run)
    if scope is not None:
        exceptions = scope.filter(exceptions, "point__org")
    for e in exceptions:
        ex.append([e.point.point_no, e.point.customer.customer_no, e.partition.key, e.reason, e.message])
    parts = wb.create_sheet("分区 Partitions")
    parts.append(
        ["分区", "状态", "次数", "计量点", "账单", "异常", "待审核", "电费(元)", "耗时(秒)", "执行者"]
    )
    for p in run.partitions.all():
        parts.append(
            [
                p.key,
                p.get_state_display(),
                p.attempt,
                p.points,
                p.bills,
                p.exceptions,
                p.flagged,
                p.amount,
                round(p.seconds, 3),
                p.worker,
            ]
        )
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
