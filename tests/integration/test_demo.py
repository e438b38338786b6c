"""The demo builder (`python -m mmis demo`): deterministic, valid and complete customer files."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

N = 300
SEED = 7
TZ = ZoneInfo("Asia/Shanghai")


CUSTOMER_FILE_STEPS = ("orgs", "users", "customers")


def _build(customers: int = N, seed: int = SEED, *, all_steps: bool = False):
    """The customer-file steps (what these tests are about); later steps have their own tests."""
    from mmis.cli.demo import DemoContext, build
    from mmis.cli.demo.builder import STEPS

    steps = STEPS if all_steps else [s for s in STEPS if s.name in CUSTOMER_FILE_STEPS]
    return build(DemoContext(customers=customers, seed=seed, progress=False, log=lambda _m: None), steps)


def test_the_whole_demo_builds(db):
    from mmis.cli.demo.builder import STEPS
    from mmis.customers.models import Customer

    ctx = _build(customers=80, all_steps=True)
    assert Customer.objects.count() == 80
    assert [r.name for r in ctx.reports] == [s.name for s in STEPS]


def _snapshot() -> list[tuple]:
    from mmis.customers.models import MeteringPoint

    return list(
        MeteringPoint.objects.order_by("customer__customer_no").values_list(
            "customer__customer_no",
            "customer__name",
            "customer__id_number_mask",
            "contract_capacity_kva",
            "usage_category",
            "voltage_level",
            "tariff_code",
            "reading_book_code",
            "multiplier",
            "address__full_text",
        )
    )


def _wipe_customer_file() -> None:
    from mmis.assets.models import InstrumentTransformer, Meter
    from mmis.customers.models import (
        Account,
        Customer,
        MeteringPoint,
        NumberSequence,
        ServiceAddress,
        SupplyContract,
    )

    for model in (
        InstrumentTransformer,
        Meter,
        SupplyContract,
        MeteringPoint,
        Account,
        ServiceAddress,
        Customer,
    ):
        model.objects.all().delete()
        model.history.model.objects.all().delete()
    NumberSequence.objects.all().delete()


@pytest.fixture
def demo(db):
    return _build()


def test_same_seed_gives_the_same_utility(demo):
    first = _snapshot()
    assert len(first) == N
    _wipe_customer_file()
    again = _build()
    assert [s.org.code for s in again.stations] == [s.org.code for s in demo.stations]
    assert _snapshot() == first


def test_another_seed_gives_other_customers(db):
    _build(customers=60, seed=1)
    first = {row[1] for row in _snapshot()}
    _wipe_customer_file()
    _build(customers=60, seed=2)
    assert {row[1] for row in _snapshot()} != first


def test_org_tree(demo):
    from mmis.org.models import Org

    prov = Org.objects.get(code="37")
    assert prov.level == Org.Level.PROVINCE
    under = Org.objects.filter(path__startswith=prov.path)
    assert under.filter(level=Org.Level.CITY).count() >= 2
    counties = list(under.filter(level=Org.Level.COUNTY))
    assert len(counties) >= 4
    assert under.filter(level=Org.Level.STATION).count() >= 12
    for county in counties:
        children = Org.objects.filter(path__startswith=county.path, depth=county.depth + 1)
        assert children.filter(level=Org.Level.SERVICE_HALL).count() == 1
    # every customer belongs to a station and the stations all have customers
    from mmis.customers.models import Customer

    station_ids = set(under.filter(level=Org.Level.STATION).values_list("pk", flat=True))
    assert set(Customer.objects.values_list("org_id", flat=True)) <= station_ids


def test_demo_logins(demo):
    from mmis.cli.demo import PASSWORD
    from mmis.org.models import User

    expected = {
        "admin": "administrator",
        "manager": "manager",
        "counter": "counter_staff",
        "reader": "meter_reader",
        "auditor": "billing_auditor",
        "cashier": "cashier",
        "inspector": "inspector",
        "agent": "service_agent",
    }
    for username, role in expected.items():
        user = User.objects.get(username=username)
        assert user.password.startswith("argon2")
        assert user.check_password(PASSWORD)
        assert user.role_codes() == {role}
    from django.contrib.auth import authenticate
    from django.test import RequestFactory

    request = RequestFactory().post("/login/")
    assert authenticate(request, username="counter", password=PASSWORD) == User.objects.get(
        username="counter"
    )
    assert authenticate(request, username="counter", password="wrong-password") is None
    cashier = User.objects.get(username="cashier")
    assert cashier.org.level == "service_hall"
    assert {g.org.level for g in cashier.scope_grants.all()} == {"service_hall", "county"}
    assert User.objects.get(username="admin").org.level == "province"
    assert User.objects.get(username="reader").org.level == "station"


def test_identity_documents_are_valid_encrypted_and_masked(demo):
    from mmis.customers import rules
    from mmis.customers.crypto import cipher
    from mmis.customers.models import Account, Customer

    c = cipher()
    kinds = set()
    for cu in Customer.objects.all():
        idn = c.decrypt(cu.id_number_enc)
        if cu.id_type == "resident_id":
            assert rules.check_resident_id(idn) is None, idn
            assert cu.kind == "individual"
        else:
            assert cu.id_type == "credit_code"
            assert rules.check_credit_code(idn) is None, idn
            assert cu.kind == "organisation"
        kinds.add(cu.kind)
        assert cu.id_number_index == c.blind_index(idn)
        assert cu.id_number_mask == rules.mask_id_number(idn)
        phone = c.decrypt(cu.phone_enc)
        assert rules.check_phone(phone) is None, phone
        assert cu.phone_index == c.blind_index(phone)
        assert cu.phone_mask == rules.mask_phone(phone)
        assert cu.name and cu.addresses.count() == 1 and cu.accounts.count() == 1
    assert kinds == {"individual", "organisation"}
    banked = Account.objects.filter(payment_method="bank_withholding")
    assert banked.exists()
    for acct in banked:
        number = c.decrypt(acct.bank_account_enc)
        assert number.isdigit() and acct.bank_account_mask == rules.mask_id_number(number)
        assert acct.bank_name
    # search by blind index finds the customer, as the customer search does
    some = Customer.objects.order_by("pk")[5]
    assert Customer.objects.filter(id_number_index=c.blind_index(c.decrypt(some.id_number_enc))).exists()


def test_metering_points_meters_and_multiplier(demo):
    from mmis.assets.services import point_multiplier
    from mmis.customers.models import MeteringPoint

    categories = set()
    with_ct = 0
    for p in MeteringPoint.objects.prefetch_related("meters", "transformers"):
        categories.add(p.usage_category)
        meters = list(p.meters.all())
        assert len(meters) == 1 and meters[0].state == "installed"
        m = meters[0]
        assert len(m.asset_no) == 22 and m.asset_no.isdigit()
        assert len(m.comm_address) == 12 and m.comm_address.isdigit()
        assert (m.kind == "single_phase") == (p.voltage_level == "220V")
        trs = list(p.transformers.all())
        assert p.multiplier == point_multiplier(trs)
        if trs:
            with_ct += 1
        if p.voltage_level in ("10kV", "35kV") and p.position == "boundary":
            assert {t.kind for t in trs} == {"ct", "pt"}
        assert p.reading_book_code.startswith(p.org.code + "-")
        if p.usage_category == "residential":
            assert p.tariff_code == "RES-TIER" and 1 <= p.tier_persons <= 6
            assert Decimal(4) <= p.contract_capacity_kva <= Decimal(10) and p.basic_charge_mode == ""
        if p.usage_category == "large_industry":
            assert p.voltage_level in ("10kV", "35kV") and p.pf_standard == "0.90"
            assert p.basic_charge_mode in ("capacity", "demand_contract")
            if p.basic_charge_mode == "demand_contract":
                assert p.contract_demand_kw >= p.contract_capacity_kva * Decimal("0.4")
        contract = p.customer.contracts.get()
        assert contract.capacity_kva == p.contract_capacity_kva and contract.state == "effective"
    assert categories == {"residential", "general_ci", "large_industry", "agricultural"}
    assert with_ct > 0


def test_history_as_of(demo):
    from mmis.customers.history import file_as_of
    from mmis.customers.models import Customer

    cu = Customer.objects.order_by("pk")[10]
    opened = datetime.combine(cu.opened_on, datetime.min.time(), tzinfo=TZ)
    with pytest.raises(Customer.DoesNotExist):
        cu.history.as_of(opened - timedelta(days=1))
    past = cu.history.as_of(opened + timedelta(days=1))
    assert past.customer_no == cu.customer_no and past.name == cu.name
    f = file_as_of(cu, opened + timedelta(days=1))
    assert len(f.points) == 1 and len(f.contracts) == 1 and len(f.addresses) == 1
    assert len(f.meters[f.points[0].pk]) == 1
    assert Customer.history.filter(history_type="+").count() == N


def test_numbering_continues_after_the_load(demo):
    from mmis.customers import services as cs
    from mmis.customers.models import Account, Customer

    top = max(Customer.objects.values_list("customer_no", flat=True))
    top_account = max(Account.objects.values_list("account_no", flat=True))
    station = demo.stations[0].org
    new = cs.create_customer(
        actor=demo.users["counter"],
        org=station,
        opened_on=date(2026, 11, 2),
        data={
            "kind": "individual",
            "name": "测试新户",
            "id_type": "resident_id",
            "id_number": "11010519491231002X",
            "phone": "13912345678",
            "address": {"region": "示范省济南市历下区", "detail": "人民路1号"},
        },
    )
    assert new.customer_no > top
    assert new.accounts.get().account_no > top_account
    point = cs.add_metering_point(
        actor=None,
        customer=new,
        data={"usage_category": "residential", "voltage_level": "220V", "contract_capacity_kva": "6"},
    )
    assert point.pk and point.point_no not in set(
        type(point).objects.exclude(pk=point.pk).values_list("point_no", flat=True)
    )


def test_if_empty_does_nothing_the_second_time(db, capsys):
    from mmis.cli import cmd_demo
    from mmis.customers.models import Customer

    assert cmd_demo.run(["--customers", "40", "--seed", "3", "--if-empty", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "admin" in out and "Mmis@2026" in out
    assert Customer.objects.count() == 40
    assert cmd_demo.run(["--customers", "40", "--if-empty", "--quiet"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert Customer.objects.count() == 40
