"""The customer file (客户档案): customers, service addresses, accounts, metering points and
supply contracts, each with its full change history (django-simple-history) for "as of" views.

Sensitive values (ID numbers, phones, bank accounts) are stored encrypted (`*_enc`), with a
keyed blind index (`*_index`) for exact-match search and a mask (`*_mask`) for lists.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from mmis.org.models import Org


class UsageCategory(models.TextChoices):
    RESIDENTIAL = "residential", _("居民生活")
    GENERAL_CI = "general_ci", _("一般工商业")
    LARGE_INDUSTRY = "large_industry", _("大工业")
    AGRICULTURAL = "agricultural", _("农业生产")


class VoltageLevel(models.TextChoices):
    V220 = "220V", "220 V"
    V380 = "380V", "380 V"
    KV10 = "10kV", "10 kV"
    KV35 = "35kV", "35 kV"
    KV110 = "110kV", "110 kV"


# History tables are read by row id, date and the customer/metering-point links only: the
# other indexes Django would copy onto them (`no_db_index`) would only slow every write.
class Customer(models.Model):
    class Kind(models.TextChoices):
        INDIVIDUAL = "individual", _("个人")
        ORGANISATION = "organisation", _("单位")

    class IdType(models.TextChoices):
        RESIDENT_ID = "resident_id", _("居民身份证")
        CREDIT_CODE = "credit_code", _("统一社会信用代码")
        PASSPORT = "passport", _("护照")
        OTHER = "other", _("其他证件")

    class Status(models.TextChoices):
        ACTIVE = "active", _("正常")
        CLOSED = "closed", _("已销户")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("供电单位"))
    customer_no = models.CharField(_("户号"), max_length=16, unique=True)
    kind = models.CharField(_("客户类型"), max_length=20, choices=Kind.choices)
    name = models.CharField(_("户名"), max_length=100, db_index=True)
    id_type = models.CharField(_("证件类型"), max_length=20, choices=IdType.choices)
    id_number_enc = models.TextField(_("证件号码(密文)"), blank=True, default="")
    id_number_index = models.CharField(max_length=32, blank=True, default="")
    id_number_mask = models.CharField(_("证件号码"), max_length=40, blank=True, default="")
    phone_enc = models.TextField(_("联系电话(密文)"), blank=True, default="")
    phone_index = models.CharField(max_length=32, blank=True, default="")
    phone_mask = models.CharField(_("联系电话"), max_length=20, blank=True, default="")
    contact_name = models.CharField(_("联系人"), max_length=50, blank=True, default="")
    industry_code = models.CharField(_("行业分类"), max_length=10, blank=True, default="")
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    opened_on = models.DateField(_("立户日期"))
    closed_on = models.DateField(_("销户日期"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(
        excluded_fields=["created_at", "updated_at"], no_db_index=["customer_no", "name", "org"]
    )

    class Meta:
        verbose_name = _("用电客户")
        verbose_name_plural = _("用电客户")
        # blind indexes are matched for equality only: plain btree, no pattern (_like) twin
        indexes = [
            models.Index(fields=["id_number_index"], name="cust_id_number_bidx"),
            models.Index(fields=["phone_index"], name="cust_phone_bidx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_no} {self.name}"


class ServiceAddress(models.Model):
    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("供电单位"))
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="addresses")
    region = models.CharField(_("省市区"), max_length=100)
    street = models.CharField(_("街道/乡镇"), max_length=100, blank=True, default="")
    detail = models.CharField(_("详细地址"), max_length=200)
    # substring search: trigram GIN index on PostgreSQL (migration 0003)
    full_text = models.CharField(_("用电地址"), max_length=400)
    postcode = models.CharField(_("邮编"), max_length=6, blank=True, default="")
    history = HistoricalRecords(no_db_index=["org"])

    class Meta:
        verbose_name = _("用电地址")
        verbose_name_plural = _("用电地址")

    def __str__(self) -> str:
        return self.full_text


class Account(models.Model):
    """A billing account of a customer (账户): where bills go and how they are paid."""

    class PaymentMethod(models.TextChoices):
        COUNTER = "counter", _("坐收")
        BANK_WITHHOLDING = "bank_withholding", _("银行代扣")
        AGENCY = "agency", _("代收")
        ONLINE = "online", _("线上缴费")
        PREPAID = "prepaid", _("预付费")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("供电单位"))
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="accounts")
    account_no = models.CharField(_("账户号"), max_length=20, unique=True)
    name = models.CharField(_("账户名称"), max_length=100)
    payment_method = models.CharField(
        _("缴费方式"), max_length=20, choices=PaymentMethod.choices, default=PaymentMethod.COUNTER
    )
    bank_name = models.CharField(_("开户银行"), max_length=60, blank=True, default="")
    bank_account_enc = models.TextField(blank=True, default="")
    bank_account_mask = models.CharField(_("银行账号"), max_length=40, blank=True, default="")
    ebill_email = models.EmailField(_("电子账单邮箱"), blank=True, default="")
    history = HistoricalRecords(no_db_index=["account_no", "org"])

    class Meta:
        verbose_name = _("账户")
        verbose_name_plural = _("账户")

    def __str__(self) -> str:
        return f"{self.account_no} {self.name}"


class MeteringPoint(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("运行")
        SUSPENDED = "suspended", _("暂停")
        CLOSED = "closed", _("已拆除")

    class Position(models.TextChoices):
        BOUNDARY = "boundary", _("产权分界处")
        HIGH_SUPPLY_LOW_METERING = "hv_supply_lv_metering", _("高供低计")

    class BasicChargeMode(models.TextChoices):
        NONE = "", _("无(单一制)")
        CAPACITY = "capacity", _("按容量")
        DEMAND_CONTRACT = "demand_contract", _("按合同最大需量")
        DEMAND_ACTUAL = "demand_actual", _("按实际最大需量")

    class PfStandard(models.TextChoices):
        NONE = "", _("不考核")
        PF090 = "0.90", "0.90"
        PF085 = "0.85", "0.85"
        PF080 = "0.80", "0.80"

    class Role(models.TextChoices):
        MAIN = "main", _("主表")
        SUB = "sub", _("子表(套表)")
        TRANSFEREE = "transferee", _("转供户")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("供电单位"))
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="metering_points")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="metering_points")
    address = models.ForeignKey(ServiceAddress, on_delete=models.PROTECT, related_name="metering_points")
    point_no = models.CharField(_("计量点编号"), max_length=20, unique=True)
    name = models.CharField(_("计量点名称"), max_length=100, blank=True, default="")
    usage_category = models.CharField(_("用电类别"), max_length=20, choices=UsageCategory.choices)
    voltage_level = models.CharField(_("电压等级"), max_length=10, choices=VoltageLevel.choices)
    # Placeholders filled by the tariff catalog and reading organisation.
    tariff_code = models.CharField(_("电价码"), max_length=20, blank=True, default="", db_index=True)
    reading_book_code = models.CharField(_("抄表段"), max_length=20, blank=True, default="", db_index=True)
    # 综合倍率, maintained by the metering-installation service from the installed CT and PT.
    multiplier = models.DecimalField(_("综合倍率"), max_digits=12, decimal_places=4, default=1)
    position = models.CharField(
        _("计量方式"), max_length=30, choices=Position.choices, default=Position.BOUNDARY
    )
    tou = models.BooleanField(_("分时计费"), default=False)
    pf_standard = models.CharField(
        _("力调标准"), max_length=4, choices=PfStandard.choices, blank=True, default=""
    )
    basic_charge_mode = models.CharField(
        _("基本电费计收方式"), max_length=20, choices=BasicChargeMode.choices, blank=True, default=""
    )
    contract_capacity_kva = models.DecimalField(
        _("合同容量(kVA)"), max_digits=12, decimal_places=2, default=0
    )
    operating_capacity_kva = models.DecimalField(
        _("运行容量(kVA)"), max_digits=12, decimal_places=2, default=0
    )
    contract_demand_kw = models.DecimalField(
        _("合同最大需量(kW)"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    tier_persons = models.PositiveSmallIntegerField(_("家庭人口"), default=0)
    prepaid = models.BooleanField(_("费控用户"), default=False)
    role = models.CharField(_("计量点角色"), max_length=12, choices=Role.choices, default=Role.MAIN)
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="sub_points",
        verbose_name=_("主计量点"),
    )
    status = models.CharField(_("状态"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    energised_on = models.DateField(_("送电日期"), null=True, blank=True)
    history = HistoricalRecords(
        no_db_index=["point_no", "org", "account", "address", "parent", "tariff_code", "reading_book_code"]
    )

    class Meta:
        verbose_name = _("计量点")
        verbose_name_plural = _("计量点")

    def __str__(self) -> str:
        return f"{self.point_no} {self.name}".strip()


class SupplyContract(models.Model):
    class Type(models.TextChoices):
        HIGH_VOLTAGE = "high_voltage", _("高压供用电合同")
        LOW_VOLTAGE = "low_voltage", _("低压供用电合同")
        RESIDENTIAL = "residential", _("居民供用电合同")
        TEMPORARY = "temporary", _("临时供用电合同")
        WHOLESALE = "wholesale", _("趸售合同")
        TRANSFER_SUPPLY = "transfer_supply", _("委托转供电协议")
        PREPAID = "prepaid", _("费控协议")

    class State(models.TextChoices):
        DRAFT = "draft", _("草拟")
        SIGNED = "signed", _("已签订")
        EFFECTIVE = "effective", _("生效")
        TERMINATED = "terminated", _("终止")

    org = models.ForeignKey(Org, on_delete=models.PROTECT, verbose_name=_("供电单位"))
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="contracts")
    contract_no = models.CharField(_("合同编号"), max_length=24, unique=True)
    contract_type = models.CharField(_("合同类型"), max_length=20, choices=Type.choices)
    capacity_kva = models.DecimalField(_("合同容量(kVA)"), max_digits=12, decimal_places=2)
    signed_on = models.DateField(_("签订日期"), null=True, blank=True)
    effective_from = models.DateField(_("生效日期"), null=True, blank=True)
    expires_on = models.DateField(_("到期日期"), null=True, blank=True)
    state = models.CharField(_("状态"), max_length=12, choices=State.choices, default=State.DRAFT)
    terminated_on = models.DateField(_("终止日期"), null=True, blank=True)
    history = HistoricalRecords(no_db_index=["contract_no", "org"])

    class Meta:
        verbose_name = _("供用电合同")
        verbose_name_plural = _("供用电合同")

    def __str__(self) -> str:
        return self.contract_no


class NumberSequence(models.Model):
    """Running numbers for customer, account, metering point and contract numbers."""

    name = models.CharField(max_length=30, primary_key=True)
    next_value = models.BigIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.name}: {self.next_value}"
