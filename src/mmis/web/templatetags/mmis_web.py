"""Small display helpers for the web templates: labels and badge colours of codes."""

from __future__ import annotations

import functools

from django import template
from django.utils.translation import get_language, gettext, gettext_noop, pgettext
from django.utils.translation import gettext_lazy as _

register = template.Library()

MATCH_LABELS = {
    "customer_no": (_("户号"), "primary"),
    "name": (_("户名"), "secondary"),
    "phone": (_("电话"), "info"),
    "id_number": (_("证件号"), "warning"),
    "address": (_("地址"), "success"),
    "meter": (_("表号"), "dark"),
}

STATE_BADGES = {
    "active": "success",
    "effective": "success",
    "signed": "primary",
    "draft": "secondary",
    "expiring": "warning",
    "terminated": "dark",
    "closed": "dark",
    "suspended": "warning",
    "installed": "success",
    "removed": "secondary",
}

STATE_LABELS = {
    "expiring": _("即将到期"),
    "draft": _("草拟"),
    "signed": _("已签订"),
    "effective": _("生效"),
    "terminated": _("终止"),
}


@register.filter
def match_label(code: str) -> str:
    return str(MATCH_LABELS.get(code, (code, ""))[0])


@register.filter
def match_badge(code: str) -> str:
    return MATCH_LABELS.get(code, ("", "secondary"))[1]


@register.filter
def state_badge(code: str) -> str:
    return STATE_BADGES.get(code, "secondary")


@register.filter
def contract_state_label(code: str) -> str:
    return str(STATE_LABELS.get(code, code))


@register.filter
def indent_px(depth: int) -> int:
    return int(depth) * 22


# history.py labels its entries in Chinese; these make them part of the catalogue.
HISTORY_KINDS = (gettext_noop("新建"), gettext_noop("修改"), gettext_noop("删除"), gettext_noop("system"))


@register.filter
def translated(text: str) -> str:
    """gettext on a value computed outside the template (e.g. the timeline's 新建/修改/删除)."""
    return gettext(str(text)) if text else text


@register.filter
def process_label(value):
    """A process definition's name, step, field label or choice in the user's language.

    Definitions are data, so their built-in wording is in the catalogue under the context
    "process" (services/labels.py); a province's own wording, or a non-text value, is shown as it is.
    """
    return pgettext("process", value) if isinstance(value, str) and value else value


ACTION_LABELS = {
    "customer.create": _("客户建档"),
    "customer.update": _("修改客户档案"),
    "customer.reveal_identity": _("查看完整证件号/电话"),
    "metering_point.create": _("新增计量点"),
    "metering_point.multiplier": _("变更综合倍率"),
    "contract.create": _("新建合同"),
    "contract.sign": _("合同签订"),
    "contract.make_effective": _("合同生效"),
    "contract.terminate": _("合同终止"),
    "meter.register": _("电能表入库"),
    "meter.install": _("装表"),
    "meter.remove": _("拆表"),
    "transformer.register": _("互感器入库"),
    "org.create": _("新建组织"),
    "user.create": _("新建用户"),
    "user.roles": _("变更角色"),
    "scope.grant": _("授予数据权限"),
    "scope.revoke": _("收回数据权限"),
    "token.issue": _("签发 API 令牌"),
}


@register.filter
def action_label(code: str) -> str:
    """A readable name of an audit action code; unknown codes are shown as they are."""
    return str(ACTION_LABELS.get(code, code))


@register.simple_tag
def active_nav_url(items, path: str) -> str:
    """The one navigation entry to highlight: the longest url that prefixes the current path."""
    best = ""
    for item in items or []:
        url = item["url"]
        if (path == url or (url != "/" and path.startswith(url))) and len(url) > len(best):
            best = url
    return best


@functools.lru_cache(maxsize=8)
def _choice_labels_for(language: str) -> dict[tuple[str, str], dict]:
    """(model verbose name, field verbose name) → {code: label}, in `language` (the active one)."""
    from django.apps import apps

    out: dict[tuple[str, str], dict] = {}
    for label in ("customers", "assets"):
        try:
            models = apps.get_app_config(label).get_models()
        except LookupError:
            continue
        for model in models:
            for f in model._meta.concrete_fields:
                if f.choices:
                    out[(str(model._meta.verbose_name), str(f.verbose_name))] = dict(f.flatchoices)
    return out


@register.simple_tag
def history_value(what, field: str, value):
    """A timeline value as the user reads it: the label of a code, dates as YYYY-MM-DD."""
    from datetime import date, datetime

    if value in (None, ""):
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    labels = _choice_labels_for(get_language()).get((str(what), str(field)))
    if labels and value in labels:
        return str(labels[value])
    return value


@register.filter
def json_keys(value) -> str:
    """The changed field names of an audit before/after value, for a one-line summary."""
    if isinstance(value, dict):
        keys = list(value)
        return ", ".join(keys[:4]) + (f" … (+{len(keys) - 4})" if len(keys) > 4 else "")
    return str(value)[:60]


@register.filter
def json_pretty(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True, default=str)
