"""Navigation by role for the workbench shell."""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

# (label, url name, roles that see it; empty = everyone signed in)
NAVIGATION = [
    (_("工作台"), "web:home", ()),
    (_("客户查询"), "web:customer_search", ()),
    (_("新建客户"), "web:customer_create", ("counter_staff", "administrator", "manager")),
    (_("电价"), "tariffs:list", ()),
    (_("抄表"), "readings:home", ("meter_reader", "billing_auditor", "manager", "administrator")),
    (_("电费核算"), "billing:runs", ("billing_auditor", "manager", "administrator")),
    (_("收费"), "accounts:home", ("cashier", "counter_staff", "manager", "administrator")),
    (_("工单"), "workflow:my_tasks", ()),
    (_("业务受理"), "services:index", ("counter_staff", "manager", "administrator")),
    (_("组织机构"), "web:org_tree", ("administrator", "manager")),
    (_("审计日志"), "web:audit_log", ("administrator",)),
]


def navigation(request):
    user = getattr(request, "user", None)
    if not user or not user.is_authenticated:
        return {"nav_items": []}
    items = []
    for label, name, roles in NAVIGATION:
        if roles and not user.has_role(*roles):
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue  # that part of the product is not installed yet
        items.append({"label": label, "url": url, "active": request.path.startswith(url) and url != "/"})
    return {"nav_items": items}
