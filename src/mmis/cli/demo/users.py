"""Step: one demo login per role (password Mmis@2026 for all)."""

from __future__ import annotations

from mmis.cli.demo.context import PASSWORD, DemoContext

# username, role, display name, where (org), scope
DEMO_USERS = (
    ("admin", "administrator", "系统管理员", "province", "self"),
    ("manager", "manager", "市公司营销经理", "city", "self"),
    ("counter", "counter_staff", "营业受理员", "county", "self"),
    ("reader", "meter_reader", "抄表员", "station", "self"),
    ("auditor", "billing_auditor", "电费核算员", "county", "self"),
    ("cashier", "cashier", "收费员", "hall", "hall+county"),
    ("inspector", "inspector", "用电检查员", "county", "self"),
    ("agent", "service_agent", "95598客服代表", "province", "self"),
)


def build_users(ctx: DemoContext) -> None:
    from mmis.org import services as org_services
    from mmis.org.models import User

    where = {
        "province": ctx.province,
        "city": ctx.cities[0],
        "county": ctx.counties[0],
        "station": ctx.stations[0].org,
        "hall": ctx.halls[0],
    }
    made = 0
    for username, role, display, at, scope in DEMO_USERS:
        existing = User.objects.filter(username=username).first()
        if existing is not None:
            ctx.users[username] = existing
            continue
        org = where[at]
        scope_orgs = [ctx.halls[0], ctx.counties[0]] if scope == "hall+county" else [org]
        ctx.users[username] = org_services.create_user(
            username=username,
            password=PASSWORD,
            org=org,
            roles=[role],
            display_name=display,
            scope_orgs=scope_orgs,
            check_password=False,
        )
        made += 1
    ctx.report("users").rows["org_user"] = made


def logins(ctx: DemoContext) -> list[tuple[str, str, str, str]]:
    """(username, password, role, org name) of every demo login."""
    out = []
    for username, role, display, _at, _scope in DEMO_USERS:
        user = ctx.users.get(username)
        org = user.org.name if user is not None and user.org_id else ""
        out.append((username, PASSWORD, f"{role} {display}", org))
    return out
