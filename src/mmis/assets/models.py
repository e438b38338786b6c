"""Metering assets: meters and instrument transformers (CT/PT), with their history."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from mmis.customers.models import MeteringPoint
from mmis.org.models import Org


class AssetState(models.TextChoices):
    IN_STOCK = "in_stock", _("库存")
    INSTALLED = "installed", _("运行")
    REMOVED = "removed", _("已拆回")
    SCRAPPED = "scrapped", _("报废")


class Meter(models.Model):
    class Kind(models.TextChoices):
        SINGLE_PHASE = "single_phase", _("单相")
        THREE_PHASE_3W = "three_phase_3w", _("三相三线")
        THREE_PHASE_4W = "three_phase_4w", _("三相四线")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("资产单位"))
    asset_no = models.CharField(_("电能表资产号"), max_length=24, unique=True)
    comm_address = models.CharField(_("通信地址"), max_length=12, blank=True, default="", db_index=True)
    manufacturer = models.CharField(_("生产厂家"), max_length=60, blank=True, default="")
    model = models.CharField(_("型号"), max_length=40, blank=True, default="")
    kind = models.CharField(_("接线方式"), max_length=20, choices=Kind.choices)
    accuracy_class = models.CharField(_("准确度等级"), max_length=8, default="2.0")
    rated_current = models.CharField(_("额定电流"), max_length=20, default="5(60)A")
    register_digits = models.PositiveSmallIntegerField(_("整数位数"), default=6)
    register_decimals = models.PositiveSmallIntegerField(_("小数位数"), default=2)
    tou = models.BooleanField(_("多费率"), default=False)
    state = models.CharField(
        _("状态"), max_length=12, choices=AssetState.choices, default=AssetState.IN_STOCK
    )
    metering_point = models.ForeignKey(
        MeteringPoint,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="meters",
        verbose_name=_("计量点"),
    )
    installed_on = models.DateField(_("安装日期"), null=True, blank=True)
    removed_on = models.DateField(_("拆除日期"), null=True, blank=True)
    history = HistoricalRecords(no_db_index=["asset_no", "org", "comm_address"])

    class Meta:
        verbose_name = _("电能表")
        verbose_name_plural = _("电能表")

    def __str__(self) -> str:
        return self.asset_no


class InstrumentTransformer(models.Model):
    class Kind(models.TextChoices):
        CT = "ct", _("电流互感器")
        PT = "pt", _("电压互感器")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("资产单位"))
    asset_no = models.CharField(_("资产号"), max_length=24, unique=True)
    kind = models.CharField(_("类型"), max_length=2, choices=Kind.choices)
    primary = models.DecimalField(_("一次值"), max_digits=10, decimal_places=2)
    secondary = models.DecimalField(_("二次值"), max_digits=10, decimal_places=2)
    accuracy_class = models.CharField(_("准确度等级"), max_length=8, default="0.2S")
    state = models.CharField(
        _("状态"), max_length=12, choices=AssetState.choices, default=AssetState.IN_STOCK
    )
    metering_point = models.ForeignKey(
        MeteringPoint,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="transformers",
        verbose_name=_("计量点"),
    )
    installed_on = models.DateField(_("安装日期"), null=True, blank=True)
    history = HistoricalRecords(no_db_index=["asset_no", "org"])

    class Meta:
        verbose_name = _("互感器")
        verbose_name_plural = _("互感器")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.asset_no} {self.ratio_text}"

    @property
    def ratio_text(self) -> str:
        return f"{self.primary.normalize():f}/{self.secondary.normalize():f}"
