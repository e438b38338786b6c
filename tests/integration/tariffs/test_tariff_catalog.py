"""The catalog against the database: create/copy/publish/compare, immutability, overlap, audit and
history, inheritance and local overrides, tariff_for / tariffs_in_force, import/export round trip."""

from __future__ import annotations

import copy
from datetime import date, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from mmis.cli.demo.step_tariffs import demo_catalog
from mmis.common.errors import InvalidInput, NotFound
from mmis.org import services as org_services
from mmis.org.models import AuditLog
from mmis.tariffs import queries, rules, services
from mmis.tariffs.models import Tariff, TariffVersion

AT = timezone.make_aware(datetime(2026, 1, 5, 10, 0))


def _catalog(u):
    return services.import_catalog(actor=u.users["admin"], payload=demo_catalog(u.province.code), at=AT)


def _version_data(code: str, i: int = 0) -> dict:
    t = next(t for t in demo_catalog("37")["tariffs"] if t["code"] == code)
    return copy.deepcopy(t["versions"][i])


@pytest.fixture
def catalog(utility):
    _catalog(utility)
    return utility


def test_demo_catalog_loads_and_resolves(catalog):
    u = catalog
    assert Tariff.objects.count() == 6
    assert TariffVersion.objects.filter(state="published").count() == 11
    station = u.stations[0]
    r = queries.tariff_for(code="GCI-TOU", org=station, on=date(2025, 6, 1))
    assert r.version_label == "2025年1月" and r.effective_to == date(2026, 1, 1)
    assert r.tariff.components[0].price == Decimal("0.4012")
    assert r.calendar.period_at(month=8, hour=16) == "sharp"
    r2 = queries.tariff_for(code="GCI-TOU", org=station, on=date(2026, 1, 1))
    assert r2.tariff.components[0].price == Decimal("0.3876") and r2.effective_to is None
    with pytest.raises(NotFound):
        queries.tariff_for(code="GCI-TOU", org=station, on=date(2024, 12, 31))
    with pytest.raises(NotFound):
        queries.tariff_for(code="NOPE", org=station, on=date(2026, 1, 1))
    all_codes = queries.tariffs_in_force(org=station, on=date(2026, 10, 1))
    assert set(all_codes) == {"RES-TIER", "RES-TIER-Y", "GCI-FLAT", "GCI-TOU", "LI-2P", "AGR"}
    assert all_codes["RES-TIER"].version_label == "2026年7月"
    li = all_codes["LI-2P"].for_point(basic_mode="capacity", capacity_kva=Decimal(1000))
    assert li.basic.price == Decimal(25) and li.basic.kva == Decimal(1000)


def test_import_is_idempotent(catalog):
    again = _catalog(catalog)
    assert again.as_dict() == {"tariffs_created": 0, "versions_created": 0, "versions_unchanged": 11}
    assert TariffVersion.objects.count() == 11


def test_export_import_round_trip(catalog, django_db_blocker):
    u = catalog
    exported = services.export_catalog(list(Tariff.objects.order_by("code")))
    # wipe and re-import into a fresh database state
    TariffVersion.objects.all().delete()
    Tariff.objects.all().delete()
    rep = services.import_catalog(actor=u.users["admin"], payload=exported, at=AT)
    assert rep.tariffs_created == 6 and rep.versions_created == 11
    assert services.export_catalog(list(Tariff.objects.order_by("code"))) == exported


def test_copy_edit_publish_and_immutability(catalog):
    u = catalog
    admin = u.users["admin"]
    t = Tariff.objects.get(code="RES-TIER")
    base = queries.current_version(t, on=date(2026, 10, 1))
    v = services.create_version(
        actor=admin,
        tariff=t,
        copy_from=base,
        data={
            "label": "2027版",
            "effective_from": "2027-01-01",
            "pricing": {
                **base.pricing,
                "energy": {
                    **base.pricing["energy"],
                    "tiers": [
                        {"up_to": "210", "price": "0.5469"},
                        {"up_to": "400", "price": "0.5969"},
                        {"up_to": None, "price": "0.8969"},
                    ],
                },
            },
        },
        at=AT,
    )
    assert v.state == "draft" and v.based_on == base
    assert v.basic_prices == {} and v.pricing["funds"] == base.pricing["funds"]
    # a draft is not in force
    assert queries.tariff_for(code="RES-TIER", org=u.stations[0], on=date(2027, 2, 1)).version_id == base.pk
    v = services.update_version(actor=admin, version=v, data={"note": "第三档上调0.05"}, at=AT)
    services.publish_version(actor=admin, version=v, at=AT)
    r = queries.tariff_for(code="RES-TIER", org=u.stations[0], on=date(2027, 2, 1))
    assert r.version_id == v.pk and r.tariff.energy.tiers[2].price == Decimal("0.8969")
    with pytest.raises(services.UnableToUpdateVersion) as exc:
        services.update_version(actor=admin, version=v, data={"note": "x"}, at=AT)
    assert exc.value.errors[0].path == "state"
    with pytest.raises(services.UnableToPublishVersion):
        services.publish_version(actor=admin, version=v, at=AT)
    # compare shows the changed price
    diffs = {d.path: d for d in rules.compare(base.data(), v.data())}
    assert diffs["pricing.energy.tiers[2].price"].right == "0.8969"
    # audit trail: create, update, publish
    actions = list(queries.history(t).values_list("action", flat=True))
    assert actions[:3] == ["tariff.version.publish", "tariff.version.update", "tariff.version.create"]
    log = AuditLog.objects.filter(action="tariff.version.update").get()
    assert log.after == {"note": "第三档上调0.05"} and log.actor == admin and log.org == u.province


def test_overlap_and_bad_input_save_nothing(catalog):
    u = catalog
    admin = u.users["admin"]
    t = Tariff.objects.get(code="GCI-TOU")
    count = TariffVersion.objects.count()
    logs = AuditLog.objects.count()
    data = _version_data("GCI-TOU", 1)
    data["effective_from"] = "2025-06-01"  # inside published history
    with pytest.raises(services.UnableToCreateVersion) as exc:
        services.create_version(actor=admin, tariff=t, data=data, at=AT)
    assert (
        "overlaps published version 2026年1月"
        in {e.path: e.message for e in exc.value.errors}["effective_from"]
    )
    data["effective_from"] = "2026-01-01"  # duplicate date
    with pytest.raises(services.UnableToCreateVersion):
        services.create_version(actor=admin, tariff=t, data=data, at=AT)
    data = _version_data("GCI-TOU", 1)
    data["effective_from"] = "2027-01-01"
    data["pricing"]["energy"]["prices"]["peak"] = "-1"
    data["pricing"]["power_factor"] = {"standard": "0.70"}
    with pytest.raises(InvalidInput) as exc:
        services.create_version(actor=admin, tariff=t, data=data, at=AT)
    paths = {e.path for e in exc.value.errors}
    assert {"pricing.energy.prices.peak", "pricing.power_factor.standard"} <= paths
    assert TariffVersion.objects.count() == count and AuditLog.objects.count() == logs


def test_two_drafts_cannot_share_a_date_and_publish_rechecks(catalog):
    u = catalog
    admin = u.users["admin"]
    t = Tariff.objects.get(code="AGR")
    a = services.create_version(
        actor=admin,
        tariff=t,
        data={**_version_data("AGR"), "effective_from": "2027-01-01", "label": "A"},
        at=AT,
    )
    b = services.create_version(
        actor=admin,
        tariff=t,
        data={**_version_data("AGR"), "effective_from": "2026-12-01", "label": "B"},
        at=AT,
    )
    with pytest.raises(services.UnableToCreateVersion):
        services.create_version(
            actor=admin, tariff=t, data={**_version_data("AGR"), "effective_from": "2027-01-01"}, at=AT
        )
    services.publish_version(actor=admin, version=a, at=AT)
    # B now starts before the latest published version: publishing it would rewrite history
    with pytest.raises(services.UnableToPublishVersion) as exc:
        services.publish_version(actor=admin, version=b, at=AT)
    assert exc.value.errors[0].path == "effective_from"
    services.discard_version(actor=admin, version=b, at=AT)
    assert not TariffVersion.objects.filter(pk=b.pk).exists()


def test_only_provincial_publishers_change_province_tariffs(catalog):
    u = catalog
    t = Tariff.objects.get(code="AGR")
    data = {**_version_data("AGR"), "effective_from": "2027-01-01"}
    for name in ("manager", "counter_a"):
        with pytest.raises(services.NotAllowed):
            services.create_version(actor=u.users[name], tariff=t, data=data, at=AT)
    # everyone reads
    assert queries.visible_tariffs(u.users["counter_a"]).count() == 6
    assert queries.get_tariff(u.users["counter_b"], t.pk) == t


def test_local_override_needs_the_province_to_allow_it(catalog):
    u = catalog
    city = u.cities[0]
    city_admin = org_services.create_user(
        username="city_admin",
        password="Mmis@2026-test",
        org=city,
        roles=["administrator"],
        check_password=False,
    )
    payload = {
        "code": "AGR",
        "name": "农业生产电价(第1市)",
        "usage_category": "agricultural",
        "version": {**_version_data("AGR"), "effective_from": "2026-03-01"},
        "publish": True,
    }
    payload["version"]["pricing"]["energy"]["price"] = "0.4500"
    with pytest.raises(services.UnableToCreateTariff) as exc:
        services.create_tariff(actor=city_admin, org=city, data=payload, at=AT)
    assert "does not allow local overrides" in exc.value.errors[0].message
    with pytest.raises(services.UnableToCreateTariff) as exc:
        services.create_tariff(actor=city_admin, org=city, data={**payload, "code": "NEW-1"}, at=AT)
    assert exc.value.errors[0].path == "org"
    u.province.allows_local_override = True
    u.province.save()
    local = services.create_tariff(actor=city_admin, org=city, data=payload, at=AT)
    assert local.org == city
    in_city = queries.tariff_for(code="AGR", org=u.stations[0], on=date(2026, 4, 1))
    assert in_city.org_id == city.pk and in_city.tariff.energy.price == Decimal("0.4500")
    # before the override starts, the province's version is in force
    assert queries.tariff_for(code="AGR", org=u.stations[0], on=date(2026, 2, 1)).org_id == u.province.pk
    # the other city keeps the province's
    assert queries.tariff_for(code="AGR", org=u.stations[2], on=date(2026, 4, 1)).org_id == u.province.pk
    assert queries.tariffs_in_force(org=u.stations[0], on=date(2026, 4, 1))["AGR"].org_id == city.pk
    # the province withdraws the permission: overrides stop applying
    u.province.allows_local_override = False
    u.province.save()
    assert queries.tariff_for(code="AGR", org=u.stations[0], on=date(2026, 4, 1)).org_id == u.province.pk
    assert list(queries.overrides_of(Tariff.objects.get(org=u.province, code="AGR"))) == [local]
    assert queries.parent_tariff(local).org == u.province


def test_import_errors_are_all_or_nothing(utility):
    u = utility
    payload = demo_catalog(u.province.code)
    payload["tariffs"][5]["versions"][0]["pricing"]["energy"]["price"] = "-0.4"
    payload["tariffs"][0]["versions"][1]["effective_from"] = "2025-01-01"
    with pytest.raises(services.UnableToImportCatalog) as exc:
        services.import_catalog(actor=u.users["admin"], payload=payload, at=AT)
    paths = {e.path for e in exc.value.errors}
    assert "tariffs[5].versions[0].pricing.energy.price" in paths
    assert "tariffs[0].versions[1].effective_from" in paths
    assert Tariff.objects.count() == 0 and TariffVersion.objects.count() == 0
    with pytest.raises(services.UnableToImportCatalog):
        services.import_catalog(actor=u.users["counter_a"], payload=demo_catalog(u.province.code), at=AT)
    assert Tariff.objects.count() == 0
