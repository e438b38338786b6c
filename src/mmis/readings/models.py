"""Meter reading and data acquisition (抄表与采集): reading books and plans, register readings,
validation (VEE) exceptions and thresholds, AMI terminals, daily frozen and interval data, remote
commands and the dead-letter table of the MQTT listener.

Energy and register values are DecimalField(16, 4); rows belong to an org node (the station of the
metering point or terminal) so every query goes through the data scope.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from mmis.assets.models import Meter
from mmis.customers.models import MeteringPoint
from mmis.org.models import Org
from mmis.workflow.models import ProcessInstance

REGISTERS = ("total", "sharp", "peak", "flat", "valley")
TOU_REGISTERS = ("sharp", "peak", "flat", "valley")


def _energy(label, **kw):
    return models.DecimalField(label, max_digits=16, decimal_places=4, **kw)


class ReadingMethod(models.TextChoices):
    MANUAL = "manual", _("人工抄表")
    AUTOMATED = "automated", _("自动采集")
    MIXED = "mixed", _("混合")


class ReadingBook(models.Model):
    """抄表段: a route of metering points read together on `reading_day` by one reader."""

    code = models.CharField(_("抄表段编号"), max_length=20, unique=True)
    name = models.CharField(_("抄表段名称"), max_length=100)
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("供电所"))
    reading_day = models.PositiveSmallIntegerField(_("抄表例日"))
    reader = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reading_books",
        verbose_name=_("抄表员"),
    )
    method = models.CharField(
        _("抄表方式"), max_length=12, choices=ReadingMethod.choices, default=ReadingMethod.MANUAL
    )
    # owner of the book's reading exceptions (抄表审核); blank: the org's default auditor
    auditor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audited_books",
        verbose_name=_("审核员"),
    )
    active = models.BooleanField(_("有效"), default=True)

    class Meta:
        verbose_name = _("抄表段")
        verbose_name_plural = _("抄表段")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(reading_day__gte=1, reading_day__lte=28), name="book_reading_day_1_28"
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class BookMembership(models.Model):
    """A metering point's place in one reading book (a point is in at most one book)."""

    book = models.ForeignKey(ReadingBook, on_delete=models.CASCADE, related_name="memberships")
    metering_point = models.OneToOneField(
        MeteringPoint, on_delete=models.CASCADE, related_name="book_membership", verbose_name=_("计量点")
    )
    sequence = models.PositiveIntegerField(_("抄表顺序"))
    assigned_on = models.DateField(_("分配日期"))

    class Meta:
        verbose_name = _("抄表段计量点")
        verbose_name_plural = _("抄表段计量点")
        ordering = ["book", "sequence"]
        indexes = [models.Index(fields=["book", "sequence"])]

    def __str__(self) -> str:
        return f"{self.book_id}#{self.sequence} → {self.metering_point_id}"


class ReadingPlan(models.Model):
    """The month's reading task of one book (抄表计划)."""

    class Status(models.TextChoices):
        OPEN = "open", _("待抄")
        IN_PROGRESS = "in_progress", _("抄表中")
        DONE = "done", _("已完成")

    book = models.ForeignKey(ReadingBook, on_delete=models.CASCADE, related_name="plans")
    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    month = models.DateField(_("月份"))  # first day of the month
    planned_date = models.DateField(_("计划抄表日"))
    reader = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    point_count = models.PositiveIntegerField(_("应抄户数"), default=0)
    status = models.CharField(_("状态"), max_length=12, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = _("抄表计划")
        verbose_name_plural = _("抄表计划")
        constraints = [models.UniqueConstraint(fields=["book", "month"], name="uniq_plan_book_month")]

    def __str__(self) -> str:
        return f"{self.book_id} {self.month:%Y-%m}"


class MeterReading(models.Model):
    """The register reading of a metering point that closes a billing period (示数)."""

    class Source(models.TextChoices):
        MANUAL = "manual", _("人工")
        FILE = "file", _("文件导入")
        AMI = "ami", _("自动采集")
        ESTIMATE = "estimate", _("估抄")

    class Status(models.TextChoices):
        PENDING_VALIDATION = "pending_validation", _("待审核")
        VALID = "valid", _("正常")
        EXCEPTION = "exception", _("异常")
        ACCEPTED = "accepted", _("异常已确认")
        ESTIMATED = "estimated", _("估抄")

    BILLABLE = (Status.VALID, Status.ACCEPTED, Status.ESTIMATED)

    # the FK indexes are covered by (org, reading_date) and unique (metering_point, reading_date)
    org = models.ForeignKey(Org, on_delete=models.PROTECT, db_index=False)
    metering_point = models.ForeignKey(
        MeteringPoint,
        on_delete=models.PROTECT,
        related_name="readings",
        verbose_name=_("计量点"),
        db_index=False,
    )
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    plan = models.ForeignKey(ReadingPlan, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reading_date = models.DateField(_("抄表日期"))
    total = _energy(_("总示数"))
    sharp = _energy(_("尖示数"), null=True, blank=True)
    peak = _energy(_("峰示数"), null=True, blank=True)
    flat = _energy(_("平示数"), null=True, blank=True)
    valley = _energy(_("谷示数"), null=True, blank=True)
    reactive = _energy(_("无功示数"), null=True, blank=True)
    max_demand = models.DecimalField(
        _("最大需量示数"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    # 综合倍率 in force when the reading was taken (blank on readings stored before it was kept)
    multiplier = models.DecimalField(_("综合倍率"), max_digits=12, decimal_places=4, null=True, blank=True)
    source = models.CharField(_("来源"), max_length=10, choices=Source.choices)
    status = models.CharField(
        _("状态"), max_length=20, choices=Status.choices, default=Status.PENDING_VALIDATION, db_index=True
    )
    fault_flags = models.JSONField(_("表计事件"), default=list, blank=True)
    note = models.CharField(_("备注"), max_length=200, blank=True, default="")
    photo = models.FileField(_("照片"), upload_to="readings/photos/%Y/%m/", blank=True, default="")
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    entered_at = models.DateTimeField(_("录入时间"))

    class Meta:
        verbose_name = _("抄表示数")
        verbose_name_plural = _("抄表示数")
        constraints = [
            models.UniqueConstraint(fields=["metering_point", "reading_date"], name="uniq_reading_point_date")
        ]
        indexes = [models.Index(fields=["org", "reading_date"]), models.Index(fields=["status", "org"])]

    def __str__(self) -> str:
        return f"{self.metering_point_id} {self.reading_date} {self.total}"

    @property
    def estimated(self) -> bool:
        return self.source == self.Source.ESTIMATE

    def registers(self) -> dict:
        return {name: getattr(self, name) for name in REGISTERS}


class DailyFrozenReading(models.Model):
    """日冻结: the registers a meter stored at 00:00 of `day` (from a terminal)."""

    # the FK indexes are covered by unique (meter, day) and (metering_point, day)
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="+", db_index=False)
    metering_point = models.ForeignKey(
        MeteringPoint, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    day = models.DateField()
    total = _energy(_("总示数"))
    sharp = _energy(_("尖示数"), null=True, blank=True)
    peak = _energy(_("峰示数"), null=True, blank=True)
    flat = _energy(_("平示数"), null=True, blank=True)
    valley = _energy(_("谷示数"), null=True, blank=True)
    reactive = _energy(_("无功示数"), null=True, blank=True)
    flags = models.CharField(_("事件"), max_length=100, blank=True, default="")  # comma-separated
    received_at = models.DateTimeField()

    class Meta:
        verbose_name = _("日冻结示数")
        verbose_name_plural = _("日冻结示数")
        constraints = [models.UniqueConstraint(fields=["meter", "day"], name="uniq_frozen_meter_day")]
        indexes = [models.Index(fields=["metering_point", "day"])]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.day} {self.total}"


class IntervalReading(models.Model):
    """A load-curve point: energy of one interval (typically 15 minutes) starting at `start`."""

    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="+")
    start = models.DateTimeField()
    minutes = models.PositiveSmallIntegerField(default=15)
    kwh = _energy(_("电量"))
    received_at = models.DateTimeField()

    class Meta:
        verbose_name = _("负荷曲线")
        verbose_name_plural = _("负荷曲线")
        constraints = [models.UniqueConstraint(fields=["meter", "start"], name="uniq_interval_meter_start")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.start}"


class Terminal(models.Model):
    """采集终端: publishes on mmis/ami/<code>/up and listens on mmis/ami/<code>/down."""

    class Kind(models.TextChoices):
        PUBLIC_TRANSFORMER = "public_transformer", _("公变终端")
        DEDICATED_TRANSFORMER = "dedicated_transformer", _("专变终端")
        LARGE_CUSTOMER = "large_customer", _("大客户终端")
        SUBSTATION = "substation", _("厂站终端")

    code = models.CharField(_("终端编号"), max_length=32, unique=True)
    name = models.CharField(_("名称"), max_length=100, blank=True, default="")
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("供电单位"))
    kind = models.CharField(_("终端类型"), max_length=24, choices=Kind.choices)
    concentrator = models.BooleanField(_("集中器"), default=False)
    area_code = models.CharField(_("行政区划码"), max_length=4, blank=True, default="")
    address = models.PositiveIntegerField(_("终端地址"), null=True, blank=True)
    meters = models.ManyToManyField(Meter, through="TerminalMeter", related_name="terminals")
    last_seen_at = models.DateTimeField(_("最近通信"), null=True, blank=True)
    active = models.BooleanField(_("有效"), default=True)

    class Meta:
        verbose_name = _("采集终端")
        verbose_name_plural = _("采集终端")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class TerminalMeter(models.Model):
    """A meter read by a terminal (a concentrator reads many)."""

    terminal = models.ForeignKey(Terminal, on_delete=models.CASCADE, related_name="links")
    meter = models.OneToOneField(Meter, on_delete=models.CASCADE, related_name="terminal_link")

    class Meta:
        verbose_name = _("终端下挂表计")
        verbose_name_plural = _("终端下挂表计")

    def __str__(self) -> str:
        return f"{self.terminal_id} → {self.meter_id}"


class RemoteCommand(models.Model):
    """A remote command to a meter through its terminal, tracked until it ends."""

    class Command(models.TextChoices):
        READ_NOW = "read_now", _("实时召测")
        DISCONNECT = "disconnect", _("远程停电")
        RECONNECT = "reconnect", _("远程复电")

    class State(models.TextChoices):
        PENDING = "pending", _("待发送")
        SENT = "sent", _("已下发")
        ACKNOWLEDGED = "acknowledged", _("执行成功")
        FAILED = "failed", _("执行失败")
        TIMED_OUT = "timed_out", _("超时")

    FINAL = (State.ACKNOWLEDGED, State.FAILED, State.TIMED_OUT)

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    request_id = models.CharField(max_length=32, unique=True)
    terminal = models.ForeignKey(Terminal, on_delete=models.PROTECT, related_name="commands")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="+")
    command = models.CharField(_("命令"), max_length=12, choices=Command.choices)
    state = models.CharField(_("状态"), max_length=14, choices=State.choices, default=State.PENDING)
    reason = models.CharField(_("原因"), max_length=200, blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(_("申请时间"))
    attempts = models.PositiveSmallIntegerField(_("发送次数"), default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    retry_seconds = models.PositiveIntegerField(default=30)
    sent_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    finished_at = models.DateTimeField(_("完成时间"), null=True, blank=True)
    result = models.JSONField(_("结果"), default=dict, blank=True)

    class Meta:
        verbose_name = _("远程命令")
        verbose_name_plural = _("远程命令")
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"{self.command} {self.meter_id} {self.state}"

    @property
    def finished(self) -> bool:
        return self.state in self.FINAL


CHECK_RESULTS = {
    "confirmed": _("示数无误"),
    "wrong_reading": _("示数有误"),
    "meter_fault": _("表计故障"),
    "theft": _("窃电嫌疑"),
    "other": _("其他情况"),
}


class ReadingException(models.Model):
    """One failed validation rule of a reading (抄表异常), waiting for an auditor's decision."""

    class Rule(models.TextChoices):
        ZERO_USE = "zero_use", _("零电量")
        REVERSE = "reverse", _("示数倒走")
        ROLLOVER = "rollover", _("满码翻转")
        JUMP = "jump", _("电量突增")
        DROP = "drop", _("电量突减")
        MISSING = "missing", _("漏抄")
        METER_FAULT = "meter_fault", _("表计故障事件")
        TOU_IMBALANCE = "tou_imbalance", _("示值不平")
        DEMAND_OVER = "demand_over", _("需量超容")
        NO_ACCESS = "no_access", _("无法抄表")
        FILE_CHANGE = "file_change", _("档案变更未闭环")
        SITE_CHECK = "site_check", _("现场核查结论")

    class State(models.TextChoices):
        OPEN = "open", _("待处理")
        CLOSED = "closed", _("已处理")

    class Decision(models.TextChoices):
        ACCEPT = "accept", _("确认示数")
        CORRECT = "correct", _("更正示数")
        REREAD = "reread", _("退回重抄")
        SITE_CHECK = "site_check", _("现场核查")
        ESTIMATE = "estimate", _("估抄")
        READ = "read", _("已补抄")
        # closed by the system: the reading was validated again (its metering work order archived)
        REVALIDATE = "revalidate", _("重新审核")

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    metering_point = models.ForeignKey(MeteringPoint, on_delete=models.PROTECT, related_name="+")
    reading = models.ForeignKey(
        MeterReading, on_delete=models.CASCADE, null=True, blank=True, related_name="exceptions"
    )
    reading_date = models.DateField(_("抄表日期"))
    rule = models.CharField(_("异常类型"), max_length=16, choices=Rule.choices)
    detail = models.CharField(_("说明"), max_length=300)
    state = models.CharField(
        _("状态"), max_length=8, choices=State.choices, default=State.OPEN, db_index=True
    )
    decision = models.CharField(
        _("处理结果"), max_length=12, choices=Decision.choices, blank=True, default=""
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(_("处理说明"), max_length=300, blank=True, default="")
    created_at = models.DateTimeField()
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("责任人"),
    )
    due_on = models.DateField(_("处理时限"), null=True, blank=True)
    # the site-check work order opened by the "site_check" decision, and what the inspector found
    work_order = models.ForeignKey(
        ProcessInstance,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("核查工单"),
    )
    check_result = models.CharField(_("核查结论"), max_length=16, blank=True, default="")

    class Meta:
        verbose_name = _("抄表异常")
        verbose_name_plural = _("抄表异常")
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["state", "org"]), models.Index(fields=["owner", "state"])]

    def __str__(self) -> str:
        return f"{self.rule} {self.metering_point_id} {self.reading_date}"

    @property
    def check_result_label(self) -> str:
        return str(CHECK_RESULTS.get(self.check_result, self.check_result))


class ValidationSettings(models.Model):
    """VEE thresholds set at an org node; a blank field is inherited from the nearest ancestor,
    then from `rules.DEFAULT_THRESHOLDS`."""

    org = models.OneToOneField(Org, on_delete=models.CASCADE, related_name="+")
    jump_factor = models.DecimalField(_("突变倍数 k"), max_digits=6, decimal_places=2, null=True, blank=True)
    zero_use_periods = models.PositiveSmallIntegerField(_("零电量转检查期数"), null=True, blank=True)
    imbalance_units = models.DecimalField(
        _("示值不平容差(末位)"), max_digits=6, decimal_places=2, null=True, blank=True
    )
    rollover_max_factor = models.DecimalField(
        _("翻转最大倍数"), max_digits=6, decimal_places=2, null=True, blank=True
    )
    max_consecutive_estimates = models.PositiveSmallIntegerField(_("连续估抄上限"), null=True, blank=True)
    missing_grace_days = models.PositiveSmallIntegerField(_("漏抄宽限天数"), null=True, blank=True)
    demand_capacity_factor = models.DecimalField(
        _("需量超容系数"), max_digits=6, decimal_places=2, null=True, blank=True
    )
    # comma-separated usage categories billed against the same month last year (季节性用户);
    # NULL inherits, "" means none
    seasonal_categories = models.CharField(_("季节性用电类别"), max_length=100, null=True, blank=True)
    exception_days = models.PositiveSmallIntegerField(_("异常处理时限(工作日)"), null=True, blank=True)
    auditor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("默认审核员"),
    )
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("抄表审核阈值")
        verbose_name_plural = _("抄表审核阈值")

    def __str__(self) -> str:
        return f"VEE {self.org_id}"


class DeadLetter(models.Model):
    """An uplink message (or part of one) the listener could not use, kept as received."""

    received_at = models.DateTimeField(db_index=True)
    topic = models.CharField(max_length=200)
    payload = models.TextField()
    reason = models.CharField(max_length=300)

    class Meta:
        verbose_name = _("死信")
        verbose_name_plural = _("死信")
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.received_at} {self.topic}: {self.reason}"


class MeterChange(models.Model):
    """换表 / 倍率变更: the metering point's meter and/or multiplier changed on `changed_on`, with the
    old meter's final and the new meter's initial registers read at the change (from the field work
    order). Billing splits the period at it (DOMAIN.md §2.1); VEE holds readings whose period holds
    a change without a closed work order (§2.3, file change)."""

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    metering_point = models.ForeignKey(
        MeteringPoint, on_delete=models.PROTECT, related_name="+", verbose_name=_("计量点"), db_index=False
    )
    changed_on = models.DateField(_("变更日期"))
    old_meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("原表")
    )
    new_meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("新表")
    )
    old_multiplier = models.DecimalField(_("原综合倍率"), max_digits=12, decimal_places=4)
    new_multiplier = models.DecimalField(_("新综合倍率"), max_digits=12, decimal_places=4)
    # registers as decimal text, e.g. {"total": "1234.56", "peak": "400.10"}; {} = not read
    old_final = models.JSONField(_("拆表示数"), default=dict, blank=True)
    new_initial = models.JSONField(_("装表示数"), default=dict, blank=True)
    work_order = models.ForeignKey(
        ProcessInstance,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("工单"),
    )
    note = models.CharField(_("说明"), max_length=200, blank=True, default="")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    recorded_at = models.DateTimeField()

    class Meta:
        verbose_name = _("计量装置变更")
        verbose_name_plural = _("计量装置变更")
        ordering = ["metering_point", "changed_on", "id"]
        indexes = [models.Index(fields=["metering_point", "changed_on"])]

    def __str__(self) -> str:
        return f"{self.metering_point_id} {self.changed_on} {self.old_meter_id}→{self.new_meter_id}"

    @property
    def meter_replaced(self) -> bool:
        return self.old_meter_id != self.new_meter_id
