"""Reads of the tariff catalog. The public API for billing and the other apps:

- `tariff_for(*, code, org, on) -> ResolvedTariff` (raises `NotFound` when none is in force)
- `tariffs_in_force(*, org, on) -> dict[str, ResolvedTariff]` (every code, one query)

Resolution: among the tariffs of that code published by the org itself or any org above it, the
nearest org's published version in force on the date wins; a tariff below the province counts only
while the province allows local overrides (`Org.allows_local_override`).

The pages and the API read through `visible_tariffs(user)`: everyone reads the tariffs published
above and inside their data scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet

from mmis.common.errors import NotFound
from mmis.org.models import AuditLog, Org, User
from mmis.org.scope import DataScope
from mmis.rating.tariff import Tariff as RatingTariff
from mmis.rating.tariff import parse_tariff
from mmis.tariffs import rules
from mmis.tariffs.models import Tariff, TariffVersion

__all__ = [
    "NotFound",
    "ResolvedTariff",
    "get_tariff",
    "get_version",
    "tariff_for",
    "tariffs_in_force",
    "visible_tariffs",
]


@dataclass(frozen=True)
class ResolvedTariff:
    """The version of a tariff in force for an org on a date, parsed and ready for the engine."""

    version_id: int
    tariff_id: int
    code: str
    name: str
    org_id: int  # the publishing org (province, or the lower org of a local override)
    usage_category: str
    voltage_level: str
    version_label: str
    effective_from: date
    effective_to: date | None  # exclusive; None while no later version is published
    tariff: RatingTariff
    calendar: rules.Calendar | None
    tier_year_start_month: int = 1
    basic_prices: dict[str, Decimal] = field(default_factory=dict)

    def for_point(
        self,
        *,
        basic_mode: str | None = None,
        capacity_kva: Decimal | None = None,
        contract_demand_kw: Decimal | None = None,
        pf_standard: str | None = None,
    ) -> RatingTariff:
        """This tariff applied to one metering point: its basic charge mode with its capacity or
        contract demand (price from the version's basic prices), and its PF standard ("" = not
        assessed, None = the version's default)."""
        return rules.tariff_for_point(
            pricing=self.tariff,
            basic_prices=self.basic_prices,
            basic_mode=basic_mode,
            capacity_kva=capacity_kva,
            contract_demand_kw=contract_demand_kw,
            pf_standard=pf_standard,
        )


def resolve_version(version: TariffVersion, *, effective_to: date | None = None) -> ResolvedTariff:
    t = version.tariff
    calendar = rules.parse_calendar(version.calendar) if version.calendar else None
    return ResolvedTariff(
        version_id=version.pk,
        tariff_id=t.pk,
        code=t.code,
        name=t.name,
        org_id=t.org_id,
        usage_category=t.usage_category,
        voltage_level=t.voltage_level,
        version_label=version.label,
        effective_from=version.effective_from,
        effective_to=effective_to,
        tariff=parse_tariff(version.pricing, "pricing"),
        calendar=calendar,
        tier_year_start_month=version.tier_year_start_month,
        basic_prices={k: Decimal(v) for k, v in (version.basic_prices or {}).items()},
    )


def _candidate_versions(org: Org, *, code: str | None) -> QuerySet[TariffVersion]:
    """Published versions of the tariffs that apply at `org` (its own and its ancestors')."""
    paths = org.ancestor_paths()
    province_path = paths[-1]
    allows_override = (
        Org.objects.filter(path=province_path).values_list("allows_local_override", flat=True).first()
    )
    tariff_paths = paths if allows_override else [province_path]
    qs = TariffVersion.objects.filter(
        state=TariffVersion.State.PUBLISHED, tariff__org__path__in=tariff_paths
    ).select_related("tariff", "tariff__org")
    if code is not None:
        qs = qs.filter(tariff__code=code)
    return qs


def _pick(versions: list[TariffVersion], on: date) -> dict[str, ResolvedTariff]:
    """Per code: the nearest org's version in force on `on` (falling back to the org above when
    the nearer tariff has no version in force yet)."""
    by_tariff: dict[int, list[TariffVersion]] = {}
    for v in versions:
        by_tariff.setdefault(v.tariff_id, []).append(v)
    best: dict[str, tuple[int, TariffVersion, date | None]] = {}
    for tvs in by_tariff.values():
        spans = [rules.Span(v, v.effective_from) for v in tvs]
        chosen = rules.in_force(spans, on)
        if chosen is None:
            continue
        v = chosen.key
        depth = v.tariff.org.depth
        code = v.tariff.code
        if code not in best or depth > best[code][0]:
            best[code] = (depth, v, rules.effective_to(spans, chosen))
    return {code: resolve_version(v, effective_to=end) for code, (_, v, end) in best.items()}


def tariff_for(*, code: str, org: Org, on: date) -> ResolvedTariff:
    """The tariff `code` in force at `org` on `on`; raises NotFound when there is none."""
    found = _pick(list(_candidate_versions(org, code=code)), on)
    if code not in found:
        raise NotFound(f"no tariff {code} in force at {org.code} on {on.isoformat()}")
    return found[code]


def tariffs_in_force(*, org: Org, on: date) -> dict[str, ResolvedTariff]:
    """Every tariff code in force at `org` on `on` (one query; each pricing parsed once)."""
    return _pick(list(_candidate_versions(org, code=None)), on)


# --- what a user may read -------------------------------------------------------------------------
def _visible_q(user: User) -> Q:
    scope = DataScope.for_user(user)
    if scope.everything:
        return Q()
    q = Q(pk__in=[])
    prefixes = list(scope.prefixes)
    if getattr(user, "org", None) is not None:
        prefixes.append(user.org.path)
    for p in prefixes:
        # published inside the scope, or above it (inherited)
        ancestors = [p[:n] for n in range(len(p), 0, -Org.steplen)]
        q |= Q(org__path__startswith=p) | Q(org__path__in=ancestors)
    return q


def visible_tariffs(user: User) -> QuerySet[Tariff]:
    return Tariff.objects.filter(_visible_q(user)).select_related("org")


def search_tariffs(
    user: User, *, q: str = "", category: str = "", voltage: str = "", org_id: int | None = None
) -> QuerySet[Tariff]:
    qs = visible_tariffs(user)
    if q:
        qs = qs.filter(Q(code__icontains=q) | Q(name__icontains=q) | Q(description__icontains=q))
    if category:
        qs = qs.filter(usage_category=category)
    if voltage:
        qs = qs.filter(voltage_level=voltage)
    if org_id:
        qs = qs.filter(org_id=org_id)
    return qs.order_by("code", "org__path")


def get_tariff(user: User, pk: int) -> Tariff:
    try:
        return visible_tariffs(user).get(pk=pk)
    except Tariff.DoesNotExist:
        raise NotFound(f"no tariff {pk}") from None


def get_version(user: User, pk: int) -> TariffVersion:
    try:
        v = TariffVersion.objects.select_related("tariff", "tariff__org", "based_on").get(pk=pk)
    except TariffVersion.DoesNotExist:
        raise NotFound(f"no tariff version {pk}") from None
    if not visible_tariffs(user).filter(pk=v.tariff_id).exists():
        raise NotFound(f"no tariff version {pk}")
    return v


@dataclass(frozen=True)
class VersionRow:
    version: TariffVersion
    effective_to: date | None
    in_force: bool


def timeline(tariff: Tariff, *, on: date) -> list[VersionRow]:
    """The tariff's versions, latest first, each with its derived end and whether it is in force."""
    versions = list(
        tariff.versions.select_related("created_by", "published_by", "based_on").order_by("effective_from")
    )
    published = [rules.Span(v, v.effective_from) for v in versions if v.is_published]
    current = rules.in_force(published, on)
    rows = []
    for v in versions:
        end = rules.effective_to(published, rules.Span(v, v.effective_from)) if v.is_published else None
        rows.append(VersionRow(v, end, current is not None and current.key.pk == v.pk))
    return list(reversed(rows))


def current_version(tariff: Tariff, *, on: date) -> TariffVersion | None:
    return (
        tariff.versions.filter(state=TariffVersion.State.PUBLISHED, effective_from__lte=on)
        .order_by("-effective_from")
        .first()
    )


def history(tariff: Tariff, *, limit: int = 100) -> QuerySet[AuditLog]:
    """The audit trail of the tariff and of its versions."""
    version_ids = [str(pk) for pk in tariff.versions.values_list("pk", flat=True)]
    return AuditLog.objects.filter(
        Q(target_type="tariffs.tariff", target_id=str(tariff.pk))
        | Q(target_type="tariffs.tariffversion", target_id__in=version_ids)
    ).order_by("-at", "-id")[:limit]


def overrides_of(tariff: Tariff) -> QuerySet[Tariff]:
    """Local overrides below the org that publishes `tariff` (same code, lower org)."""
    return Tariff.objects.filter(code=tariff.code, org__path__startswith=tariff.org.path).exclude(
        pk=tariff.pk
    )


def parent_tariff(tariff: Tariff) -> Tariff | None:
    """The tariff of the same code published above (what this one overrides)."""
    paths = tariff.org.ancestor_paths()[1:]
    return (
        Tariff.objects.filter(code=tariff.code, org__path__in=paths)
        .select_related("org")
        .order_by("-org__depth")
        .first()
    )


def version_summary(version: TariffVersion) -> dict[str, Any]:
    return {
        "id": version.pk,
        "label": version.label,
        "effective_from": version.effective_from,
        "state": version.state,
    }


# --- try it: rate a typed usage through the engine -----------------------------------------------
def try_rate(version: TariffVersion, payload: Any) -> tuple[Any, RatingTariff]:
    """Rate `payload` = {"usage": {...}, "period": {"start", "end"}?, "point": {basic_mode,
    capacity_kva, contract_demand_kw, pf_standard}?} with `version` through mmis.rating.engine.rate.
    Returns (RatingResult, the tariff as applied); raises InvalidInput with field paths."""
    from mmis.common.errors import InvalidInput
    from mmis.common.inputs import MISSING, Reader
    from mmis.common.periods import Period, next_month_start
    from mmis.rating.engine import rate
    from mmis.rating.tariff import BASIC_TYPES, PF_STANDARDS, read_usage

    r = Reader()
    root = r.obj(payload, "") or {}
    start = version.effective_from.replace(day=1)
    period = Period(start, next_month_start(start))
    raw_period = r.get(root, "period")
    if raw_period not in (MISSING, None):
        p = r.obj(raw_period, "period")
        s, e = r.date(p, "start", "period"), r.date(p, "end", "period")
        if s is not None and e is not None:
            if e <= s:
                r.error("period.end", f"must be after period.start ({s.isoformat()})")
            else:
                period = Period(s, e)
    point = r.obj(r.get(root, "point"), "point", required=False) or {}
    mode = r.get(point, "basic_mode")
    mode = (
        None
        if mode is MISSING or mode is None
        else r.choice(point, "basic_mode", ("", *BASIC_TYPES), "point")
    )
    pf_std = r.get(point, "pf_standard")
    pf_std = (
        None
        if pf_std is MISSING or pf_std is None
        else r.choice(point, "pf_standard", ("", *PF_STANDARDS), "point")
    )
    kva = r.decimal(point, "capacity_kva", "point", required=False, min_value=Decimal(0))
    kw = r.decimal(point, "contract_demand_kw", "point", required=False, positive=True)
    resolved = resolve_version(version)
    tariff = resolved.tariff
    if not r.errors:
        if mode and mode not in resolved.basic_prices and not (tariff.basic and tariff.basic.type == mode):
            r.error("point.basic_mode", f"this tariff has no {mode} price")
        elif mode == "capacity" and kva is None:
            r.error("point.capacity_kva", "is required with a capacity charge")
        elif mode == "demand_contract" and kw is None:
            r.error("point.contract_demand_kw", "is required with a contract demand charge")
        elif mode == "demand_actual" and kva is None:
            r.error("point.capacity_kva", "is required with an actual demand charge (40 % floor)")
        else:
            tariff = resolved.for_point(
                basic_mode=mode, capacity_kva=kva, contract_demand_kw=kw, pf_standard=pf_std
            )
    usage = read_usage(r, r.get(root, "usage"), "usage", tariff)
    if r.errors:
        raise InvalidInput(r.errors)
    assert usage is not None
    return rate(tariff, usage, period), tariff
