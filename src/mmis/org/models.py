"""Org tree (materialised path), users, roles, data-scope grants, API tokens and the audit log."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _
from treebeard.mp_tree import MP_Node


class Org(MP_Node):
    """A node of the supply organisation. `path` is the materialised path: everything under a
    county is one indexed prefix query on it."""

    class Level(models.TextChoices):
        PROVINCE = "province", _("省公司")
        CITY = "city", _("地市公司")
        COUNTY = "county", _("县公司")
        STATION = "station", _("供电所")
        SERVICE_HALL = "service_hall", _("营业厅")

    code = models.CharField(_("编码"), max_length=20, unique=True)
    name = models.CharField(_("名称"), max_length=100)
    level = models.CharField(_("层级"), max_length=20, choices=Level.choices)
    # A province decides whether lower orgs may override what it publishes (tariffs, processes).
    allows_local_override = models.BooleanField(_("允许下级覆盖"), default=False)
    is_active = models.BooleanField(_("有效"), default=True)

    node_order_by = ["code"]

    class Meta:
        verbose_name = _("组织")
        verbose_name_plural = _("组织")

    def __str__(self) -> str:
        return self.name

    def province(self) -> Org:
        return self if self.depth == 1 else Org.objects.get(path=self.path[: self.steplen])

    def ancestor_paths(self) -> list[str]:
        """Own path and every ancestor's, nearest first."""
        return [self.path[:n] for n in range(len(self.path), 0, -self.steplen)]


class Role(models.Model):
    class Code(models.TextChoices):
        COUNTER_STAFF = "counter_staff", _("营业受理员")
        METER_READER = "meter_reader", _("抄表员")
        BILLING_AUDITOR = "billing_auditor", _("核算员")
        CASHIER = "cashier", _("收费员")
        INSPECTOR = "inspector", _("用电检查员")
        SERVICE_AGENT = "service_agent", _("客服代表")
        MANAGER = "manager", _("管理人员")
        ADMINISTRATOR = "administrator", _("系统管理员")

    code = models.CharField(_("编码"), max_length=30, unique=True, choices=Code.choices)
    name = models.CharField(_("名称"), max_length=50)

    class Meta:
        verbose_name = _("角色")
        verbose_name_plural = _("角色")

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    org = models.ForeignKey(Org, on_delete=models.PROTECT, null=True, blank=True, verbose_name=_("所属单位"))
    display_name = models.CharField(_("姓名"), max_length=50, blank=True)
    roles = models.ManyToManyField(Role, blank=True, verbose_name=_("角色"))

    class Meta:
        verbose_name = _("用户")
        verbose_name_plural = _("用户")

    def __str__(self) -> str:
        return self.display_name or self.username

    def role_codes(self) -> set[str]:
        cache = getattr(self, "_role_codes", None)
        if cache is None:
            cache = set(self.roles.values_list("code", flat=True))
            self._role_codes = cache
        return cache

    def has_role(self, *codes: str) -> bool:
        return self.is_superuser or bool(self.role_codes() & set(codes))


class DataScopeGrant(models.Model):
    """The user may see and change business rows of this org and everything below it."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="scope_grants")
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="+")
    granted_at = models.DateTimeField(auto_now_add=True)
    granted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        verbose_name = _("数据权限")
        verbose_name_plural = _("数据权限")
        constraints = [models.UniqueConstraint(fields=["user", "org"], name="uniq_scope_grant")]

    def __str__(self) -> str:
        return f"{self.user_id} → {self.org_id}"


class ApiToken(models.Model):
    """Bearer token for the API; only the SHA-256 of the secret is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"


class AuditLog(models.Model):
    """Append-only: who did what to which row, when, with the values before and after."""

    at = models.DateTimeField(_("时间"), db_index=True)
    actor = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, verbose_name=_("操作人"))
    actor_name = models.CharField(_("操作人"), max_length=150, blank=True)
    action = models.CharField(_("操作"), max_length=60, db_index=True)
    target_type = models.CharField(_("对象类型"), max_length=60)
    target_id = models.CharField(_("对象"), max_length=60)
    target_repr = models.CharField(_("对象描述"), max_length=200, blank=True)
    org = models.ForeignKey(Org, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    before = models.JSONField(_("变更前"), null=True, blank=True)
    after = models.JSONField(_("变更后"), null=True, blank=True)
    reason = models.CharField(_("原因"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("审计日志")
        verbose_name_plural = _("审计日志")
        indexes = [models.Index(fields=["target_type", "target_id"])]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.target_type}#{self.target_id}"
