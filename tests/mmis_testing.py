"""Helpers shared by the tests (importable as `mmis_testing`: a conftest is not a module to import
from, and several test folders have their own conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "Mmis@2026-test"


def spec_dir() -> Path:
    import os

    path = Path(os.environ.get("MMIS_SPEC_DIR", REPO.parent / "shared" / "spec"))
    if not path.is_dir():
        raise RuntimeError(f"spec directory {path} is missing: set MMIS_SPEC_DIR")
    return path


@dataclass
class SmallUtility:
    province: object
    cities: list
    counties: list
    stations: list
    users: dict = field(default_factory=dict)
    customers: dict = field(default_factory=dict)


def build_small_utility() -> SmallUtility:
    from mmis.customers import services as cs
    from mmis.org import services as org_services
    from mmis.org.models import Org

    org_services.ensure_roles()
    prov = org_services.create_org(parent=None, code="37", name="示范省电力公司", level=Org.Level.PROVINCE)
    cities, counties, stations = [], [], []
    for ci in range(2):
        city = org_services.create_org(
            parent=prov, code=f"37{ci + 1:02d}", name=f"第{ci + 1}市供电公司", level=Org.Level.CITY
        )
        cities.append(city)
        for ki in range(2):
            county = org_services.create_org(
                parent=city,
                code=f"{city.code}{ki + 1:02d}",
                name=f"{city.name[:3]}{ki + 1}县供电公司",
                level=Org.Level.COUNTY,
            )
            counties.append(county)
            st = org_services.create_org(
                parent=county,
                code=f"{county.code}01",
                name=f"{county.name[:5]}城关供电所",
                level=Org.Level.STATION,
            )
            stations.append(st)
    u = SmallUtility(province=prov, cities=cities, counties=counties, stations=stations)
    mk = org_services.create_user
    u.users["admin"] = mk(
        username="admin", password=PASSWORD, org=prov, roles=["administrator"], display_name="省管理员"
    )
    u.users["counter_a"] = mk(
        username="counter_a",
        password=PASSWORD,
        org=counties[0],
        roles=["counter_staff"],
        display_name="甲县营业员",
    )
    u.users["counter_b"] = mk(
        username="counter_b",
        password=PASSWORD,
        org=counties[1],
        roles=["counter_staff"],
        display_name="乙县营业员",
    )
    u.users["manager"] = mk(
        username="manager", password=PASSWORD, org=cities[0], roles=["manager"], display_name="市营销经理"
    )
    u.customers["a"] = cs.create_customer(
        actor=u.users["counter_a"],
        org=stations[0],
        opened_on=date(2025, 1, 10),
        data={
            "kind": "individual",
            "name": "张伟",
            "id_type": "resident_id",
            "id_number": "11010519491231002X",
            "phone": "13912345678",
            "address": {"region": "示范省第1市甲县", "street": "城关镇", "detail": "人民路12号"},
        },
    )
    u.customers["b"] = cs.create_customer(
        actor=u.users["counter_b"],
        org=stations[1],
        opened_on=date(2025, 2, 1),
        data={
            "kind": "organisation",
            "name": "乙县宏达机械有限公司",
            "id_type": "credit_code",
            "id_number": "91350100M000100Y43",
            "phone": "05718888888",
            "address": {"region": "示范省第1市乙县", "detail": "工业园区8号"},
        },
    )
    return u


def individual_account(utility, n: int, *, name: str = "测试"):
    """A residential customer of the utility's first station, opened 400 days ago: its account."""
    from datetime import timedelta

    from django.utils import timezone

    from mmis.customers import rules as customer_rules
    from mmis.customers import services as customer_services

    first17 = f"11010519800101{n:03d}"
    cust = customer_services.create_customer(
        actor=utility.users["counter_a"],
        org=utility.stations[0],
        opened_on=timezone.localdate() - timedelta(days=400),
        data={
            "kind": "individual",
            "name": f"{name}{n}",
            "id_type": "resident_id",
            "id_number": first17 + customer_rules.resident_id_check_digit(first17),
            "phone": "13912345678",
            "address": {"region": "示范省第1市甲县", "detail": f"人民路{n}号"},
        },
    )
    return cust.accounts.get()


def bill_charge(acc, amount, n: int, due):
    """A bill's charge of `amount` on the account, due on `due`, posted 60 days ago."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from mmis.accounts import services

    return services.post_charge(
        account=acc,
        amount=Decimal(amount),
        source_type="bill",
        source_id=acc.pk * 100 + n,
        document_no=f"B{acc.pk}-{n}",
        due_date=due,
        at=timezone.now() - timedelta(days=60),
        actor=None,
    )
