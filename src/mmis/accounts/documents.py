"""Printable documents: payment receipt and account statement (PDF, reportlab, STSong-Light),
and the ledger report by org and day (Excel, openpyxl)."""

from __future__ import annotations

import io
from datetime import date

from django.db.models import Sum

from mmis.accounts.models import EntryKind, LedgerEntry, Payment
from mmis.common.money import ZERO, money_str

FONT = "STSong-Light"


def _canvas():
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    try:
        pdfmetrics.getFont(FONT)
    except KeyError:
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    buf = io.BytesIO()
    return buf, canvas.Canvas(buf, pagesize=A4), A4


def receipt_pdf(payment: Payment) -> bytes:
    buf, c, (w, h) = _canvas()
    y = h - 60
    c.setFont(FONT, 18)
    c.drawCentredString(w / 2, y, "电费缴费收据 Payment receipt")
    c.setFont(FONT, 11)
    acc = payment.account
    rows = [
        ("收据号 Receipt no.", payment.receipt_no),
        ("户号 Account", acc.account_no),
        ("户名 Name", acc.name),
        ("缴费金额 Amount (元)", money_str(payment.amount)),
        ("缴费方式 Channel", str(payment.get_channel_display())),
        ("缴费时间 Paid at", payment.paid_at.strftime("%Y-%m-%d %H:%M")),
        ("营业日 Business day", payment.business_date.isoformat()),
        ("收费员 Cashier", str(payment.cashier or "")),
    ]
    for label, value in rows:
        y -= 24
        c.drawString(70, y, label)
        c.drawString(260, y, value)
    y -= 36
    c.drawString(70, y, "本次销账 Settled")
    for a in payment.entry.allocations_out.select_related("debit").order_by("id"):
        y -= 18
        c.drawString(90, y, f"{a.debit.document_no}  {a.get_component_display()}  {money_str(a.amount)}")
    c.showPage()
    c.save()
    return buf.getvalue()


def statement_pdf(st: dict) -> bytes:
    buf, c, (w, h) = _canvas()
    acc = st["account"]

    def header(y):
        c.setFont(FONT, 16)
        c.drawCentredString(w / 2, y, "电费对账单 Account statement")
        c.setFont(FONT, 10)
        c.drawString(50, y - 24, f"户号 {acc.account_no}   户名 {acc.name}")
        period = f"{st['start'] or '开户'} ~ {st['end'] or '至今'}"
        c.drawString(50, y - 40, f"期间 {period}   期初余额 {money_str(st['opening'])}")
        y -= 64
        for x, t in (
            (50, "日期"),
            (120, "单据号"),
            (290, "摘要"),
            (380, "借方(应收)"),
            (450, "贷方(实收)"),
            (520, "余额"),
        ):
            c.drawString(x, y, t)
        return y - 16

    y = header(h - 50)
    for ln in st["lines"]:
        if y < 60:
            c.showPage()
            y = header(h - 50)
        e = ln.entry
        c.drawString(50, y, e.business_date.isoformat())
        c.drawString(120, y, e.document_no[:26])
        c.drawString(290, y, str(EntryKind(e.kind).label)[:8])
        c.drawRightString(440, y, money_str(ln.debit) if ln.debit else "")
        c.drawRightString(510, y, money_str(ln.credit) if ln.credit else "")
        c.drawRightString(570, y, money_str(ln.running))
        y -= 15
    y -= 10
    c.drawString(
        50,
        y,
        f"借方合计 {money_str(st['debits'])}   贷方合计 {money_str(st['credits'])}   "
        f"期末余额 {money_str(st['closing'])}（正数为欠费，负数为预收）",
    )
    c.showPage()
    c.save()
    return buf.getvalue()


def ledger_report_xlsx(*, orgs_qs, start: date, end: date) -> bytes:
    """Entries by org, day and kind over [start, end): count and amount."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "账务日报"
    ws.append(["单位 Org", "记账日 Day", "类型 Kind", "笔数 Count", "金额 Amount"])
    rows = (
        LedgerEntry.objects.filter(org__in=orgs_qs, business_date__gte=start, business_date__lt=end)
        .values_list("org__name", "business_date", "kind")
        .annotate(n=Sum(1), t=Sum("amount"))
        .order_by("org__name", "business_date", "kind")
    )
    for org, day, kind, n, t in rows:
        ws.append([org, day.isoformat(), str(EntryKind(kind).label), n, float(t)])
    for col, width in zip("ABCDE", (30, 14, 16, 10, 16), strict=True):
        ws.column_dimensions[col].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def arrears_xlsx(*, rows, names: dict[int, str], by_org, by_org_totals, totals, title: str) -> bytes:
    """The filtered arrears list (every row, not a page) and the ageing report by org: money cells
    are numbers formatted 0.00. `names`: org id → name for the list's org column."""
    from django.utils.translation import gettext as _
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from mmis.accounts.rules import AGEING_BUCKETS

    buckets = [b for b in AGEING_BUCKETS if b != "current"]
    bucket_heads = [_("%(b)s 天") % {"b": b} for b in buckets]
    bold = Font(bold=True)

    def money(ws, row: int, cols: range) -> None:
        for col in cols:
            ws.cell(row=row, column=col).number_format = "0.00"

    wb = Workbook()
    ws = wb.active
    ws.title = _("欠费清单")
    ws.append([title])
    heads = [
        _("户号"),
        _("户名"),
        _("供电单位"),
        _("欠费"),
        _("笔数"),
        _("最早到期"),
        _("逾期天数"),
        _("账龄"),
    ]
    ws.append([*heads, *bucket_heads, _("分期/缓缴")])
    for c in ws[2]:
        c.font = bold
    for r in rows:
        ws.append(
            [
                r.account_no,
                r.name,
                names.get(r.org_id, ""),
                r.total,
                r.items,
                r.oldest_due,
                r.days,
                _("%(b)s 天") % {"b": r.bucket},
            ]
            + [r.buckets.get(b, ZERO) for b in buckets]
            + [_("是") if r.on_plan else ""]
        )
        money(ws, ws.max_row, range(4, 5))
        money(ws, ws.max_row, range(9, 9 + len(buckets)))
        ws.cell(row=ws.max_row, column=6).number_format = "yyyy-mm-dd"
    ws.append(
        [_("合计"), f"{totals.accounts} " + _("户"), "", totals.total, "", "", "", ""]
        + [totals.ageing[b] for b in buckets]
    )
    money(ws, ws.max_row, range(4, 5))
    money(ws, ws.max_row, range(9, 9 + len(buckets)))
    for c in ws[ws.max_row]:
        c.font = bold
    for col, width in zip("ABCDEFGH", (14, 28, 24, 14, 8, 12, 10, 10), strict=True):
        ws.column_dimensions[col].width = width

    ws = wb.create_sheet(_("分单位账龄"))
    ws.append([title])
    ws.append([_("单位"), _("欠费户数"), _("欠费合计"), *bucket_heads])
    for c in ws[2]:
        c.font = bold
    for r in [*by_org, by_org_totals]:
        label = r.org.name
        if r is by_org_totals:
            label = _("合计")
        elif r.own:
            label = _("%(org)s（本级）") % {"org": r.org.name}
        ws.append([label, r.accounts, r.total] + [r.ageing[b] for b in buckets])
        money(ws, ws.max_row, range(3, 4 + len(buckets)))
    for c in ws[ws.max_row]:
        c.font = bold
    ws.column_dimensions["A"].width = 30
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
