"""The collection policy form (收费策略): the posted fields of the policy page checked one by one
into the values of a `Policy` row, with an error per field. Pure: no database access."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mmis.accounts.models import Policy

LADDER_ROWS = 6
MAX_AMOUNT = Decimal("999999999999.99")  # max_digits=14, decimal_places=2
MAX_SMALL = 32767  # PositiveSmallIntegerField

LADDER_CODES = {
    "reminder": gettext_lazy("催费提醒"),
    "notice": gettext_lazy("催费通知"),
    "disconnection_notice": gettext_lazy("停电通知"),
    "disconnection_order": gettext_lazy("停电工单"),
}
LADDER_CHANNELS = {"sms": gettext_lazy("短信"), "ebill": gettext_lazy("电子账单")}
NO_CHANNEL = ("disconnection_order",)  # an order to the crew: no message to the customer

BOOL_FIELDS = ("late_fee_during_plan",)
MONEY_FIELDS = (
    "late_fee_minimum",
    "dunning_min_amount",
    "prepaid_threshold1",
    "prepaid_threshold2",
    "reconnect_threshold",
    "write_off_approval_amount",
)
# name: smallest allowed
INT_FIELDS = {
    "payment_term_days": 1,
    "disconnect_min_overdue_days": 0,
    "prepaid_grace_hours": 0,
    "reconnect_within_hours": 1,
}
CHOICE_FIELDS = ("allocation_order", "minimum_scope", "late_fee_basis")
# the order of the page
FIELDS = (
    "allocation_order",
    "late_fee_minimum",
    "minimum_scope",
    "late_fee_basis",
    "late_fee_during_plan",
    "payment_term_days",
    "dunning_ladder",
    "dunning_min_amount",
    "disconnect_min_overdue_days",
    "prepaid_threshold1",
    "prepaid_threshold2",
    "prepaid_grace_hours",
    "reconnect_threshold",
    "reconnect_within_hours",
    "write_off_approval_amount",
)


def kind(name: str) -> str:
    if name in BOOL_FIELDS:
        return "bool"
    if name in MONEY_FIELDS:
        return "money"
    if name in INT_FIELDS:
        return "int"
    if name in CHOICE_FIELDS:
        return "choice"
    return "ladder"


def choices(name: str) -> list[tuple[str, str]]:
    return [(str(v), str(label)) for v, label in Policy._meta.get_field(name).choices]


def label(name: str) -> str:
    return str(Policy._meta.get_field(name).verbose_name)


def _money(raw: str) -> tuple[Decimal | None, str | None]:
    raw = raw.strip()
    if not raw:
        return None, _("必须填写")
    try:
        d = Decimal(raw)
    except (InvalidOperation, ValueError):
        return None, _("请输入金额数字")
    if not d.is_finite():
        return None, _("请输入金额数字")
    if d != d.quantize(Decimal("0.01")):
        return None, _("金额最多 2 位小数")
    if d < 0:
        return None, _("金额不能为负数")
    if d > MAX_AMOUNT:
        return None, _("金额过大")
    return d.quantize(Decimal("0.01")), None


def _integer(raw: str, *, minimum: int) -> tuple[int | None, str | None]:
    raw = raw.strip()
    if not raw:
        return None, _("必须填写")
    if not raw.isdigit():
        return None, _("请输入不小于 %(min)s 的整数") % {"min": minimum}
    n = int(raw)
    if n < minimum:
        return None, _("请输入不小于 %(min)s 的整数") % {"min": minimum}
    if n > MAX_SMALL:
        return None, _("不能大于 %(max)s") % {"max": MAX_SMALL}
    return n, None


def ladder_field(i: int, part: str) -> str:
    return f"ladder-{i}-{part}"


def _ladder(data: Mapping[str, Any], errors: dict[str, str]) -> list[dict]:
    steps: list[tuple[int, dict]] = []
    for i in range(LADDER_ROWS):
        code = str(data.get(ladder_field(i, "code"), "")).strip()
        days_raw = str(data.get(ladder_field(i, "after_days"), "")).strip()
        channel = str(data.get(ladder_field(i, "channel"), "")).strip()
        if not (code or days_raw or channel):
            continue  # a blank row
        ok = True
        if code not in LADDER_CODES:
            errors[ladder_field(i, "code")] = _("请选择催费步骤") if not code else _("未知的催费步骤")
            ok = False
        days, err = _integer(days_raw, minimum=0)
        if err:
            errors[ladder_field(i, "after_days")] = err
            ok = False
        if code in NO_CHANNEL:
            channel = ""
        elif channel not in LADDER_CHANNELS:
            errors[ladder_field(i, "channel")] = _("请选择短信或电子账单") if not channel else _("未知的渠道")
            ok = False
        if ok:
            step: dict[str, Any] = {"code": code, "after_days": days}
            if channel:
                step["channel"] = channel
            steps.append((i, step))
    seen: dict[str, int] = {}
    previous: dict | None = None
    for i, step in steps:
        if step["code"] in seen:
            errors.setdefault(ladder_field(i, "code"), _("同一催费步骤只能出现一次"))
        seen[step["code"]] = step["after_days"]
        if previous is not None and step["after_days"] <= previous["after_days"]:
            errors.setdefault(
                ladder_field(i, "after_days"),
                _("逾期天数须按步骤递增(大于上一步的 %(days)s 天)") % {"days": previous["after_days"]},
            )
        previous = step
    if "disconnection_order" in seen and not any(k.startswith("ladder-") for k in errors):
        notice = seen.get("disconnection_notice")
        if notice is None or notice >= seen["disconnection_order"]:
            errors["dunning_ladder"] = _("停电工单之前必须有停电通知步骤")
    return [s for _i, s in steps]


def parse(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The policy values posted, and the errors by field name ({} when all is well). Ladder errors
    are named `ladder-<row>-<part>`, or `dunning_ladder` for the ladder as a whole."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in FIELDS:
        k = kind(name)
        raw = str(data.get(name, "") or "")
        if k == "bool":
            values[name] = raw in ("1", "on", "true")
        elif k == "money":
            value, err = _money(raw)
            if err:
                errors[name] = err
            values[name] = value
        elif k == "int":
            value, err = _integer(raw, minimum=INT_FIELDS[name])
            if err:
                errors[name] = err
            values[name] = value
        elif k == "choice":
            raw = raw.strip()
            if raw not in {v for v, _label in choices(name)}:
                errors[name] = _("请从列表中选择")
            values[name] = raw
        else:
            values[name] = _ladder(data, errors)
    t1, t2 = values.get("prepaid_threshold1"), values.get("prepaid_threshold2")
    if t1 is not None and t2 is not None and t2 > t1 and "prepaid_threshold2" not in errors:
        errors["prepaid_threshold2"] = _("预警阈值2不能高于预警阈值1")
    return values, errors


def values_of(policy: Policy) -> dict[str, Any]:
    """The policy's values, field by field (as saved; the ladder as stored, [] = the default)."""
    return {name: getattr(policy, name) for name in FIELDS}


def form_data(values: Mapping[str, Any], ladder: list[dict]) -> dict[str, str]:
    """The form's fields filled from policy values, for the page (ladder rows padded with blanks)."""
    out: dict[str, str] = {}
    for name in FIELDS:
        k = kind(name)
        if k == "ladder":
            continue
        v = values.get(name)
        out[name] = ("1" if v else "") if k == "bool" else ("" if v is None else str(v))
    for i in range(LADDER_ROWS):
        step = ladder[i] if i < len(ladder) else {}
        out[ladder_field(i, "code")] = str(step.get("code", ""))
        out[ladder_field(i, "after_days")] = str(step.get("after_days", ""))
        out[ladder_field(i, "channel")] = str(step.get("channel", ""))
    return out
