"""Receivables ledger (应收账), payments and channels, arrears, prepaid cost control, day close.

The ledger is append-only: a `LedgerEntry` is a posted document with balanced `LedgerLine`s
(debits positive, credits negative, summing to zero). An entry is never edited or deleted; a
mistake is corrected by a new entry that points at the original (`reverses` / `refers_to`).
A customer account's balance is the sum of its receivable lines (equal to the sum of its
entries' `amount`): positive = owed by the customer, negative = prepayment (预收).

`Allocation` rows say which credit (payment, credit adjustment, write-off) settled which debit
(charge, late fee, debit adjustment, refund, reversal), and for which component (principal or
late fee). They are append-only too: undoing an allocation is a negative allocation row.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from mmis.customers.models import Account
from mmis.org.models import Org


class ImmutableRow(Exception):
    """Posted ledger rows are never edited or deleted: post a correcting document instead."""


class AppendOnlyModel(models.Model):
    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableRow(f"{self._meta.label} {self.pk} is posted and cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRow(f"{self._meta.label} {self.pk} is posted and cannot be deleted")


class GL(models.TextChoices):
    """General-ledger codes of the lines (the other side of every receivable movement)."""

    RECEIVABLE = "receivable", _("应收电费")
    REVENUE = "revenue", _("电费收入")
    LATE_FEE_INCOME = "late_fee_income", _("违约金收入")
    CASH = "cash", _("现金")
    POS = "pos", _("POS")
    CHEQUE = "cheque", _("支票")
    BANK_CLEARING = "bank_clearing", _("银行代扣待清算")
    AGENCY_CLEARING = "agency_clearing", _("代收待清算")
    ONLINE_CLEARING = "online_clearing", _("线上待清算")
    REFUND_PAYABLE = "refund_payable", _("应付退款")
    BAD_DEBT = "bad_debt", _("坏账核销")
    TRANSFER = "transfer", _("转账")
    OPENING = "opening", _("期初")


class EntryKind(models.TextChoices):
    CHARGE = "charge", _("电费应收")
    LATE_FEE = "late_fee", _("违约金")
    ADJUSTMENT_DEBIT = "adjustment_debit", _("调整(补收)")
    ADJUSTMENT_CREDIT = "adjustment_credit", _("调整(退费)")
    PAYMENT = "payment", _("缴费")
    REVERSAL = "reversal", _("冲正")
    REFUND = "refund", _("退款")
    TRANSFER_IN = "transfer_in", _("转入")
    TRANSFER_OUT = "transfer_out", _("转出")
    WRITE_OFF = "write_off", _("核销")


DEBIT_KINDS = (
    EntryKind.CHARGE,
    EntryKind.LATE_FEE,
    EntryKind.ADJUSTMENT_DEBIT,
    EntryKind.REFUND,
    EntryKind.TRANSFER_OUT,
)
# Debts that run late fees and that a payment settles oldest first.
DEBT_KINDS = (EntryKind.CHARGE, EntryKind.ADJUSTMENT_DEBIT, EntryKind.LATE_FEE)
CREDIT_KINDS = (
    EntryKind.PAYMENT,
    EntryKind.ADJUSTMENT_CREDIT,
    EntryKind.TRANSFER_IN,
    EntryKind.WRITE_OFF,
)


class Channel(models.TextChoices):
    CASH = "cash", _("现金")
    POS = "pos", _("POS刷卡")
    CHEQUE = "cheque", _("支票")
    BANK_WITHHOLDING = "bank_withholding", _("银行代扣")
    AGENCY = "agency", _("代收")
    ONLINE = "online", _("线上缴费")
    CARD_VEND = "card_vend", _("IC卡售电")


COUNTER_CHANNELS = (Channel.CASH, Channel.POS, Channel.CHEQUE)
CHANNEL_GL = {
    Channel.CASH: GL.CASH,
    Channel.POS: GL.POS,
    Channel.CHEQUE: GL.CHEQUE,
    Channel.BANK_WITHHOLDING: GL.BANK_CLEARING,
    Channel.AGENCY: GL.AGENCY_CLEARING,
    Channel.ONLINE: GL.ONLINE_CLEARING,
    Channel.CARD_VEND: GL.CASH,
}


class Policy(models.Model):
    """Receivables parameters of an org subtree; the nearest org up the tree with a row wins."""

    class Order(models.TextChoices):
        LATE_FEE_FIRST = "late_fee_first", _("先违约金后本金")
        PRINCIPAL_FIRST = "principal_first", _("先本金后违约金")

    class MinimumScope(models.TextChoices):
        BILL = "bill", _("每张账单一次")
        PORTION = "portion", _("每次缴费")

    org = models.OneToOneField(Org, on_delete=models.PROTECT, related_name="accounts_policy")
    allocation_order = models.CharField(
        _("销账顺序"), max_length=20, choices=Order.choices, default=Order.LATE_FEE_FIRST
    )
    late_fee_minimum = models.DecimalField(
        _("违约金最低额"), max_digits=14, decimal_places=2, default=Decimal("1.00")
    )
    minimum_scope = models.CharField(
        _("最低额适用"), max_length=10, choices=MinimumScope.choices, default=MinimumScope.BILL
    )
    late_fee_basis = models.CharField(
        _("违约金计算基数"),
        max_length=10,
        choices=[("portion", _("按每次缴纳部分")), ("accrued", _("按全部未缴本金累计"))],
        default="portion",
    )
    late_fee_during_plan = models.BooleanField(_("分期/缓缴期间计违约金"), default=False)
    payment_term_days = models.PositiveSmallIntegerField(_("缴费期限(天)"), default=15)
    # [{"code": "reminder", "after_days": 1, "channel": "sms"}, ...] (days overdue)
    dunning_ladder = models.JSONField(_("催费阶梯"), default=list, blank=True)
    dunning_min_amount = models.DecimalField(
        _("催费起点金额"), max_digits=14, decimal_places=2, default=Decimal("1.00")
    )
    disconnect_min_overdue_days = models.PositiveSmallIntegerField(_("停电最少逾期天数"), default=30)
    prepaid_threshold1 = models.DecimalField(
        _("预警阈值1"), max_digits=14, decimal_places=2, default=Decimal("50.00")
    )
    prepaid_threshold2 = models.DecimalField(
        _("预警阈值2"), max_digits=14, decimal_places=2, default=Decimal("20.00")
    )
    prepaid_grace_hours = models.PositiveSmallIntegerField(_("欠费宽限(小时)"), default=24)
    reconnect_threshold = models.DecimalField(
        _("复电阈值"), max_digits=14, decimal_places=2, default=Decimal("0.00")
    )
    reconnect_within_hours = models.PositiveSmallIntegerField(_("复电时限(小时)"), default=24)
    write_off_approval_amount = models.DecimalField(
        _("核销需上级审批金额"), max_digits=14, decimal_places=2, default=5000
    )

    class Meta:
        verbose_name = _("账务参数")
        verbose_name_plural = _("账务参数")

    def __str__(self) -> str:
        return f"policy {self.org_id}"


class CashierSession(models.Model):
    """A cashier's till for one business day (收费员班次); closed by the daily close (日结)."""

    class State(models.TextChoices):
        OPEN = "open", _("营业中")
        CLOSED = "closed", _("已日结")

    cashier = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("营业网点"))
    business_date = models.DateField(_("营业日"))
    state = models.CharField(_("状态"), max_length=10, choices=State.choices, default=State.OPEN)
    opened_at = models.DateTimeField(_("开班时间"))
    closed_at = models.DateTimeField(_("日结时间"), null=True, blank=True)
    opening_float = models.DecimalField(_("备用金"), max_digits=14, decimal_places=2, default=0)
    system_cash = models.DecimalField(_("系统现金"), max_digits=14, decimal_places=2, null=True, blank=True)
    system_pos = models.DecimalField(_("系统POS"), max_digits=14, decimal_places=2, null=True, blank=True)
    system_cheque = models.DecimalField(_("系统支票"), max_digits=14, decimal_places=2, null=True, blank=True)
    counted_cash = models.DecimalField(_("清点现金"), max_digits=14, decimal_places=2, null=True, blank=True)
    difference = models.DecimalField(_("长短款"), max_digits=14, decimal_places=2, null=True, blank=True)
    note = models.CharField(_("备注"), max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("收费班次")
        verbose_name_plural = _("收费班次")
        constraints = [
            models.UniqueConstraint(
                fields=["cashier"], condition=Q(state="open"), name="accounts_one_open_session_per_cashier"
            )
        ]

    def __str__(self) -> str:
        return f"{self.cashier_id} {self.business_date} {self.state}"


class DayLock(models.Model):
    """A service hall's (or org's) business day, locked after its daily close."""

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    business_date = models.DateField()
    locked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    locked_at = models.DateTimeField()
    totals = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "business_date"], name="accounts_daylock_unique")
        ]

    def __str__(self) -> str:
        return f"{self.org_id} {self.business_date}"


class LedgerEntry(AppendOnlyModel):
    # (no single-column FK indexes on org and account: the composite indexes below lead with them)
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("供电单位"), db_index=False)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False
    )
    kind = models.CharField(_("类型"), max_length=20, choices=EntryKind.choices)
    document_no = models.CharField(_("单据号"), max_length=40)
    # Effect on what the customer owes: + debit (charge …), − credit (payment …).
    amount = models.DecimalField(_("金额"), max_digits=14, decimal_places=2)
    due_date = models.DateField(_("到期日"), null=True, blank=True)
    business_date = models.DateField(_("记账日"))
    posted_at = models.DateTimeField(_("记账时间"))
    source_type = models.CharField(max_length=30, blank=True, default="")
    source_id = models.BigIntegerField(null=True, blank=True)
    # References are rare (a reversal, a late fee, a correction): indexed only where set (partial
    # indexes below; `reverses` by its partial unique constraint), so that the many entries
    # without them (charges, payments) cost no index insert for them.
    reverses = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by", db_index=False
    )
    refers_to = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="referenced_by", db_index=False
    )
    # the entry whose posting made this one (a late fee charged by a payment)
    origin = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    late_fee_class = models.CharField(max_length=20, blank=True, default="")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    memo = models.CharField(_("摘要"), max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("账务分录")
        verbose_name_plural = _("账务分录")
        indexes = [
            models.Index(fields=["account", "posted_at"]),
            models.Index(fields=["org", "business_date"]),
            models.Index(fields=["kind", "due_date"]),
            models.Index(
                fields=["refers_to"],
                condition=Q(refers_to__isnull=False),
                name="accounts_entry_refers_to_idx",
            ),
            models.Index(
                fields=["origin"], condition=Q(origin__isnull=False), name="accounts_entry_origin_idx"
            ),
            models.Index(fields=["actor"], condition=Q(actor__isnull=False), name="accounts_entry_actor_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["source_type", "source_id"],
                condition=Q(source_id__isnull=False),
                name="accounts_entry_source_unique",
            ),
            models.UniqueConstraint(
                fields=["reverses"], condition=Q(reverses__isnull=False), name="accounts_one_reversal"
            ),
            models.CheckConstraint(condition=~Q(amount=0), name="accounts_entry_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.document_no} {self.kind} {self.amount}"

    @property
    def is_debit(self) -> bool:
        return self.amount > 0


class LedgerLine(AppendOnlyModel):
    """One side of an entry; the lines of an entry sum to zero (debit +, credit −)."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="lines")
    # indexed by (account, gl) below
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    gl = models.CharField(max_length=20, choices=GL.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        indexes = [models.Index(fields=["account", "gl"])]

    def __str__(self) -> str:
        return f"{self.entry_id} {self.gl} {self.amount}"


class ChargeLine(AppendOnlyModel):
    """Breakdown of a charge (principal by category or component), for statements and reports."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="charge_lines")
    code = models.CharField(max_length=40)
    category = models.CharField(max_length=30, blank=True, default="")
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    def __str__(self) -> str:
        return f"{self.code} {self.amount}"


class Allocation(AppendOnlyModel):
    class Component(models.TextChoices):
        PRINCIPAL = "principal", _("本金")
        LATE_FEE = "late_fee", _("违约金")

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    credit = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations_out")
    debit = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations_in")
    component = models.CharField(max_length=10, choices=Component.choices, default=Component.PRINCIPAL)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    at = models.DateTimeField()
    # the entry whose posting made this allocation (the payment, a new charge, a reversal …)
    by_entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="+")

    def __str__(self) -> str:
        return f"{self.credit_id}→{self.debit_id} {self.amount}"


class Payment(AppendOnlyModel):
    """A payment as the channel sees it; `entry` is its ledger document."""

    entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="payment")
    org = models.ForeignKey(Org, on_delete=models.PROTECT, db_index=False)  # (org, business_date)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="payments")
    channel = models.CharField(_("渠道"), max_length=20, choices=Channel.choices)
    amount = models.DecimalField(_("金额"), max_digits=14, decimal_places=2)
    paid_at = models.DateTimeField(_("缴费时间"))
    business_date = models.DateField(_("营业日"))
    receipt_no = models.CharField(_("收据号"), max_length=40, unique=True)
    channel_txn_id = models.CharField(_("渠道流水号"), max_length=64, blank=True, default="")
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    session = models.ForeignKey(CashierSession, on_delete=models.PROTECT, null=True, blank=True)
    cashier = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reference = models.CharField(_("票据/卡号"), max_length=64, blank=True, default="")

    class Meta:
        verbose_name = _("缴费记录")
        verbose_name_plural = _("缴费记录")
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "channel_txn_id"],
                condition=~Q(channel_txn_id=""),
                name="accounts_payment_channel_txn_unique",
            )
        ]
        indexes = [models.Index(fields=["org", "business_date"])]  # session: its FK index

    def __str__(self) -> str:
        return f"{self.receipt_no} {self.amount}"


class Approval(models.Model):
    """A request that needs a second person: reversal, refund, instalment, deferral, write-off."""

    class Kind(models.TextChoices):
        REVERSAL = "reversal", _("缴费冲正")
        REFUND = "refund", _("退费")
        INSTALMENT = "instalment", _("分期缴费")
        DEFERRAL = "deferral", _("缓缴")
        WRITE_OFF = "write_off", _("坏账核销")
        LATE_FEE_WAIVER = "late_fee_waiver", _("违约金减免")

    class State(models.TextChoices):
        REQUESTED = "requested", _("待审批")
        APPROVED = "approved", _("已批准")
        REJECTED = "rejected", _("已驳回")

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(_("类型"), max_length=20, choices=Kind.choices)
    state = models.CharField(_("状态"), max_length=10, choices=State.choices, default=State.REQUESTED)
    target = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    amount = models.DecimalField(_("金额"), max_digits=14, decimal_places=2, default=0)
    reason = models.CharField(_("原因"), max_length=200)
    evidence = models.CharField(_("证据"), max_length=200, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    valid_until = models.DateField(_("有效期至"), null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=200, blank=True, default="")
    result_entry = models.ForeignKey(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("审批")
        verbose_name_plural = _("审批")
        indexes = [models.Index(fields=["state", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.state}"


class BankBatch(models.Model):
    """A bank withholding (代扣) batch: the outgoing file, then the bank's result file."""

    class State(models.TextChoices):
        EXPORTED = "exported", _("已导出")
        RESULTS_POSTED = "results_posted", _("已回盘入账")

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    batch_no = models.CharField(max_length=30, unique=True)
    bank_name = models.CharField(max_length=60, blank=True, default="")
    state = models.CharField(max_length=20, choices=State.choices, default=State.EXPORTED)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    line_count = models.IntegerField(default=0)
    total_amount = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    posted_at = models.DateTimeField(null=True, blank=True)
    report = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.batch_no


class BankBatchLine(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", _("待回盘")
        PAID = "paid", _("扣款成功")
        FAILED = "failed", _("扣款失败")
        MISMATCH = "mismatch", _("金额不符(挂账)")

    # indexed by the (batch, line_no) unique constraint
    batch = models.ForeignKey(BankBatch, on_delete=models.PROTECT, related_name="lines", db_index=False)
    line_no = models.IntegerField()
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    result_code = models.CharField(max_length=10, blank=True, default="")
    bank_txn_id = models.CharField(max_length=64, blank=True, default="")
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "line_no"], name="accounts_batch_line_unique")
        ]
        indexes = [
            # export skips accounts still pending in another batch: only those rows are indexed
            models.Index(fields=["account"], condition=Q(state="pending"), name="accounts_bbl_pending_idx")
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}#{self.line_no}"


class CallbackLog(models.Model):
    """Every payment callback received, valid or not (replays and tampering are kept as evidence)."""

    received_at = models.DateTimeField()
    channel = models.CharField(max_length=20)
    txn_id = models.CharField(max_length=64, blank=True, default="")
    body = models.TextField()
    signature = models.CharField(max_length=200, blank=True, default="")
    outcome = models.CharField(max_length=20)  # posted, duplicate, bad_signature, stale, invalid
    message = models.CharField(max_length=300, blank=True, default="")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"{self.channel} {self.txn_id} {self.outcome}"


class Notice(models.Model):
    """Outbox of customer notices (SMS / e-bill); sent after commit by the configured sender."""

    class ChannelKind(models.TextChoices):
        SMS = "sms", _("短信")
        EBILL = "ebill", _("电子账单")

    class State(models.TextChoices):
        QUEUED = "queued", _("待发送")
        SENT = "sent", _("已发送")
        FAILED = "failed", _("发送失败")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, null=True, blank=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    channel = models.CharField(max_length=10, choices=ChannelKind.choices)
    recipient = models.CharField(max_length=200)
    template = models.CharField(max_length=60)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, default="")
    dedupe_key = models.CharField(max_length=120, null=True, blank=True, unique=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.template} {self.state}"


class DunningAction(models.Model):
    """One rung of the dunning ladder taken for an account's overdue debt (once per debt and rung)."""

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    debt = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="+")
    step = models.CharField(max_length=30)
    at = models.DateTimeField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    notice = models.ForeignKey(Notice, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["debt", "step"], name="accounts_dunning_once")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.step}"


class DisconnectionOrder(models.Model):
    """停电工单 for arrears (a plain record until the workflow engine takes it)."""

    class State(models.TextChoices):
        OPEN = "open", _("待执行")
        EXECUTED = "executed", _("已停电")
        CANCELLED = "cancelled", _("已撤销")
        RECONNECTED = "reconnected", _("已复电")

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=12, choices=State.choices, default=State.OPEN)
    arrears = models.DecimalField(max_digits=14, decimal_places=2)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.account_id} {self.state}"


class LateFeeAccrual(models.Model):
    """Late fee accrued on an open debt as of a day (the daily accrual job's snapshot)."""

    debt = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    as_of = models.DateField()
    principal = models.DecimalField(max_digits=14, decimal_places=2)
    days = models.IntegerField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["debt", "as_of"], name="accounts_accrual_unique")]

    def __str__(self) -> str:
        return f"{self.debt_id} {self.as_of} {self.amount}"


class PrepaidAccount(models.Model):
    """Remote cost control (远程费控) state of an account."""

    class State(models.TextChoices):
        NORMAL = "normal", _("正常")
        ALARM1 = "alarm1", _("一级预警")
        ALARM2 = "alarm2", _("二级预警")
        NEGATIVE = "negative", _("欠费(宽限期)")
        DISCONNECTED = "disconnected", _("已停电")

    class Mode(models.TextChoices):
        REMOTE = "remote", _("远程费控")
        CARD = "card", _("本地费控(IC卡)")

    account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="prepaid")
    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.REMOTE)
    state = models.CharField(max_length=15, choices=State.choices, default=State.NORMAL)
    negative_since = models.DateTimeField(null=True, blank=True)
    last_estimate_day = models.DateField(null=True, blank=True)
    price = models.DecimalField(_("估算电价"), max_digits=12, decimal_places=8, default=Decimal("0.538"))
    tariff_code = models.CharField(max_length=20, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.account_id} {self.state}"


class PrepaidEstimate(models.Model):
    prepaid = models.ForeignKey(PrepaidAccount, on_delete=models.PROTECT, related_name="estimates")
    day = models.DateField()
    kwh = models.DecimalField(max_digits=16, decimal_places=4)
    price = models.DecimalField(max_digits=12, decimal_places=8)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    settled = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prepaid", "day"], name="accounts_estimate_unique")]

    def __str__(self) -> str:
        return f"{self.prepaid_id} {self.day} {self.amount}"


class CostControlCommand(models.Model):
    """Intent to disconnect or reconnect a prepaid or arrears customer through the AMI channel."""

    class Command(models.TextChoices):
        DISCONNECT = "disconnect", _("远程停电")
        RECONNECT = "reconnect", _("远程复电")

    class State(models.TextChoices):
        REQUESTED = "requested", _("已申请(通道未就绪)")
        SENT = "sent", _("已下发")
        FAILED = "failed", _("下发失败")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    meter_id = models.BigIntegerField(null=True, blank=True)
    command = models.CharField(max_length=12, choices=Command.choices)
    reason = models.CharField(max_length=200)
    state = models.CharField(max_length=12, choices=State.choices, default=State.REQUESTED)
    requested_at = models.DateTimeField()
    due_by = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=64, blank=True, default="")
    error = models.CharField(max_length=300, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.account_id} {self.command} {self.state}"


class CardVend(AppendOnlyModel):
    """An IC-card purchase (售电) for a card meter: amount written to the card with its sequence."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="+")
    card_no = models.CharField(max_length=30)
    sequence = models.PositiveIntegerField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    kwh = models.DecimalField(max_digits=16, decimal_places=4, default=0)
    vended_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "sequence"], name="accounts_card_sequence_unique")
        ]

    def __str__(self) -> str:
        return f"{self.card_no}#{self.sequence}"


class AgencyFile(models.Model):
    """An agency collection (代收) reconciliation file: the payments a bank counter, a payment app
    or a shop collected for the utility on one day, imported and posted as `agency` payments.
    One row per imported file content (`sha256`): importing the same file again reports the
    first import; each payment is also unique by the agency's transaction id."""

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    agency = models.CharField(_("代收机构"), max_length=60)
    sha256 = models.CharField(max_length=64, unique=True)
    imported_at = models.DateTimeField()
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    rows = models.IntegerField(default=0)
    posted = models.IntegerField(default=0)
    total_amount = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    report = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.agency} {self.imported_at:%Y-%m-%d}"

    @property
    def paid_days(self) -> tuple[str, str] | None:
        """First and last payment day the file holds (from its report)."""
        days = sorted(self.report.get("days", {}))
        return (days[0], days[-1]) if days else None
