"""Pages of the tariff catalog (Chinese first). Thin: parse, call one query or service, render.
Everyone signed in reads; administrators and managers of the publishing org write."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.customers.models import UsageCategory, VoltageLevel
from mmis.rating.tariff import TOU_PERIODS
from mmis.tariffs import excel, queries, rules, services
from mmis.tariffs.models import Tariff, TariffVersion


def _tariff_or_404(request: HttpRequest, pk: int) -> Tariff:
    try:
        return queries.get_tariff(request.user, pk)
    except NotFound:
        raise Http404(_("电价不存在")) from None


def _version_or_404(request: HttpRequest, pk: int) -> TariffVersion:
    try:
        return queries.get_version(request.user, pk)
    except NotFound:
        raise Http404(_("电价版本不存在")) from None


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "web/forbidden.html", {"message": message}, status=403)


def _on(request: HttpRequest) -> date:
    try:
        return date.fromisoformat(request.GET.get("on", ""))
    except ValueError:
        return timezone.localdate()


# --- list -----------------------------------------------------------------------------------------
@login_required
def tariff_list(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    category = request.GET.get("category", "")
    on = _on(request)
    rows = []
    for t in queries.search_tariffs(request.user, q=q, category=category):
        rows.append(
            {
                "t": t,
                "current": queries.current_version(t, on=on),
                "drafts": t.versions.filter(state="draft").count(),
            }
        )
    context = {
        "rows": rows,
        "q": q,
        "category": category,
        "categories": UsageCategory.choices,
        "on": on,
        "can_publish": request.user.org is not None and services.can_publish(request.user, request.user.org),
    }
    if request.headers.get("HX-Request") == "true":
        return render(request, "tariffs/_list_rows.html", context)
    return render(request, "tariffs/list.html", context)


# --- one tariff -----------------------------------------------------------------------------------
@login_required
def tariff_detail(request: HttpRequest, pk: int) -> HttpResponse:
    t = _tariff_or_404(request, pk)
    on = timezone.localdate()
    rows = queries.timeline(t, on=on)
    visible = queries.visible_tariffs(request.user)
    context = {
        "t": t,
        "rows": rows,
        "history": queries.history(t, limit=50),
        "parent": queries.parent_tariff(t),
        "overrides": visible.filter(pk__in=queries.overrides_of(t).values("pk")),
        "can_publish": services.can_publish(request.user, t.org),
        "on": on,
    }
    return render(request, "tariffs/detail.html", context)


def _money(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def version_view_model(v: TariffVersion) -> dict[str, Any]:
    """The version's data as tables for the page."""
    p = v.pricing
    e = p["energy"]
    tiers = []
    lower = Decimal(0)
    for i, tier in enumerate(e.get("tiers") or []):
        up = _money(tier.get("up_to"))
        tiers.append(
            {
                "n": i + 1,
                "from": lower,
                "to": up,
                "price": tier.get("price"),
                "increment": tier.get("increment"),
            }
        )
        if up is not None:
            lower = up
    components = []
    for c in p.get("components") or []:
        derived = {}
        if c.get("floats_with_tou") and c.get("tou_ratios"):
            derived = rules.derive_tou_prices(
                base=Decimal(c["price"]), ratios={k: Decimal(x) for k, x in c["tou_ratios"].items()}
            )
        components.append({**c, "name": rules.COMPONENT_NAMES.get(c["code"], c["code"]), "derived": derived})
    funds = [{**f, "name": rules.FUND_NAMES.get(f["code"], f["code"])} for f in p.get("funds") or []]
    fund_total = sum((Decimal(f["price"]) for f in funds), Decimal(0))
    calendar = rules.parse_calendar(v.calendar) if v.calendar else None
    tou_rows = []
    if e["type"] == "tou":
        for period in TOU_PERIODS:
            if period in e["prices"]:
                total = Decimal(e["prices"][period])
                for c in components:
                    total += (
                        c["derived"].get(period, Decimal(c["price"])) if c["derived"] else Decimal(c["price"])
                    )
                tou_rows.append(
                    {
                        "period": period,
                        "name": rules.PERIOD_NAMES[period],
                        "price": e["prices"][period],
                        "comps": [c["derived"].get(period) if c["derived"] else None for c in components],
                        "total": total,
                        "total_with_funds": total + fund_total,
                    }
                )
    basic = [
        {"mode": k, "name": rules.BASIC_NAMES[k], "price": x}
        for k, x in (v.basic_prices or {}).items()
        if k in rules.BASIC_NAMES
    ]
    if p.get("basic"):
        b = p["basic"]
        basic.append({"mode": b["type"], "name": rules.BASIC_NAMES[b["type"]], "price": b["price"]})
    return {
        "energy": e,
        "tiers": tiers,
        "tou_rows": tou_rows,
        "components": components,
        "funds": funds,
        "fund_total": fund_total,
        "basic": basic,
        "pf": (p.get("power_factor") or {}).get("standard"),
        "calendar": calendar,
        "grid": calendar.grid() if calendar else [],
        "season_rows": [(s, [s.period_at(h) for h in range(24)]) for s in calendar.seasons]
        if calendar
        else [],
        "period_names": rules.PERIOD_NAMES,
        "annual": rules.is_annual_tiers(queries.resolve_version(v).tariff),
    }


@login_required
def version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    v = _version_or_404(request, pk)
    t = v.tariff
    rows = queries.timeline(t, on=timezone.localdate())
    row = next(r for r in rows if r.version.pk == v.pk)
    context = {
        "t": t,
        "v": v,
        "row": row,
        "others": [r.version for r in rows if r.version.pk != v.pk],
        "vm": version_view_model(v),
        "can_publish": services.can_publish(request.user, t.org),
        "try_form": _try_defaults(v),
        "json": json.dumps(v.data(), ensure_ascii=False, indent=2),
    }
    return render(request, "tariffs/version.html", context)


@login_required
@require_POST
def version_publish(request: HttpRequest, pk: int) -> HttpResponse:
    v = _version_or_404(request, pk)
    try:
        services.publish_version(actor=request.user, version=v, at=timezone.now())
    except services.NotAllowed as exc:
        return _forbidden(request, str(exc))
    except InvalidInput as exc:
        for e in exc.errors:
            messages.error(request, f"{e.path}: {e.message}" if e.path else e.message)
        return redirect("tariffs:version", pk=v.pk)
    messages.success(
        request, _("版本 %(label)s 已发布，自 %(d)s 起执行") % {"label": v.label, "d": v.effective_from}
    )
    return redirect("tariffs:version", pk=v.pk)


@login_required
@require_POST
def version_discard(request: HttpRequest, pk: int) -> HttpResponse:
    v = _version_or_404(request, pk)
    try:
        services.discard_version(actor=request.user, version=v, at=timezone.now())
    except services.NotAllowed as exc:
        return _forbidden(request, str(exc))
    except InvalidInput as exc:
        messages.error(request, "; ".join(e.message for e in exc.errors))
        return redirect("tariffs:version", pk=v.pk)
    messages.success(request, _("草稿已删除"))
    return redirect("tariffs:detail", pk=v.tariff_id)


# --- new version (copy and edit) / edit draft ------------------------------------------------------
FORM_FIELDS = ("label", "effective_from", "note", "tier_year_start_month")
JSON_FIELDS = ("pricing", "calendar", "basic_prices")


def _form_from_version(v: TariffVersion | None, *, copy: bool) -> dict[str, str]:
    if v is None:
        return {"label": "", "effective_from": "", "note": "", "tier_year_start_month": "1",
                "pricing": "{}", "calendar": "", "basic_prices": "{}"}  # fmt: skip
    return {
        "label": "" if copy else v.label,
        "effective_from": "" if copy else v.effective_from.isoformat(),
        "note": "" if copy else v.note,
        "tier_year_start_month": str(v.tier_year_start_month),
        "pricing": json.dumps(v.pricing, ensure_ascii=False, indent=2),
        "calendar": json.dumps(v.calendar, ensure_ascii=False, indent=2) if v.calendar else "",
        "basic_prices": json.dumps(v.basic_prices or {}, ensure_ascii=False, indent=2),
    }


def _read_form(post) -> tuple[dict[str, str], dict[str, Any], list[FieldError]]:
    form = {k: post.get(k, "") for k in (*FORM_FIELDS, *JSON_FIELDS)}
    data: dict[str, Any] = {}
    errors: list[FieldError] = []
    for k in ("label", "effective_from", "note"):
        data[k] = form[k].strip()
    try:
        data["tier_year_start_month"] = int(form["tier_year_start_month"] or 1)
    except ValueError:
        errors.append(FieldError("tier_year_start_month", "must be a month from 1 to 12"))
    for k in JSON_FIELDS:
        text = form[k].strip()
        if not text:
            data[k] = None if k == "calendar" else {}
            continue
        try:
            data[k] = json.loads(text, parse_float=_no_float)
        except json.JSONDecodeError as exc:
            errors.append(
                FieldError(k, f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
            )
    if not data.get("effective_from"):
        data.pop("effective_from")
    return form, data, errors


def _no_float(text: str):
    """JSON numbers stay text so the parser can say "write prices as strings" instead of guessing."""
    from mmis.common.inputs import JsonNumber

    return JsonNumber(text)


def _group_errors(errors: list[FieldError]) -> dict[str, list[FieldError]]:
    out: dict[str, list[FieldError]] = {k: [] for k in (*FORM_FIELDS, *JSON_FIELDS, "other")}
    for e in errors:
        head = e.path.split(".")[0].split("[")[0]
        out[head if head in out else "other"].append(e)
    return out


@login_required
@require_http_methods(["GET", "POST"])
def version_new(request: HttpRequest, pk: int) -> HttpResponse:
    t = _tariff_or_404(request, pk)
    if not services.can_publish(request.user, t.org):
        return _forbidden(request, _("只有发布单位的管理员或管理人员可以新建电价版本"))
    source = None
    source_id = request.POST.get("copy_from") or request.GET.get("copy_from")
    if source_id:
        source = _version_or_404(request, int(source_id))
    elif t.versions.exists():
        source = t.versions.order_by("-effective_from").first()
    errors: list[FieldError] = []
    if request.method == "POST":
        form, data, errors = _read_form(request.POST)
        if not errors:
            try:
                v = services.create_version(
                    actor=request.user,
                    tariff=t,
                    data=data,
                    copy_from=source if request.POST.get("copy_from") else None,
                    at=timezone.now(),
                )
            except services.NotAllowed as exc:
                return _forbidden(request, str(exc))
            except InvalidInput as exc:
                errors = exc.errors
            else:
                messages.success(request, _("已保存草稿版本 %(label)s") % {"label": v.label})
                return redirect("tariffs:version", pk=v.pk)
    else:
        form = _form_from_version(source, copy=True)
    return render(
        request,
        "tariffs/version_form.html",
        {"t": t, "source": source, "form": form, "errors": _group_errors(errors), "has_errors": bool(errors),
         "editing": None, "months": range(1, 13)},
        status=422 if errors else 200,
    )  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def version_edit(request: HttpRequest, pk: int) -> HttpResponse:
    v = _version_or_404(request, pk)
    t = v.tariff
    if not services.can_publish(request.user, t.org):
        return _forbidden(request, _("只有发布单位的管理员或管理人员可以修改电价版本"))
    if v.is_published:
        messages.warning(request, _("已发布的版本不可修改，请复制为新版本"))
        return redirect("tariffs:version", pk=v.pk)
    errors: list[FieldError] = []
    if request.method == "POST":
        form, data, errors = _read_form(request.POST)
        if not errors:
            try:
                v = services.update_version(actor=request.user, version=v, data=data, at=timezone.now())
            except InvalidInput as exc:
                errors = exc.errors
            else:
                messages.success(request, _("草稿已保存"))
                return redirect("tariffs:version", pk=v.pk)
    else:
        form = _form_from_version(v, copy=False)
    return render(
        request,
        "tariffs/version_form.html",
        {"t": t, "source": v.based_on, "form": form, "errors": _group_errors(errors),
         "has_errors": bool(errors), "editing": v, "months": range(1, 13)},
        status=422 if errors else 200,
    )  # fmt: skip


# --- compare --------------------------------------------------------------------------------------
@login_required
def compare(request: HttpRequest) -> HttpResponse:
    try:
        left = _version_or_404(request, int(request.GET.get("left", "0")))
        right = _version_or_404(request, int(request.GET.get("right", "0")))
    except ValueError:
        raise Http404(_("请选择两个版本")) from None
    rows = rules.compare(left.data(), right.data(), include_same=request.GET.get("all") == "1")
    meta = [
        (_("版本"), left.label, right.label),
        (_("生效日期"), left.effective_from, right.effective_from),
        (_("状态"), left.get_state_display(), right.get_state_display()),
        (_("说明"), left.note, right.note),
    ]
    return render(
        request,
        "tariffs/compare.html",
        {
            "left": left,
            "right": right,
            "rows": rows,
            "meta": meta,
            "show_all": request.GET.get("all") == "1",
            "changed": sum(1 for r in rows if r.change != "same"),
        },
    )


# --- try it ---------------------------------------------------------------------------------------
TRY_FIELDS = ("kwh", "sharp", "peak", "flat", "valley", "kvarh", "max_demand_kw", "persons", "ytd_kwh",
              "basic_mode", "capacity_kva", "contract_demand_kw", "pf_standard", "start", "end")  # fmt: skip


def _try_defaults(v: TariffVersion) -> dict[str, str]:
    from mmis.common.periods import next_month_start

    start = v.effective_from.replace(day=1)
    form = {k: "" for k in TRY_FIELDS}
    form.update({"start": start.isoformat(), "end": next_month_start(start).isoformat()})
    e = v.pricing["energy"]
    if e["type"] == "tou":
        form.update({"sharp": "0", "peak": "3000", "flat": "4000", "valley": "3000"})
    else:
        form["kwh"] = "450" if v.tariff.usage_category == "residential" else "10000"
    if v.pricing.get("power_factor"):
        form["kvarh"] = str(int(Decimal(form["kwh"] or 10000) * Decimal("0.4")))
    if v.basic_prices:
        mode = next(iter(v.basic_prices))
        form.update(
            {"basic_mode": mode, "capacity_kva": "1000", "contract_demand_kw": "800", "max_demand_kw": "750"}
        )
    return form


def _try_payload(form: dict[str, str], v: TariffVersion) -> dict[str, Any]:
    usage: dict[str, Any] = {}
    tou = {p: form[p].strip() for p in TOU_PERIODS if form.get(p, "").strip()}
    if v.pricing["energy"]["type"] == "tou" or any(
        c.get("floats_with_tou") for c in v.pricing.get("components") or []
    ):
        usage["tou_kwh"] = tou
    if form.get("kwh", "").strip():
        usage["kwh"] = form["kwh"].strip()
    for k in ("kvarh", "max_demand_kw", "ytd_kwh"):
        if form.get(k, "").strip():
            usage[k] = form[k].strip()
    if form.get("persons", "").strip():
        usage["persons"] = form["persons"].strip()
    point = {
        k: form[k].strip()
        for k in ("basic_mode", "capacity_kva", "contract_demand_kw")
        if form.get(k, "").strip()
    }
    if form.get("pf_standard", "").strip():
        point["pf_standard"] = "" if form["pf_standard"] == "none" else form["pf_standard"]
    payload: dict[str, Any] = {"usage": usage, "point": point}
    if form.get("start") and form.get("end"):
        payload["period"] = {"start": form["start"], "end": form["end"]}
    return payload


@login_required
@require_http_methods(["GET", "POST"])
def version_try(request: HttpRequest, pk: int) -> HttpResponse:
    v = _version_or_404(request, pk)
    source = request.POST if request.method == "POST" else request.GET
    form = {k: source.get(k, "") for k in TRY_FIELDS} if source else _try_defaults(v)
    result = None
    errors: list[FieldError] = []
    try:
        result, _tariff = queries.try_rate(v, _try_payload(form, v))
    except InvalidInput as exc:
        errors = exc.errors
    lines = []
    if result is not None:
        for line in result.lines:
            lines.append({"line": line, "name": _line_name(line.code)})
    context = {"v": v, "t": v.tariff, "form": form, "result": result, "lines": lines, "errors": errors,
               "try_form": form, "vm": version_view_model(v)}  # fmt: skip
    if request.headers.get("HX-Request") == "true":
        return render(request, "tariffs/_try_result.html", context)
    return render(request, "tariffs/try.html", context)


def _line_name(code: str) -> str:
    parts = code.split(".")
    if parts[0] == "energy":
        if parts[1] in rules.PERIOD_NAMES:
            return _("电度电费·%(p)s") % {"p": rules.PERIOD_NAMES[parts[1]]}
        if parts[1].startswith("tier"):
            n = parts[1][4:].split("_")[0]
            return _("电度电费·第%(n)s档") % {"n": n} + (_("加价") if "increment" in parts[1] else "")
        return _("电度电费")
    if parts[0] == "component":
        name = rules.COMPONENT_NAMES.get(parts[1], parts[1])
        return f"{name}·{rules.PERIOD_NAMES[parts[2]]}" if len(parts) > 2 else name
    if parts[0] == "basic":
        return {
            "capacity": _("基本电费·容量"),
            "demand": _("基本电费·需量"),
            "demand_excess": _("基本电费·超需量"),
        }.get(parts[1], code)
    if parts[0] == "pf_adjustment":
        return _("功率因数调整电费")
    if parts[0] == "fund":
        return rules.FUND_NAMES.get(parts[1], parts[1])
    return code


# --- export / import ------------------------------------------------------------------------------
@login_required
def export_json(request: HttpRequest) -> HttpResponse:
    tariffs = list(queries.visible_tariffs(request.user).order_by("code", "org__path"))
    data = services.export_catalog(tariffs, include_drafts=request.GET.get("drafts") == "1")
    resp = JsonResponse(data, json_dumps_params={"ensure_ascii": False, "indent": 2})
    resp["Content-Disposition"] = f'attachment; filename="tariffs-{timezone.localdate().isoformat()}.json"'
    return resp


@login_required
def export_xlsx(request: HttpRequest) -> HttpResponse:
    tariffs = list(queries.visible_tariffs(request.user).order_by("code", "org__path"))
    content = excel.price_table(tariffs, on=_on(request))
    resp = HttpResponse(
        content, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    resp["Content-Disposition"] = f'attachment; filename="tariffs-{timezone.localdate().isoformat()}.xlsx"'
    return resp


@login_required
@require_http_methods(["GET", "POST"])
def import_page(request: HttpRequest) -> HttpResponse:
    if not request.user.has_role(*services.PUBLISHER_ROLES):
        return _forbidden(request, _("只有管理员或管理人员可以导入电价"))
    errors: list[FieldError] = []
    report = None
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            errors = [FieldError("file", "is required")]
        else:
            try:
                payload = json.loads(upload.read().decode("utf-8"), parse_float=_no_float)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                errors = [FieldError("file", f"is not a JSON file: {exc}")]
            else:
                try:
                    report = services.import_catalog(actor=request.user, payload=payload, at=timezone.now())
                except InvalidInput as exc:
                    errors = exc.errors
    return render(
        request,
        "tariffs/import.html",
        {"errors": errors, "report": report},
        status=422 if errors else 200,
    )


def category_label(code: str) -> str:
    return str(dict(UsageCategory.choices).get(code, code))


def voltage_label(code: str) -> str:
    return str(dict(VoltageLevel.choices).get(code, _("不分"))) if code else _("不分")
