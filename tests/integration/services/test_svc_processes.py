"""Every service process end to end (acceptance → archive → callback) on the engine: one
send-back on the way, an overdue alarm from an injected clock, and the change it makes to the
customer file, metering and contract, all in one transaction with the last step."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from svc_driver import T0, add_staff, drive, meters, open_tasks

from mmis.assets import services as asset_services
from mmis.assets.models import InstrumentTransformer, Meter
from mmis.common.errors import InvalidInput
from mmis.customers import rules as crules
from mmis.customers import services as cs
from mmis.customers.models import Customer, MeteringPoint, SupplyContract
from mmis.readings.models import MeterChange, MeterReading
from mmis.services import services as svc
from mmis.services.definitions import DEFINITIONS
from mmis.services.models import ServiceChange
from mmis.workflow import services as wf
from mmis.workflow.models import Alarm, Event, ProcessInstance


def rid(first17: str) -> str:
    return first17 + crules.resident_id_check_digit(first17)


def point(u, customer, meter_no, **data):
    p = cs.add_metering_point(actor=u.users["admin"], customer=customer, data=data)
    m = asset_services.register_meter(
        actor=u.users["admin"], org=u.counties[0], asset_no=meter_no, kind="three_phase_4w"
    )
    asset_services.install(actor=u.users["admin"], point=p, meter=m, transformers=[], on=date(2025, 3, 1))
    return MeteringPoint.objects.get(pk=p.pk)


def contract(u, customer, ctype, kva):
    c = cs.create_contract(
        actor=u.users["admin"],
        customer=customer,
        data={"contract_type": ctype, "capacity_kva": kva, "expires_on": "2030-03-01"},
    )
    c = cs.change_contract_state(actor=u.users["admin"], contract=c, transition="sign", on=date(2025, 3, 1))
    return cs.change_contract_state(
        actor=u.users["admin"], contract=c, transition="make_effective", on=date(2025, 3, 1)
    )


def org_customer(u, name):
    return cs.create_customer(
        actor=u.users["admin"],
        org=u.stations[0],
        opened_on=date(2025, 3, 1),
        data={
            "kind": "organisation",
            "name": name,
            "id_type": "credit_code",
            "id_number": "91350100M000100Y43",
            "phone": "05718888888",
            "address": {"region": "示范省第1市甲县", "detail": "工业园区1号"},
        },
    )


@pytest.fixture
def filed(utility):
    u = add_staff(utility)
    wf_defs = svc.install_definitions(
        actor=u.users["admin"],
        province=u.province,
        at=T0 - timedelta(days=60),
        effective_from=date(2026, 1, 1),
    )
    assert len(wf_defs) == len(DEFINITIONS)
    a = u.customers["a"]
    point(
        u,
        a,
        "R000001",
        usage_category="residential",
        voltage_level="220V",
        contract_capacity_kva="8",
        tier_persons=3,
    )
    contract(u, a, "residential", "8")
    c = org_customer(u, "甲县宏远铸造有限公司")
    point(
        u,
        c,
        "H000001",
        usage_category="large_industry",
        voltage_level="10kV",
        contract_capacity_kva="800",
        basic_charge_mode="capacity",
        pf_standard="0.90",
    )
    point(u, c, "H000002", usage_category="general_ci", voltage_level="380V", contract_capacity_kva="50")
    contract(u, c, "high_voltage", "850")
    d = org_customer(u, "甲县宏远铸造有限公司二车间")
    point(u, d, "D000001", usage_category="general_ci", voltage_level="380V", contract_capacity_kva="30")
    contract(u, d, "low_voltage", "30")
    u.customers["c"], u.customers["d"] = c, d
    u.meters = meters(u, 3)
    return u


PARTY = {
    "customer_kind": "individual",
    "customer_name": "李娜",
    "id_type": "resident_id",
    "id_number": rid("11010519800101123"),
    "phone": "13812345678",
    "region": "示范省第1市甲县",
    "street": "城关镇",
    "detail": "幸福路8号",
}
ORG = {
    **PARTY,
    "customer_kind": "organisation",
    "customer_name": "甲县好再来餐饮有限公司",
    "id_type": "credit_code",
    "id_number": "91350100M000100Y43",
}


def install_form(u):
    return {"meter_asset_no": u.meters[0], "installed_on": "2026-11-30", "energised_on": "2026-11-30"}


def run(u, code, data, forms=None, *, org=None, send_back_at="survey", start=None):
    start = start or T0
    inst = svc.apply(actor=u.users["counter_a"], code=code, org=org, data=data, at=start)
    assert inst.definition.code == code and inst.state == "running"
    # nobody touches it for two working days: the acceptance step (1 working day) is overdue
    first = open_tasks(inst)[0]
    counts = wf.check_deadlines(now=first.due_at + timedelta(minutes=1))
    assert counts["overdue"] >= 1
    assert Alarm.objects.filter(task=first, kind="overdue").exists()
    done, _ = drive(
        u, inst, forms or {}, start=first.due_at + timedelta(minutes=2), send_back_at=send_back_at
    )
    assert inst.state == "completed", (done, [t.step_code for t in open_tasks(inst)])
    assert done[-1] == "callback" and f"<{send_back_at}" in done
    assert Event.objects.filter(instance=inst, action="sent_back").count() == 1
    return inst


def test_lv_residential_new_connection(filed):
    u = filed
    inst = run(
        u,
        "lv_residential_new",
        {**PARTY, "voltage_level": "220V", "capacity_kva": "8", "tier_persons": 4},
        {"install": install_form(u)},
        org=u.stations[0],
    )
    c = Customer.objects.get(customer_no=inst.data["customer_no"])
    assert c.name == "李娜" and c.org == u.stations[0] and c.opened_on == date(2026, 11, 30)
    p = c.metering_points.get()
    assert (p.usage_category, p.voltage_level, p.contract_capacity_kva, p.tier_persons) == (
        "residential",
        "220V",
        8,
        4,
    )
    assert p.energised_on == date(2026, 11, 30)
    assert Meter.objects.get(asset_no=u.meters[0]).metering_point == p
    # the initial registers (表码底数, 0 when left empty) are the first billable reading
    first = MeterReading.objects.get(metering_point=p)
    assert (first.reading_date, first.total, first.status) == (date(2026, 11, 30), 0, "valid")
    k = c.contracts.get()
    assert (k.contract_type, k.state, k.signed_on, k.expires_on) == (
        "residential",
        "effective",
        date(2026, 11, 24),
        date(2031, 11, 24),
    )
    assert inst.subject_id == str(c.pk)
    assert inst.definition.spec["time_limit"] == {"value": 5, "unit": "working_days"}


def test_lv_nonresidential_new_connection(filed):
    u = filed
    inst = run(
        u,
        "lv_nonresidential_new",
        {**ORG, "usage_category": "general_ci", "voltage_level": "380V", "capacity_kva": "50"},
        {"install": install_form(u)},
        org=u.stations[0],
    )
    p = MeteringPoint.objects.get(point_no=inst.data["point_no"])
    assert (p.usage_category, p.contract_capacity_kva) == ("general_ci", 50)
    assert SupplyContract.objects.get(contract_no=inst.data["contract_no"]).contract_type == "low_voltage"


@pytest.mark.parametrize("mode,limit", [("single", 22), ("dual", 32)])
def test_hv_new_connection_with_design_review_and_inspection(filed, mode, limit):
    u = filed
    data = {
        **ORG,
        "usage_category": "large_industry",
        "voltage_level": "10kV",
        "capacity_kva": "2000",
        "supply_mode": mode,
        "basic_charge_mode": "demand_contract",
        "contract_demand_kw": "1000",
        "pf_standard": "0.90",
    }
    inst = svc.apply(actor=u.users["counter_a"], code="hv_new", org=u.stations[0], data=data, at=T0)
    from mmis.common import calendar as cal

    assert inst.due_at == cal.add_working_days_at(T0, limit)
    done, _ = drive(u, inst, {"install": install_form(u)}, start=T0, send_back_at="design_review")
    assert inst.state == "completed"
    for step in ("plan", "design_review", "construction", "mid_inspection", "final_inspection"):
        assert step in done
    plan = inst.tasks.filter(step_code="plan").order_by("id").first()
    assert plan.due_at == cal.add_working_days_at(
        plan.created_at.astimezone(T0.tzinfo), 30 if mode == "dual" else 15
    )
    p = MeteringPoint.objects.get(point_no=inst.data["point_no"])
    assert (p.basic_charge_mode, p.contract_demand_kw, p.pf_standard) == ("demand_contract", 1000, "0.90")
    assert SupplyContract.objects.get(contract_no=inst.data["contract_no"]).contract_type == "high_voltage"
    # 60 working days of customer construction did not count against the commitment
    assert inst.on_time is True and inst.paused_seconds > 0


def test_temporary_supply_has_an_end_date(filed):
    u = filed
    inst = run(
        u,
        "temporary_supply",
        {
            **ORG,
            "usage_category": "general_ci",
            "voltage_level": "380V",
            "capacity_kva": "100",
            "purpose": "建筑施工",
            "supply_until": "2027-03-01",
        },
        {"install": install_form(u)},
        org=u.stations[0],
    )
    k = SupplyContract.objects.get(contract_no=inst.data["contract_no"])
    assert (k.contract_type, k.expires_on) == ("temporary", date(2027, 3, 1))


def _ct(u, asset_no, primary):
    return asset_services.register_transformer(
        actor=u.users["admin"],
        org=u.counties[0],
        asset_no=asset_no,
        kind="ct",
        primary=Decimal(primary),
        secondary=Decimal(5),
    )


def test_capacity_increase(filed):
    u = filed
    c = u.customers["c"]
    main = c.metering_points.get(role="main", usage_category="large_industry")
    main = asset_services.replace_transformers(
        actor=u.users["admin"], point=main, transformers=[_ct(u, "CT-OLD", 100)], on=date(2025, 3, 1)
    )
    assert main.multiplier == 20
    old_meter = main.meters.get(state="installed")
    inst = run(
        u,
        "capacity_increase",
        {"customer_no": c.customer_no, "point_no": main.point_no, "new_capacity_kva": "1250"},
        {
            "execute": {
                "meter_asset_no": u.meters[1],
                "end_reading": "1234.56",
                "initial_reading": "0.5",
                "installed_on": "2026-11-24",
                "done_on": "2026-11-24",
            }
        },
    )
    main.refresh_from_db()
    assert (main.contract_capacity_kva, main.operating_capacity_kva) == (1250, 1250)
    assert main.meters.get(state="installed").asset_no == u.meters[1]
    assert c.contracts.get(state="effective").capacity_kva == 1250
    # the CT stays on the point: a meter swap alone keeps the multiplier (it used to reset to 1)
    assert main.multiplier == 20
    change = MeterChange.objects.get(metering_point=main)
    assert (change.old_meter, change.new_meter.asset_no, change.work_order) == (old_meter, u.meters[1], inst)
    assert change.old_final == {"total": "1234.56"} and change.new_initial == {"total": "0.5"}
    assert (change.old_multiplier, change.new_multiplier, change.changed_on) == (20, 20, date(2026, 11, 24))


def test_capacity_increase_with_a_bigger_ct_changes_the_multiplier(filed):
    u = filed
    c = u.customers["c"]
    main = c.metering_points.get(role="main", usage_category="large_industry")
    main = asset_services.replace_transformers(
        actor=u.users["admin"], point=main, transformers=[_ct(u, "CT-OLD", 100)], on=date(2025, 3, 1)
    )
    _ct(u, "CT-NEW", 200)
    run(
        u,
        "capacity_increase",
        {"customer_no": c.customer_no, "point_no": main.point_no, "new_capacity_kva": "1250"},
        {"execute": {"ct_asset_no": "CT-NEW", "end_reading": "88.00", "done_on": "2026-11-24"}},
    )
    main.refresh_from_db()
    assert main.multiplier == 40
    assert {t.asset_no: t.state for t in InstrumentTransformer.objects.all()} == {
        "CT-OLD": "removed",
        "CT-NEW": "installed",
    }
    change = MeterChange.objects.get(metering_point=main)
    assert change.old_meter == change.new_meter and (change.old_multiplier, change.new_multiplier) == (20, 40)
    assert change.old_final == change.new_initial == {"total": "88.00"}


def test_capacity_increase_meter_swap_needs_the_old_meters_final_reading(filed):
    u = filed
    c = u.customers["c"]
    main = c.metering_points.get(role="main", usage_category="large_industry")
    inst = svc.apply(
        actor=u.users["counter_a"],
        code="capacity_increase",
        org=None,
        data={"customer_no": c.customer_no, "point_no": main.point_no, "new_capacity_kva": "1250"},
        at=T0,
    )
    with pytest.raises(InvalidInput) as e:
        drive(u, inst, {"execute": {"meter_asset_no": u.meters[1], "done_on": "2026-11-24"}}, start=T0)
    assert [x.path for x in e.value.errors] == ["form.end_reading"]
    main.refresh_from_db()
    assert main.contract_capacity_kva == 800 and main.meters.get(state="installed").asset_no == "H000001"
    assert not MeterChange.objects.exists()


def test_capacity_reduction_switches_to_single_part_and_is_restored(filed):
    u = filed
    c = u.customers["c"]
    main = c.metering_points.get(usage_category="large_industry")
    base = {"customer_no": c.customer_no, "point_no": main.point_no}
    run(
        u,
        "capacity_reduction",
        {**base, "reduced_kva": "630", "start_on": "2026-12-01"},
        {"execute": {"sealed": True}},
    )
    main.refresh_from_db()
    assert main.contract_capacity_kva == 170 and main.basic_charge_mode == ""  # below 315 kVA: single-part
    run(
        u,
        "capacity_reduction_restore",
        {**base, "restore_on": "2027-06-01"},
        {"execute": {"seal_removed": True}},
        start=T0 + timedelta(days=30),
    )
    main.refresh_from_db()
    assert main.contract_capacity_kva == 800
    assert ServiceChange.objects.get(kind="capacity_reduction").restored_on == date(2027, 6, 1)


def test_suspension_and_restoration(filed):
    u = filed
    c = u.customers["c"]
    main = c.metering_points.get(usage_category="large_industry")
    base = {"customer_no": c.customer_no, "point_no": main.point_no}
    run(
        u,
        "suspension",
        {**base, "suspended_kva": "800", "start_on": "2026-11-25", "end_on": "2026-12-31"},
        {"execute": {"sealed": True}},
    )
    main.refresh_from_db()
    assert (main.status, main.operating_capacity_kva, main.contract_capacity_kva) == ("suspended", 0, 800)
    run(
        u,
        "suspension_restore",
        {**base, "restore_on": "2026-12-20"},
        {"execute": {"seal_removed": True}},
        start=T0 + timedelta(days=20),
    )
    main.refresh_from_db()
    assert (main.status, main.operating_capacity_kva) == ("active", 800)


def test_suspension_rules_are_checked_at_acceptance(filed):
    u = filed
    c = u.customers["c"]
    with pytest.raises(svc.UnableToApply) as exc:
        svc.apply(
            actor=u.users["counter_a"],
            code="suspension",
            org=None,
            at=T0,
            data={
                "customer_no": c.customer_no,
                "suspended_kva": "900",
                "start_on": "2026-12-01",
                "end_on": "2026-12-10",
            },
        )
    paths = {e.path for e in exc.value.errors}
    assert paths == {"data.suspended_kva", "data.end_on"}
    assert not ProcessInstance.objects.exists()


@pytest.mark.parametrize(
    "code,data,check",
    [
        (
            "meter_relocation",
            {"new_location": "一楼东侧表箱"},
            lambda u, c: (
                ServiceChange.objects.get(kind="meter_relocation").after["location"] == "一楼东侧表箱"
            ),
        ),
        (
            "address_move",
            {"new_region": "示范省第1市甲县", "new_detail": "新华街1号"},
            lambda u, c: c.metering_points.get().address.full_text == "示范省第1市甲县新华街1号",
        ),
        (
            "name_change",
            {"new_name": "张伟伟"},
            lambda u, c: Customer.objects.get(pk=c.pk).name == "张伟伟" and c.accounts.get().name == "张伟伟",
        ),
        (
            "category_change",
            {"new_usage_category": "general_ci", "new_tariff_code": "GS1"},
            lambda u, c: c.metering_points.get().usage_category == "general_ci",
        ),
        (
            "voltage_change",
            {"new_voltage_level": "380V"},
            lambda u, c: c.metering_points.get().voltage_level == "380V",
        ),
    ],
)
def test_changes_of_a_residential_customer(filed, code, data, check):
    u = filed
    a = u.customers["a"]
    send_back = "approve" if code == "name_change" else "survey"
    run(u, code, {"customer_no": a.customer_no, **data}, send_back_at=send_back)
    assert check(u, a)


def test_transfer_of_ownership_renews_the_contract(filed):
    u = filed
    a = u.customers["a"]
    old = a.contracts.get()
    inst = run(
        u,
        "transfer",
        {
            "customer_no": a.customer_no,
            "new_customer_kind": "individual",
            "new_name": "王芳",
            "new_id_type": "resident_id",
            "new_id_number": rid("11010519900202234"),
            "new_phone": "13700001111",
            "tier_year": "restart",
        },
        send_back_at="approve",
    )
    a.refresh_from_db()
    old.refresh_from_db()
    assert a.name == "王芳" and a.id_number_mask.startswith("1101")
    assert old.state == "terminated"
    new = SupplyContract.objects.get(contract_no=inst.data["new_contracts"][0])
    assert new.state == "effective" and new.customer == a
    assert ServiceChange.objects.get(kind="transfer").after["tier_year"] == "restart"


def test_account_split_and_merge(filed):
    u = filed
    c, d = u.customers["c"], u.customers["d"]
    small = c.metering_points.get(usage_category="general_ci")
    inst = run(
        u,
        "account_split",
        {
            "customer_no": c.customer_no,
            "point_no": small.point_no,
            "new_customer_kind": "organisation",
            "new_name": "宏远铸造二分厂",
            "new_id_type": "credit_code",
            "new_id_number": "91350100M000100Y43",
            "new_phone": "05718888889",
        },
        send_back_at="approve",
    )
    small.refresh_from_db()
    new = Customer.objects.get(customer_no=inst.data["new_customer_no"])
    assert small.customer == new and small.account.customer == new
    run(
        u,
        "account_merge",
        {"customer_no": c.customer_no, "merged_customer_no": d.customer_no},
        send_back_at="approve",
    )
    d.refresh_from_db()
    assert d.status == "closed"
    assert MeteringPoint.objects.get(customer=c, usage_category="general_ci").account.customer == c


def test_account_closure_settles_then_closes(filed):
    u = filed
    d = u.customers["d"]
    run(u, "account_closure", {"customer_no": d.customer_no, "reason": "企业搬迁"}, send_back_at="survey")
    d.refresh_from_db()
    assert d.status == "closed" and d.closed_on is not None
    p = d.metering_points.get()
    assert p.status == "closed" and not p.meters.filter(state="installed").exists()
    assert d.contracts.get().state == "terminated"


def test_bad_applications_are_refused_before_any_work_order(filed):
    u = filed
    with pytest.raises(svc.UnableToApply) as exc:
        svc.apply(
            actor=u.users["counter_a"],
            code="lv_residential_new",
            org=u.stations[0],
            at=T0,
            data={**PARTY, "id_number": "110105194912310021", "voltage_level": "220V", "capacity_kva": "800"},
        )
    assert {e.path for e in exc.value.errors} == {"data.id_number", "data.capacity_kva"}
    with pytest.raises(svc.UnableToApply) as exc:
        svc.apply(actor=u.users["counter_a"], code="lv_residential_new", org=u.stations[0], at=T0, data={})
    assert "data.customer_name" in {e.path for e in exc.value.errors}
    with pytest.raises(svc.UnableToApply):
        svc.apply(
            actor=u.users["counter_a"],
            code="name_change",
            org=None,
            at=T0,
            data={"customer_no": "0000", "new_name": "x"},
        )
    assert not ProcessInstance.objects.exists()


def test_effect_refusal_keeps_the_task_open(filed):
    """A meter that is not in stock: the install step is refused with a reason, nothing written."""
    u = filed
    inst = svc.apply(
        actor=u.users["counter_a"],
        code="lv_residential_new",
        org=u.stations[0],
        at=T0,
        data={**PARTY, "voltage_level": "220V", "capacity_kva": "8"},
    )
    with pytest.raises(Exception, match="R000001"):
        drive(u, inst, {"install": {**install_form(u), "meter_asset_no": "R000001"}}, start=T0)
    [t] = open_tasks(inst)
    assert t.step_code == "install"
    assert not Customer.objects.filter(name="李娜").exists()


def test_closure_is_refused_while_money_is_owed(filed, monkeypatch):
    u = filed
    d = u.customers["d"]
    from mmis.services import effects as fx

    monkeypatch.setattr(fx, "ledger_balance", lambda customer, on: Decimal("123.45"))
    inst = svc.apply(
        actor=u.users["counter_a"],
        code="account_closure",
        org=None,
        at=T0,
        data={"customer_no": d.customer_no, "reason": "搬迁"},
    )
    with pytest.raises(fx.UnableToApplyChange, match=r"owes 123\.45"):
        drive(u, inst, {}, start=T0)
    d.refresh_from_db()
    assert d.status == "active"
    assert open_tasks(inst)[0].step_code == "execute"


def test_restoration_after_two_years_is_a_new_application(filed):
    u = filed
    c = u.customers["c"]
    main = c.metering_points.get(usage_category="large_industry")
    base = {"customer_no": c.customer_no, "point_no": main.point_no}
    run(
        u,
        "capacity_reduction",
        {**base, "reduced_kva": "300", "start_on": "2026-12-01"},
        {"execute": {"sealed": True}},
    )
    inst = svc.apply(
        actor=u.users["counter_a"],
        code="capacity_reduction_restore",
        org=None,
        at=T0 + timedelta(days=10),
        data={**base, "restore_on": "2028-12-02"},
    )
    with pytest.raises(InvalidInput, match="new application"):
        drive(u, inst, {"execute": {"seal_removed": True}}, start=T0 + timedelta(days=10))
    main.refresh_from_db()
    assert main.contract_capacity_kva == 500  # still reduced; the two-part mode stays (500 ≥ 315)
    assert main.basic_charge_mode == "capacity"


def test_suspension_is_capped_at_six_months_a_year(filed):
    u = filed
    c = u.customers["c"]
    main = c.metering_points.get(usage_category="large_industry")
    base = {"customer_no": c.customer_no, "point_no": main.point_no}
    ServiceChange.objects.create(
        org=c.org,
        kind="suspension",
        customer=c,
        point=main,
        kva=Decimal(400),
        start_on=date(2026, 2, 1),
        end_on=date(2026, 7, 1),
        restored_on=date(2026, 7, 1),
    )
    with pytest.raises(svc.UnableToApply) as exc:
        svc.apply(
            actor=u.users["counter_a"],
            code="suspension",
            org=None,
            at=T0,
            data={**base, "suspended_kva": "400", "start_on": "2026-11-25", "end_on": "2026-12-31"},
        )
    assert "150 days already suspended in 2026" in str(exc.value)


def test_an_order_outside_the_scope_is_refused(filed):
    u = filed
    with pytest.raises(svc.UnableToApply, match="no customer"):
        svc.apply(
            actor=u.users["counter_b"],
            code="name_change",
            org=None,
            at=T0,
            data={"customer_no": u.customers["a"].customer_no, "new_name": "x"},
        )
    # the same kind of order cannot be opened twice for one customer
    svc.apply(
        actor=u.users["counter_a"],
        code="name_change",
        org=None,
        at=T0,
        data={"customer_no": u.customers["a"].customer_no, "new_name": "x"},
    )
    with pytest.raises(svc.UnableToApply, match="still open"):
        svc.apply(
            actor=u.users["counter_a"],
            code="name_change",
            org=None,
            at=T0,
            data={"customer_no": u.customers["a"].customer_no, "new_name": "y"},
        )


def test_archiving_a_capacity_increase_releases_the_reading_it_held(filed):
    """VEE holds a reading whose period holds the meter swap while the order is not archived
    (file change without a closed work order); the archive step validates it again."""
    from svc_driver import BASE_FORMS, worker

    from mmis.readings import services as rs
    from mmis.readings.models import ReadingException

    u = filed
    c = u.customers["c"]
    main = c.metering_points.get(role="main", usage_category="large_industry")
    admin = u.users["admin"]
    rs.record_reading(
        actor=admin, point=main, reading_date=date(2026, 11, 1), values={"total": "1000"}, at=T0
    )
    inst = svc.apply(
        actor=u.users["counter_a"],
        code="capacity_increase",
        org=None,
        data={"customer_no": c.customer_no, "point_no": main.point_no, "new_capacity_kva": "1250"},
        at=T0,
    )
    forms = {
        "execute": {
            "meter_asset_no": u.meters[1],
            "end_reading": "1200",
            "initial_reading": "0",
            "done_on": "2026-11-23",
        }
    }
    clock = T0
    while (t := open_tasks(inst)[0]).step_code != "archive":
        clock += timedelta(minutes=30)
        user = t.assignee or worker(u, t)
        if t.state == "open":
            wf.claim_task(actor=user, task_id=t.pk, at=clock)
        form = {**BASE_FORMS.get(t.step_code, {}), **forms.get(t.step_code, {})}
        wf.complete_task(actor=user, task_id=t.pk, form=form, at=clock, step_code=t.step_code)
    assert MeterChange.objects.filter(work_order=inst).exists()
    reading = rs.record_reading(
        actor=admin, point=main, reading_date=date(2026, 11, 24), values={"total": "50"}, at=clock
    )
    assert reading.status == "exception"
    held = ReadingException.objects.get(reading=reading, rule="file_change", state="open")
    archive = open_tasks(inst)[0]
    user = archive.assignee or worker(u, archive)
    wf.claim_task(actor=user, task_id=archive.pk, at=clock)
    wf.complete_task(actor=user, task_id=archive.pk, form={}, at=clock, step_code="archive")
    reading.refresh_from_db()
    held.refresh_from_db()
    assert reading.status == "valid" and (held.state, held.decision) == ("closed", "revalidate")
