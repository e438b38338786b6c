"""Step: the org tree (province → cities → counties → stations, and a service hall per county)."""

from __future__ import annotations

import math

import numpy as np

from mmis.cli.demo import geo
from mmis.cli.demo.context import DemoContext, StationInfo


def plan_sizes(customers: int) -> tuple[int, int, int]:
    """(cities, counties, stations) for a number of customers: ~1 station per 2,000 customers."""
    stations = max(12, math.ceil(customers / 2000))
    counties = min(sum(len(c.counties) for c in geo.CITIES), max(4, math.ceil(stations / 6)))
    cities = min(len(geo.CITIES), max(2, math.ceil(counties / 8)))
    return cities, counties, stations


def build_orgs(ctx: DemoContext) -> None:
    from mmis.org import services as org_services
    from mmis.org.models import Org

    org_services.ensure_roles()
    existing = Org.objects.filter(code=geo.PROVINCE_CODE).first()
    if existing is not None:
        _load_existing(ctx, existing)
        return
    n_cities, n_counties, n_stations = plan_sizes(ctx.customers)
    rng = np.random.default_rng([ctx.seed, 1])
    mk = org_services.create_org
    prov = mk(parent=None, code=geo.PROVINCE_CODE, name=geo.PROVINCE_NAME, level=Org.Level.PROVINCE)
    ctx.province = prov
    cities = [geo.CITIES[i] for i in range(n_cities)]
    city_orgs = [mk(parent=prov, code=c.code, name=f"{c.name}供电公司", level=Org.Level.CITY) for c in cities]
    ctx.cities = city_orgs
    # counties round-robin over the cities, stations round-robin over the counties
    county_slots = [(k % n_cities, k // n_cities) for k in range(n_counties)]
    county_slots.sort()
    per_county = [
        n_stations // n_counties + (1 if k < n_stations % n_counties else 0) for k in range(n_counties)
    ]
    counted = 0
    for (ci, kj), count in zip(county_slots, per_county, strict=True):
        city = cities[ci]
        region_code, county_name = city.counties[kj]
        county = mk(
            parent=city_orgs[ci],
            code=region_code,
            name=f"{city.name}市{county_name}供电公司",
            level=Org.Level.COUNTY,
        )
        ctx.counties.append(county)
        urban = county_name.endswith("区")
        stems = list(rng.permutation(len(geo.TOWN_STEMS))[:count])
        for j in range(count):
            stem = "城关" if j == 0 and not urban else geo.TOWN_STEMS[stems[j]]
            station = mk(
                parent=county,
                code=f"{region_code}{j + 1:02d}",
                name=f"{county_name}{stem}供电所",
                level=Org.Level.STATION,
            )
            ctx.stations.append(_info(station, county, ci, kj, stem))
            counted += 1
        hall = mk(
            parent=county,
            code=f"{region_code}91",
            name=f"{county_name}供电营业厅",
            level=Org.Level.SERVICE_HALL,
        )
        ctx.halls.append(hall)
    ctx.report("orgs").rows["org_org"] = 1 + len(city_orgs) + len(ctx.counties) + counted + len(ctx.halls)


def _info(station, county, ci: int, kj: int, stem: str) -> StationInfo:
    city = geo.CITIES[ci]
    region_code, county_name = city.counties[kj]
    urban = county_name.endswith("区")
    street = f"{stem}街道" if urban else (f"{stem}镇" if not stem.endswith("镇") else stem)
    return StationInfo(
        org=station,
        county=county,
        city_index=ci,
        county_index=kj,
        region_code=region_code,
        region=f"{geo.PROVINCE_REGION}{city.name}市{county_name}",
        street=street,
        stem=stem,
        urban=urban,
    )


def _load_existing(ctx: DemoContext, prov) -> None:
    """A demo tree is already there (demo run again without --if-empty): add customers to it."""
    from mmis.org.models import Org

    ctx.province = prov
    nodes = list(Org.objects.filter(path__startswith=prov.path).order_by("path"))
    ctx.cities = [o for o in nodes if o.level == Org.Level.CITY]
    ctx.counties = [o for o in nodes if o.level == Org.Level.COUNTY]
    ctx.halls = [o for o in nodes if o.level == Org.Level.SERVICE_HALL]
    by_path = {o.path: o for o in nodes}
    index = {
        cty.counties[k][0]: (ci, k) for ci, cty in enumerate(geo.CITIES) for k in range(len(cty.counties))
    }
    for o in nodes:
        if o.level != Org.Level.STATION:
            continue
        county = by_path[o.path[: -Org.steplen]]
        ci, kj = index.get(county.code, (0, 0))
        county_name = geo.CITIES[ci].counties[kj][1]
        stem = o.name.removeprefix(county_name).removesuffix("供电所") or "城关"
        ctx.stations.append(_info(o, county, ci, kj, stem))
