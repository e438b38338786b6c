"""The tariff catalog: a tariff (code, name, usage category, voltage level) published by an org, and
its versions by effective date. A version's prices are the rating package's tariff JSON
(`pricing`), with the catalog data beside it (TOU calendar, tier-year start, basic prices)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from mmis.customers.models import UsageCategory, VoltageLevel
from mmis.org.models import Org, User


class Tariff(models.Model):
    """A priced product. It belongs to the org that publishes it (a province) and is inherited by
    every org below; a lower org may hold its own tariff of the same code (a local override) only
    where the province allows it."""

    org = models.ForeignKey(Org, on_delete=models.PROTECT, related_name="tariffs", verbose_name=_("发布单位"))
    code = models.CharField(_("电价码"), max_length=30)
    name = models.CharField(_("名称"), max_length=100)
    usage_category = models.CharField(_("用电类别"), max_length=20, choices=UsageCategory.choices)
    voltage_level = models.CharField(
        _("电压等级"),
        max_length=10,
        choices=VoltageLevel.choices,
        blank=True,
        help_text=_("空 = 不分电压等级"),
    )
    description = models.CharField(_("说明"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("创建时间"))
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        verbose_name = _("电价")
        verbose_name_plural = _("电价")
        ordering = ["code", "org__path"]
        constraints = [models.UniqueConstraint(fields=["org", "code"], name="uniq_tariff_org_code")]
        indexes = [models.Index(fields=["code"])]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class TariffVersion(models.Model):
    """One version of a tariff, in force from `effective_from` until the next version starts.
    Draft versions may be edited; published versions are immutable (change = a new version)."""

    class State(models.TextChoices):
        DRAFT = "draft", _("草稿")
        PUBLISHED = "published", _("已发布")

    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="versions")
    label = models.CharField(_("版本"), max_length=40)
    effective_from = models.DateField(_("生效日期"))
    state = models.CharField(_("状态"), max_length=12, choices=State.choices, default=State.DRAFT)
    pricing = models.JSONField(_("价格"))  # mmis.rating.tariff.Tariff.to_dict()
    calendar = models.JSONField(_("分时时段"), null=True, blank=True)  # rules.Calendar.to_dict()
    tier_year_start_month = models.PositiveSmallIntegerField(_("阶梯年度起始月"), default=1)
    basic_prices = models.JSONField(_("基本电价"), default=dict, blank=True)  # mode → price
    note = models.CharField(_("说明"), max_length=300, blank=True)
    based_on = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("复制自")
    )
    created_at = models.DateTimeField(_("创建时间"))
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    published_at = models.DateTimeField(_("发布时间"), null=True, blank=True)
    published_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        verbose_name = _("电价版本")
        verbose_name_plural = _("电价版本")
        ordering = ["tariff_id", "effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["tariff", "effective_from"], name="uniq_tariff_version_start"),
            models.CheckConstraint(
                condition=models.Q(tier_year_start_month__gte=1, tier_year_start_month__lte=12),
                name="tariff_version_tier_month",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tariff.code} {self.label}"

    @property
    def is_published(self) -> bool:
        return self.state == self.State.PUBLISHED

    def data(self) -> dict:
        """The version's data in the form services and import/export read and write."""
        return {
            "pricing": self.pricing,
            "calendar": self.calendar,
            "tier_year_start_month": self.tier_year_start_month,
            "basic_prices": self.basic_prices or {},
        }
