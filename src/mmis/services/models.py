"""Records of service changes that later rules depend on: suspensions and capacity reductions
(with their restoration), and the before/after of every change applied by a process."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from mmis.customers.models import Customer, MeteringPoint
from mmis.org.models import Org
from mmis.workflow.models import ProcessInstance


class ServiceChange(models.Model):
    class Kind(models.TextChoices):
        NEW_CONNECTION = "new_connection", _("新装")
        CAPACITY_INCREASE = "capacity_increase", _("增容")
        CAPACITY_REDUCTION = "capacity_reduction", _("减容")
        SUSPENSION = "suspension", _("暂停")
        METER_RELOCATION = "meter_relocation", _("移表")
        ADDRESS_MOVE = "address_move", _("迁址")
        NAME_CHANGE = "name_change", _("更名")
        TRANSFER = "transfer", _("过户")
        ACCOUNT_SPLIT = "account_split", _("分户")
        ACCOUNT_MERGE = "account_merge", _("并户")
        VOLTAGE_CHANGE = "voltage_change", _("改压")
        CATEGORY_CHANGE = "category_change", _("改类")
        ACCOUNT_CLOSURE = "account_closure", _("销户")

    org = models.ForeignKey(Org, on_delete=models.PROTECT)
    kind = models.CharField(_("变更类型"), max_length=20, choices=Kind.choices, db_index=True)
    # the record outlives the rows it describes (customer files are closed, never deleted, but a
    # test or the demo may wipe them)
    customer = models.ForeignKey(Customer, on_delete=models.SET_NULL, null=True, related_name="+")
    point = models.ForeignKey(
        MeteringPoint, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    instance = models.ForeignKey(
        ProcessInstance, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kva = models.DecimalField(_("容量(kVA)"), max_digits=12, decimal_places=2, null=True, blank=True)
    start_on = models.DateField(_("开始日期"))
    end_on = models.DateField(_("结束日期"), null=True, blank=True)
    restored_on = models.DateField(_("恢复日期"), null=True, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = _("变更记录")
        verbose_name_plural = _("变更记录")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.start_on}"
