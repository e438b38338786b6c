from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from mmis.assets import services as asset_services
from mmis.common.errors import InvalidInput, NotFound
from mmis.customers import history, queries, services
from mmis.customers.crypto import cipher
from mmis.customers.models import Customer, MeteringPoint, SupplyContract
from mmis.org.models import AuditLog

pytestmark = pytest.mark.django_db

GOOD = {
    "kind": "individual",
    "name": "李娜",
    "id_type": "resident_id",
    "id_number": "11010519491231002X",
    "phone": "13800138000",
    "address": {"region": "示范省第1市甲县", "detail": "解放路1号"},
}


def test_identity_is_encrypted_at_rest_masked_and_searchable(utility):
    c = services.create_customer(
        actor=utility.users["counter_a"], org=utility.stations[0], data=GOOD, opened_on=date(2026, 1, 1)
    )
    raw = Customer.objects.values("id_number_enc", "phone_enc", "id_number_mask", "phone_mask").get(pk=c.pk)
    assert "11010519491231002X" not in raw["id_number_enc"]
    assert cipher().decrypt(raw["id_number_enc"]) == "11010519491231002X"
    assert raw["phone_mask"] == "138****8000"
    hits = queries.search(utility.users["counter_a"], "13800138000")
    assert [h.customer.pk for h in hits] == [c.pk] and hits[0].matched == "phone"
    assert any(
        h.customer.pk == c.pk for h in queries.search(utility.users["counter_a"], "11010519491231002x")
    )


def test_bad_input_names_every_field_and_writes_nothing(utility):
    before = Customer.objects.count()
    data = {
        **GOOD,
        "id_number": "110105194912310021",
        "phone": "123",
        "address": {"region": "", "detail": "x"},
    }
    with pytest.raises(InvalidInput) as exc:
        services.create_customer(actor=None, org=utility.stations[0], data=data, opened_on=date(2026, 1, 1))
    paths = {e.path: e.message for e in exc.value.errors}
    assert paths["id_number"] == "wrong check digit: the last character should be X, not 1"
    assert "phone" in paths and "address.region" in paths
    assert Customer.objects.count() == before


def test_duplicate_customer_number_is_refused(utility):
    existing = utility.customers["a"].customer_no
    with pytest.raises(InvalidInput) as exc:
        services.create_customer(
            actor=None,
            org=utility.stations[0],
            data={**GOOD, "customer_no": existing},
            opened_on=date(2026, 1, 1),
        )
    assert exc.value.errors[0].path == "customer_no"


def test_search_by_name_prefix_substring_and_address(utility):
    admin = utility.users["admin"]
    a, b = utility.customers["a"], utility.customers["b"]
    assert [(h.customer.pk, h.matched) for h in queries.search(admin, "张")] == [(a.pk, "name")]
    assert [h.customer.pk for h in queries.search(admin, "机械有限")] == [b.pk]
    assert queries.search(admin, "机械") == []  # 2-character substrings: prefix only (index-served)
    hits = queries.search(admin, "人民路12号")
    assert [(h.customer.pk, h.matched) for h in hits] == [(a.pk, "address")]
    assert hits[0].address.endswith("人民路12号")


def test_numbers_run_on(utility):
    a, b = utility.customers["a"], utility.customers["b"]
    assert int(b.customer_no) == int(a.customer_no) + 1


def test_data_scope_hides_other_county(utility):
    a, b = utility.customers["a"], utility.customers["b"]
    counter_a = utility.users["counter_a"]
    assert list(queries.customers(counter_a)) == [a]
    with pytest.raises(NotFound):
        queries.get_customer(counter_a, b.pk)
    assert queries.search(counter_a, b.customer_no) == []
    assert queries.search(counter_a, "宏达机械") == []
    assert [h.customer.pk for h in queries.search(utility.users["admin"], "宏达机械")] == [b.pk]
    # the city manager sees both counties of the city; the admin sees everything
    assert {c.pk for c in queries.customers(utility.users["manager"])} == {a.pk, b.pk}
    assert queries.customers(utility.users["admin"]).count() == 2


def test_update_keeps_history_audit_and_as_of(utility):
    a = utility.customers["a"]
    before_change = timezone.now()
    services.update_customer(
        actor=utility.users["counter_a"],
        customer=a,
        changes={"name": "张伟强"},
        reason="更名: 身份证姓名更正",
    )
    a.refresh_from_db()
    assert a.name == "张伟强"
    log = AuditLog.objects.filter(action="customer.update", target_id=str(a.pk)).get()
    assert log.before == {"name": "张伟"} and log.after == {"name": "张伟强"}
    assert log.actor == utility.users["counter_a"] and log.reason.startswith("更名")
    past = queries.customer_file(utility.users["counter_a"], a.pk, as_of=before_change)
    assert past.customer.name == "张伟"
    entries = history.timeline(a)
    assert any(("户名", "张伟", "张伟强") in e.changes for e in entries)


def test_as_of_before_the_customer_existed_is_not_found(utility):
    with pytest.raises(NotFound):
        queries.customer_file(
            utility.users["admin"], utility.customers["a"].pk, as_of=timezone.now() - timedelta(days=3650)
        )


def test_install_meter_sets_multiplier(utility):
    admin = utility.users["admin"]
    c = utility.customers["b"]
    point = services.add_metering_point(
        actor=admin,
        customer=c,
        data={
            "usage_category": "large_industry",
            "voltage_level": "10kV",
            "contract_capacity_kva": "1000",
            "basic_charge_mode": "capacity",
            "pf_standard": "0.90",
        },
    )
    meter = asset_services.register_meter(
        actor=admin, org=c.org, asset_no="3300000000001", kind="three_phase_3w"
    )
    ct = asset_services.register_transformer(
        actor=admin, org=c.org, asset_no="CT1", kind="ct", primary=Decimal(200), secondary=Decimal(5)
    )
    pt = asset_services.register_transformer(
        actor=admin, org=c.org, asset_no="PT1", kind="pt", primary=Decimal(10000), secondary=Decimal(100)
    )
    point = asset_services.install(
        actor=admin, point=point, meter=meter, transformers=[ct, pt], on=date(2026, 3, 1)
    )
    assert MeteringPoint.objects.get(pk=point.pk).multiplier == Decimal(4000)
    meter2 = asset_services.register_meter(
        actor=admin, org=c.org, asset_no="3300000000002", kind="three_phase_3w"
    )
    with pytest.raises(InvalidInput) as exc:
        asset_services.install(actor=admin, point=point, meter=meter2, transformers=[], on=date(2026, 3, 2))
    assert exc.value.errors[0].path == "metering_point"
    assert any(h.matched == "meter" for h in queries.search(admin, "3300000000001"))


def test_contract_demand_below_40_percent_is_refused(utility):
    with pytest.raises(InvalidInput) as exc:
        services.add_metering_point(
            actor=None,
            customer=utility.customers["b"],
            data={
                "usage_category": "large_industry",
                "voltage_level": "10kV",
                "contract_capacity_kva": "1000",
                "basic_charge_mode": "demand_contract",
                "contract_demand_kw": "300",
            },
        )
    assert exc.value.errors[0].path == "contract_demand_kw"


def test_contract_state_machine(utility):
    c = utility.customers["b"]
    k = services.create_contract(
        actor=None,
        customer=c,
        data={"contract_type": "low_voltage", "capacity_kva": "50", "expires_on": "2026-12-31"},
    )
    with pytest.raises(InvalidInput):
        services.change_contract_state(
            actor=None, contract=k, transition="make_effective", on=date(2026, 1, 1)
        )
    k = services.change_contract_state(actor=None, contract=k, transition="sign", on=date(2026, 1, 1))
    k = services.change_contract_state(
        actor=None, contract=k, transition="make_effective", on=date(2026, 1, 2)
    )
    assert k.state == SupplyContract.State.EFFECTIVE
    assert services.contract_display_state(k, today=date(2026, 11, 23)) == "expiring"
    assert services.contract_display_state(k, today=date(2026, 6, 1)) == "effective"
    k = services.change_contract_state(actor=None, contract=k, transition="terminate", on=date(2026, 6, 1))
    with pytest.raises(InvalidInput):
        services.change_contract_state(actor=None, contract=k, transition="sign", on=date(2026, 6, 2))
