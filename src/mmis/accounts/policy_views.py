"""The collection policy page (收费策略): for an org of the user's data scope, the policy in force
and the org it comes from (the nearest org up the tree with its own policy, else the defaults);
administrators and managers save the org's own policy (validated per field, audited) or drop it to
inherit again. Thin: parse (policy_form), save one row, render."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _

from mmis.accounts import collection, policy_form, services
from mmis.accounts.models import Policy
from mmis.accounts.views import staff_only
from mmis.org import audit
from mmis.org.models import Org, User
from mmis.org.scope import DataScope, chosen_org

WRITE_ROLES = ("administrator", "manager")


def can_write(user: User) -> bool:
    return user.is_superuser or user.has_role(*WRITE_ROLES)


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "web/forbidden.html", {"message": message}, status=403)


def _orgs(user: User):
    return DataScope.for_user(user).orgs().exclude(level=Org.Level.SERVICE_HALL).order_by("path")


def _in_force(org: Org) -> tuple[Policy, Org | None]:
    """The policy that applies at `org` and the org it belongs to (None: the defaults); the same
    resolution as services.policy_for, read afresh (no cache)."""
    rows = {
        p.org.path: p for p in Policy.objects.select_related("org").filter(org__path__in=org.ancestor_paths())
    }
    for path in org.ancestor_paths():
        if path in rows:
            return rows[path], rows[path].org
    return Policy(org=org), None


def _audit_values(pol: Policy) -> dict:
    return policy_form.values_of(pol)


@staff_only
def policy(request: HttpRequest) -> HttpResponse:
    data = request.POST if request.method == "POST" else request.GET
    org = chosen_org(_orgs(request.user), data.get("org", ""), home_id=request.user.org_id)
    if org is None:
        return _forbidden(request, _("您的数据权限范围内没有单位"))
    writable = can_write(request.user)
    errors: dict[str, str] = {}
    posted = None
    status = 200
    if request.method == "POST":
        if not writable:
            return _forbidden(request, _("只有系统管理员或管理人员可以修改收费策略"))
        now = timezone.now()
        if request.POST.get("action") == "inherit":
            with transaction.atomic():
                own = Policy.objects.select_for_update().filter(org=org).first()
                if own is not None:
                    before = _audit_values(own)
                    own.delete()
                    audit.record(
                        actor=request.user,
                        action="accounts.policy.inherit",
                        target_type="accounts.policy",
                        target_id=str(org.pk),
                        org=org,
                        before=before,
                        after=None,
                        at=now,
                    )
            services.clear_policy_cache()
            messages.success(request, _("%(org)s 不再单独设置收费策略,改为继承上级") % {"org": org.name})
            return redirect(f"{request.path}?org={org.pk}")
        posted = request.POST
        values, errors = policy_form.parse(posted)
        if not errors:
            with transaction.atomic():
                own = Policy.objects.select_for_update().filter(org=org).first()
                before = _audit_values(own) if own is not None else None
                pol = own or Policy(org=org)
                for name, value in values.items():
                    setattr(pol, name, value)
                pol.save()
                after = _audit_values(pol)
                if before != after:
                    audit.record(
                        actor=request.user,
                        action="accounts.policy.set",
                        target=pol,
                        org=org,
                        before=before,
                        after=after,
                        at=now,
                    )
            services.clear_policy_cache()
            if before == after:
                messages.info(request, _("收费策略没有变化"))
            else:
                messages.success(request, _("%(org)s 的收费策略已保存") % {"org": org.name})
            return redirect(f"{request.path}?org={org.pk}")
        status = 422
    effective, source = _in_force(org)
    own = effective if source is not None and source.pk == org.pk else None
    shown = (
        {k: str(v) for k, v in posted.items()}
        if posted is not None
        else policy_form.form_data(policy_form.values_of(effective), effective.dunning_ladder or [])
    )
    if posted is not None:
        shown.setdefault("late_fee_during_plan", "")
    fields = []
    for name in policy_form.FIELDS:
        kind = policy_form.kind(name)
        if kind == "ladder":
            continue
        value = getattr(effective, name)
        if kind == "choice":
            current = dict(policy_form.choices(name)).get(value, value)
        elif kind == "bool":
            current = _("是") if value else _("否")
        else:
            current = value
        fields.append(
            {
                "name": name,
                "label": policy_form.label(name),
                "kind": kind,
                "choices": policy_form.choices(name) if kind == "choice" else [],
                "current": current,
                "value": shown.get(name, ""),
                "error": errors.get(name),
            }
        )
    ladder_rows = []
    for i in range(policy_form.LADDER_ROWS):
        row = {}
        for part in ("code", "after_days", "channel"):
            key = policy_form.ladder_field(i, part)
            row[part] = {"name": key, "value": shown.get(key, ""), "error": errors.get(key)}
        ladder_rows.append(row)
    current_ladder = [
        {
            "code": str(policy_form.LADDER_CODES.get(s.get("code"), s.get("code"))),
            "after_days": s.get("after_days"),
            "channel": str(policy_form.LADDER_CHANNELS.get(s.get("channel", ""), "")),
        }
        for s in sorted(effective.dunning_ladder or collection.DEFAULT_LADDER, key=lambda s: s["after_days"])
    ]
    ctx = {
        "org": org,
        "orgs": _orgs(request.user),
        "source": source,
        "own": own,
        "fields": fields,
        "ladder_rows": ladder_rows,
        "ladder_default": not effective.dunning_ladder,
        "current_ladder": current_ladder,
        "codes": [(k, str(v)) for k, v in policy_form.LADDER_CODES.items()],
        "channels": [(k, str(v)) for k, v in policy_form.LADDER_CHANNELS.items()],
        "errors": errors,
        "ladder_error": errors.get("dunning_ladder"),
        "can_write": writable,
    }
    return render(request, "accounts/policy.html", ctx, status=status)
