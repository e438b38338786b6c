"""Tables of the work-order engine: versioned process definitions (data), the province holiday
calendar, process instances pinned to a definition version, tasks with their deadlines, the
event timeline, attachments, alarms and supervision (督办) orders."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from mmis.org.models import Org


class ProcessDefinition(models.Model):
    """One version of a process. Published versions are immutable: a change is a new version,
    and running instances keep the version they started with."""

    class State(models.TextChoices):
        DRAFT = "draft", _("草稿")
        PUBLISHED = "published", _("已发布")
        RETIRED = "retired", _("已停用")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("发布单位"))
    code = models.CharField(_("流程编码"), max_length=40, db_index=True)
    name = models.CharField(_("流程名称"), max_length=100)
    category = models.CharField(_("类别"), max_length=40, blank=True, default="")
    version = models.PositiveIntegerField(_("版本"))
    state = models.CharField(_("状态"), max_length=10, choices=State.choices, default=State.DRAFT)
    effective_from = models.DateField(_("生效日期"))
    spec = models.JSONField(_("流程定义"))
    number_prefix = models.CharField(_("工单号前缀"), max_length=4, default="GD")
    created_at = models.DateTimeField(_("创建时间"))
    published_at = models.DateTimeField(_("发布时间"), null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("流程定义")
        verbose_name_plural = _("流程定义")
        constraints = [
            models.UniqueConstraint(fields=["org", "code", "version"], name="uniq_process_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class CalendarDay(models.Model):
    """A province's correction of the official calendar (a local holiday or extra working day)."""

    province = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(_("日期"))
    is_workday = models.BooleanField(_("工作日"))
    note = models.CharField(_("说明"), max_length=100, blank=True, default="")

    class Meta:
        verbose_name = _("工作日历")
        verbose_name_plural = _("工作日历")
        constraints = [models.UniqueConstraint(fields=["province", "day"], name="uniq_calendar_day")]

    def __str__(self) -> str:
        return f"{self.day} {'工作日' if self.is_workday else '休息日'}"


class Sequence(models.Model):
    name = models.CharField(max_length=30, primary_key=True)
    next_value = models.BigIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.name}: {self.next_value}"


class ProcessInstance(models.Model):
    class State(models.TextChoices):
        RUNNING = "running", _("办理中")
        SUSPENDED = "suspended", _("已挂起")
        COMPLETED = "completed", _("已归档")
        CANCELLED = "cancelled", _("已撤销")

    number = models.CharField(_("工单号"), max_length=24, unique=True)
    definition = models.ForeignKey(ProcessDefinition, on_delete=models.PROTECT, related_name="instances")
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("受理单位"))
    state = models.CharField(_("状态"), max_length=10, choices=State.choices, default=State.RUNNING)
    title = models.CharField(_("标题"), max_length=200)
    # What the process is about (generic: the engine knows no customer): e.g. customers.customer#12
    subject_type = models.CharField(max_length=60, blank=True, default="", db_index=True)
    subject_id = models.CharField(max_length=40, blank=True, default="", db_index=True)
    subject_repr = models.CharField(_("对象"), max_length=200, blank=True, default="")
    data = models.JSONField(_("业务数据"), default=dict)
    initiator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("发起人")
    )
    applicant = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="applications",
        verbose_name=_("申请人账号"),
    )
    started_at = models.DateTimeField(_("受理时间"), db_index=True)
    due_at = models.DateTimeField(_("承诺时限"), null=True, blank=True)
    warn_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    alarmed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(_("办结时间"), null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    # working time during which the utility's clock stood still (customer side, suspension), seconds
    paused_seconds = models.BigIntegerField(default=0)
    limit_unit = models.CharField(max_length=14, blank=True, default="")
    on_time = models.BooleanField(_("按时办结"), null=True, blank=True)
    cancel_reason = models.CharField(_("撤销原因"), max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("工单")
        verbose_name_plural = _("工单")
        indexes = [models.Index(fields=["org", "state"])]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.state in (self.State.RUNNING, self.State.SUSPENDED)


class Task(models.Model):
    class State(models.TextChoices):
        OPEN = "open", _("待领取")
        CLAIMED = "claimed", _("办理中")
        COMPLETED = "completed", _("已完成")
        SENT_BACK = "sent_back", _("已回退")
        CANCELLED = "cancelled", _("已撤销")

    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="tasks")
    step_code = models.CharField(_("环节"), max_length=40)
    step_name = models.CharField(_("环节名称"), max_length=100)
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("办理单位"))
    role = models.CharField(_("办理角色"), max_length=30)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="workflow_tasks",
        verbose_name=_("办理人"),
    )
    state = models.CharField(_("状态"), max_length=10, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField(_("到达时间"))
    claimed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(_("完成时间"), null=True, blank=True)
    due_at = models.DateTimeField(_("环节时限"), null=True, blank=True, db_index=True)
    warn_at = models.DateTimeField(null=True, blank=True, db_index=True)
    escalate_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    alarmed_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    limit_unit = models.CharField(max_length=14, blank=True, default="")
    customer_side = models.BooleanField(default=False)
    form_data = models.JSONField(default=dict)
    comment = models.CharField(_("意见"), max_length=500, blank=True, default="")
    sent_back_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("任务")
        verbose_name_plural = _("任务")
        indexes = [models.Index(fields=["state", "role", "org"]), models.Index(fields=["assignee", "state"])]

    def __str__(self) -> str:
        return f"{self.instance.number} {self.step_name}"

    @property
    def is_open(self) -> bool:
        return self.state in (self.State.OPEN, self.State.CLAIMED)


class Event(models.Model):
    """The timeline of an instance: every transition, who, when, why."""

    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="events")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    actor_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=30)
    step_name = models.CharField(max_length=100, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action}"


def attachment_path(instance: Attachment, filename: str) -> str:
    return f"workflow/{instance.instance_id}/{filename}"


class Attachment(models.Model):
    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="attachments")
    task = models.ForeignKey(
        Task, on_delete=models.SET_NULL, null=True, blank=True, related_name="attachments"
    )
    kind = models.CharField(_("资料类型"), max_length=60, blank=True, default="")
    name = models.CharField(_("文件名"), max_length=200)
    file = models.FileField(upload_to=attachment_path)
    size = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    uploaded_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name


class Alarm(models.Model):
    class Kind(models.TextChoices):
        WARNING = "warning", _("临期预警")
        OVERDUE = "overdue", _("超期告警")

    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="alarms")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, null=True, blank=True, related_name="alarms")
    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    at = models.DateTimeField(db_index=True)
    message = models.CharField(max_length=300)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return self.message


class Supervision(models.Model):
    """督办: an overdue task escalated to the upper org, until the task is done."""

    class State(models.TextChoices):
        OPEN = "open", _("督办中")
        CLOSED = "closed", _("已办结")

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="supervisions")
    instance = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="supervisions")
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("督办单位"))
    supervised_org = models.ForeignKey(Org, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    message = models.CharField(max_length=300)

    def __str__(self) -> str:
        return self.message
