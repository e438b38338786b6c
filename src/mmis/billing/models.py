"""Billing runs, bills and their lines, audit rules and flags, corrections (退补).

A run (BillingRun) covers one billing month for an org subtree or a set of reading books and is
split into partitions (RunPartition, one per reading book). A partition writes its bills in one
transaction after deleting its own not-yet-issued bills, so a rerun replaces exactly what it wrote
and an issued bill is never touched (DOMAIN §4; DESIGN "Billing run").
"""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from mmis.common.periods import Period
from mmis.customers.models import Account, Customer, MeteringPoint
from mmis.org.models import Org


class BillingRun(models.Model):
    """A billing month's run: planned → running (partitions calculate their bills) → drafted (the
    bills are drafts: the audit stage has not run yet) → calculated (every bill audited by the
    rules: flagged for an auditor or passed) → partially released → released."""

    class State(models.TextChoices):
        PLANNED = "planned", _("已计划")
        RUNNING = "running", _("计算中")
        DRAFTED = "drafted", _("草稿待审核")
        CALCULATED = "calculated", _("已计算已审核")
        PARTIALLY_RELEASED = "partially_released", _("部分发行")
        RELEASED = "released", _("已发行")

    class Mode(models.TextChoices):
        IN_PROCESS = "in_process", _("本机")
        CELERY = "celery", _("集群(Celery)")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("单位"))
    period_start = models.DateField(_("计费月起"))
    period_end = models.DateField(_("计费月止"))
    book_codes = models.JSONField(_("抄表段"), default=list, blank=True)
    state = models.CharField(_("状态"), max_length=20, choices=State.choices, default=State.PLANNED)
    mode = models.CharField(_("运行方式"), max_length=12, choices=Mode.choices, default=Mode.IN_PROCESS)
    # True: each partition runs the audit stage on its drafts in the same transaction; False: the
    # partitions write drafts and the audit stage runs afterwards (`services.audit_run`)
    audit_inline = models.BooleanField(_("计算时执行审核规则"), default=True)
    points_total = models.PositiveIntegerField(_("计量点数"), default=0)
    partitions_total = models.PositiveIntegerField(_("分区数"), default=0)
    partitions_done = models.PositiveIntegerField(_("已完成分区"), default=0)
    partitions_failed = models.PositiveIntegerField(_("失败分区"), default=0)
    bills = models.PositiveIntegerField(_("账单数"), default=0)
    exceptions = models.PositiveIntegerField(_("异常数"), default=0)
    flagged = models.PositiveIntegerField(_("待审核"), default=0)
    skipped_issued = models.PositiveIntegerField(_("已发行跳过"), default=0)
    energy_kwh = models.DecimalField(_("电量(kWh)"), max_digits=18, decimal_places=4, default=0)
    amount = models.DecimalField(_("电费(元)"), max_digits=16, decimal_places=2, default=0)
    released_bills = models.PositiveIntegerField(_("已发行账单"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("创建时间"))
    started_at = models.DateTimeField(_("开始时间"), null=True, blank=True)
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)

    class Meta:
        verbose_name = _("核算批次")
        verbose_name_plural = _("核算批次")
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"{self.month_label} {self.org.name}"

    @property
    def period(self) -> Period:
        return Period(self.period_start, self.period_end)

    @property
    def month_label(self) -> str:
        return f"{self.period_start:%Y-%m}"

    @property
    def progress_pct(self) -> int:
        if not self.partitions_total:
            return 0
        return int(100 * (self.partitions_done + self.partitions_failed) / self.partitions_total)


class RunPartition(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", _("待计算")
        RUNNING = "running", _("计算中")
        DONE = "done", _("完成")
        FAILED = "failed", _("失败")

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="partitions")
    key = models.CharField(_("分区"), max_length=40)  # first reading book code (+ n more) or "org:<id>"
    books = models.JSONField(_("抄表段"), default=list, blank=True)  # the reading books packed in it
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("单位"))
    point_ids = models.JSONField(default=list)
    state = models.CharField(_("状态"), max_length=10, choices=State.choices, default=State.PENDING)
    attempt = models.PositiveSmallIntegerField(_("次数"), default=0)
    worker = models.CharField(_("执行者"), max_length=100, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    points = models.PositiveIntegerField(_("计量点数"), default=0)
    bills = models.PositiveIntegerField(_("账单数"), default=0)
    exceptions = models.PositiveIntegerField(_("异常数"), default=0)
    flagged = models.PositiveIntegerField(_("待审核"), default=0)
    skipped_issued = models.PositiveIntegerField(_("已发行跳过"), default=0)
    energy_kwh = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    amount = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    seconds = models.FloatField(default=0)
    audited_at = models.DateTimeField(_("审核规则执行时间"), null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = _("核算分区")
        verbose_name_plural = _("核算分区")
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="billing_partition_key")]
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.key}"


class RunTariff(models.Model):
    """The rating form of each tariff version a run used (corrections re-rate with it)."""

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="tariffs")
    version_id = models.BigIntegerField()
    code = models.CharField(max_length=20)
    label = models.CharField(max_length=100, blank=True, default="")
    effective_from = models.DateField(null=True, blank=True)
    tariff = models.JSONField()
    basic_prices = models.JSONField(default=dict)  # basic-charge mode → price (the catalog's)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "version_id"], name="billing_runtariff_version")
        ]

    def __str__(self) -> str:
        return f"{self.code} v{self.version_id}"


class Bill(models.Model):
    """One metering point's bill for one billing month, an explicit state machine (DOMAIN §4.1):

        draft ──audit──▶ flagged ──approve──▶ audited ──release──▶ issued ──settle──▶ settled
          │      └─────▶ passed  ──approve──┘    ▲
          └──────┴──return──▶ returned           └── correct (an auditor's recalculation) → flagged

    A run writes drafts; the audit stage (the org's audit rules) holds a bill for an auditor
    (flagged) or lets it pass; approved bills are released to the ledger and become immutable.
    Every state before `issued` belongs to the run: rerunning the month replaces it."""

    class State(models.TextChoices):
        DRAFT = "draft", _("草稿")
        FLAGGED = "flagged", _("待审核")
        PASSED = "passed", _("规则通过")
        AUDITED = "audited", _("已审核")
        ISSUED = "issued", _("已发行")
        SETTLED = "settled", _("已结清")
        RETURNED = "returned", _("退回重抄")

    # event → (the states it leaves, the states it enters)
    LIFECYCLE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
        "audit": (frozenset({"draft", "flagged", "passed"}), frozenset({"flagged", "passed"})),
        "approve": (frozenset({"flagged", "passed"}), frozenset({"audited"})),
        "correct": (frozenset({"flagged", "passed", "audited"}), frozenset({"flagged"})),
        "return": (frozenset({"draft", "flagged", "passed", "audited"}), frozenset({"returned"})),
        "release": (frozenset({"audited"}), frozenset({"issued"})),
        "settle": (frozenset({"issued"}), frozenset({"settled"})),
    }
    FINAL = frozenset({"issued", "settled"})  # immutable: a rerun never touches them
    OPEN = frozenset({"draft", "flagged", "passed", "audited"})  # in the run, not released yet

    # A run writes bills by the hundred thousand (COPY): the references below are kept by the
    # writer (ids read in the same transaction) and by Django (PROTECT), not by per-row foreign-key
    # triggers, and the FK indexes that composite indexes cover are left out.
    number = models.CharField(_("账单号"), max_length=24)
    run = models.ForeignKey(
        BillingRun, on_delete=models.PROTECT, related_name="bill_set", db_constraint=False, db_index=False
    )
    partition = models.ForeignKey(
        RunPartition, on_delete=models.PROTECT, related_name="bill_set", db_constraint=False, db_index=False
    )
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("单位"), db_constraint=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+", db_constraint=False)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    point = models.ForeignKey(
        MeteringPoint, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    period_start = models.DateField(_("计费期起"))
    period_end = models.DateField(_("计费期止"))
    tariff_code = models.CharField(_("电价码"), max_length=20)
    tariff_version_id = models.BigIntegerField(_("电价版本"))
    state = models.CharField(_("状态"), max_length=12, choices=State.choices, default=State.DRAFT)
    energy_kwh = models.DecimalField(_("电量(kWh)"), max_digits=16, decimal_places=4)
    amount = models.DecimalField(_("电费(元)"), max_digits=14, decimal_places=2)
    estimated = models.BooleanField(_("估抄"), default=False)
    prorated = models.BooleanField(_("分段计费"), default=False)
    risk = models.PositiveSmallIntegerField(_("风险"), default=0)
    flags = models.JSONField(_("审核标记"), default=list, blank=True)
    trace = models.JSONField(_("计算过程"), default=dict)
    due_date = models.DateField(_("缴费截止日"), null=True, blank=True)
    audited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    audited_at = models.DateTimeField(null=True, blank=True)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    issued_at = models.DateTimeField(null=True, blank=True)
    return_reason = models.CharField(_("退回原因"), max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("电费账单")
        verbose_name_plural = _("电费账单")
        constraints = [
            models.UniqueConstraint(fields=["point", "period_start"], name="billing_bill_point_month"),
            models.UniqueConstraint(fields=["number"], name="billing_bill_number"),
        ]
        indexes = [
            models.Index(fields=["partition", "state"]),
            models.Index(fields=["run", "state", "risk"]),
            models.Index(fields=["account", "period_start"]),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def period(self) -> Period:
        return Period(self.period_start, self.period_end)

    @property
    def is_immutable(self) -> bool:
        return self.state in self.FINAL

    @classmethod
    def sources(cls, event: str) -> list[str]:
        """The states from which `event` may move a bill (for set-based updates)."""
        return sorted(cls.LIFECYCLE[event][0])

    @classmethod
    def allows(cls, event: str, source: str, target: str) -> bool:
        leaves, enters = cls.LIFECYCLE[event]
        return source in leaves and target in enters

    def can(self, event: str) -> bool:
        return self.state in self.LIFECYCLE[event][0]

    @property
    def full_trace(self) -> dict:
        """The calculation trace as `calc.build_trace` built it (stored compactly)."""
        from mmis.billing.calc import expand_trace

        return expand_trace(
            self.trace,
            period_start=self.period_start,
            period_end=self.period_end,
            version_id=self.tariff_version_id,
            energy_kwh=self.energy_kwh,
        )


class BillLine(models.Model):
    bill = models.ForeignKey(Bill, on_delete=models.CASCADE, related_name="lines", db_constraint=False)
    seq = models.PositiveSmallIntegerField()
    segment = models.PositiveSmallIntegerField(default=0)  # index of the prorated segment
    code = models.CharField(max_length=60)
    quantity = models.DecimalField(max_digits=16, decimal_places=4)
    price = models.DecimalField(max_digits=12, decimal_places=8)
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["bill", "seq"]

    def __str__(self) -> str:
        return f"{self.code} {self.amount}"


class AuditFlag(models.Model):
    """Why a bill is held for a billing auditor (DOMAIN §4.2)."""

    bill = models.ForeignKey(Bill, on_delete=models.CASCADE, related_name="audit_flags", db_constraint=False)
    code = models.CharField(max_length=30)
    message = models.CharField(max_length=200)
    weight = models.PositiveSmallIntegerField(default=1)

    def __str__(self) -> str:
        return self.code


class RunException(models.Model):
    """A point set aside by a run: its inputs are missing or inconsistent; it gets no bill."""

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="exception_set")
    partition = models.ForeignKey(RunPartition, on_delete=models.CASCADE, related_name="exception_set")
    point = models.ForeignKey(MeteringPoint, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(_("原因"), max_length=30)
    message = models.CharField(_("说明"), max_length=300)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.point_id} {self.reason}"


class AuditRule(models.Model):
    """An audit rule's setting for an org and everything below it, from a date (DOMAIN §4.2).

    The nearest org up the tree with a setting in force wins; with none, the defaults in
    `rules.DEFAULT_AUDIT_RULES` apply.
    """

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("单位"))
    code = models.CharField(_("规则"), max_length=30)
    enabled = models.BooleanField(_("启用"), default=True)
    params = models.JSONField(_("参数"), default=dict, blank=True)
    effective_from = models.DateField(_("生效日期"), default=date(2000, 1, 1))

    class Meta:
        verbose_name = _("审核规则")
        verbose_name_plural = _("审核规则")
        constraints = [
            models.UniqueConstraint(fields=["org", "code", "effective_from"], name="billing_auditrule_unique")
        ]

    def __str__(self) -> str:
        return f"{self.org} {self.code}"


class Correction(models.Model):
    """退补: a credit or debit document against an issued bill, by re-rating (DOMAIN §4.4)."""

    class Kind(models.TextChoices):
        CREDIT = "credit", _("退费")
        DEBIT = "debit", _("补收")

    class State(models.TextChoices):
        PENDING = "pending", _("待审批")
        APPROVED = "approved", _("已审批入账")
        REJECTED = "rejected", _("已驳回")

    class Reason(models.TextChoices):
        READING_ERROR = "reading_error", _("抄表差错")
        METER_ERROR = "meter_error", _("计量差错")
        MULTIPLIER_ERROR = "multiplier_error", _("倍率差错")
        TARIFF_ERROR = "tariff_error", _("电价差错")
        FILE_ERROR = "file_error", _("档案差错")

    number = models.CharField(_("单号"), max_length=24, unique=True)
    bill = models.ForeignKey(Bill, on_delete=models.PROTECT, related_name="corrections")
    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    kind = models.CharField(_("类型"), max_length=10, choices=Kind.choices)
    reason = models.CharField(_("原因"), max_length=20, choices=Reason.choices)
    note = models.CharField(_("说明"), max_length=300, blank=True, default="")
    state = models.CharField(_("状态"), max_length=10, choices=State.choices, default=State.PENDING)
    original_usage = models.JSONField(default=dict)
    corrected_usage = models.JSONField(default=dict)
    original_amount = models.DecimalField(max_digits=14, decimal_places=2)
    corrected_amount = models.DecimalField(max_digits=14, decimal_places=2)
    amount = models.DecimalField(_("退补金额"), max_digits=14, decimal_places=2)  # signed: + debit
    lines = models.JSONField(default=list)
    due_date = models.DateField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("退补")
        verbose_name_plural = _("退补")
        ordering = ["-pk"]

    def __str__(self) -> str:
        return self.number
