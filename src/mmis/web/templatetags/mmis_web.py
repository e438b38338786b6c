"""Small display helpers for the web templates: labels and badge colours of codes."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext, gettext_noop
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
