"""The site check (现场核查) as a work-order process (DOMAIN.md §2.3 and §6.3: a reading exception
sent to the field is an inspection work order with findings). Published per province as data;
its check step ends in the effect `inspection.site_check`, which hands the finding back to the
reading audit."""

from __future__ import annotations

from typing import Any

SITE_CHECK = "site_check"
RESULTS = [
    ["confirmed", "示数无误"],
    ["wrong_reading", "示数有误"],
    ["meter_fault", "表计故障"],
    ["theft", "窃电嫌疑"],
    ["other", "其他情况"],
]


def _field(name: str, label: str, type_: str = "text", *, required: bool = False, **kw: Any) -> dict:
    return {"name": name, "label": label, "type": type_, "required": required, **kw}


SPEC: dict[str, Any] = {
    "start": "check",
    "time_limit": {"value": 5, "unit": "working_days"},
    "warn_share": "0.8",
    "start_form": [
        _field("point_no", "计量点编号", required=True),
        _field("exception_id", "抄表异常编号", "int", required=True),
        _field("reading_date", "抄表日期", "date", required=True),
        _field("rule", "异常类型", required=True),
        _field("detail", "异常说明"),
        _field("request", "核查要求", "textarea"),
    ],
    "steps": [
        {
            "code": "check",
            "name": "现场核查",
            "role": "inspector",
            "org_level": "station",
            "time_limit": {"value": 3, "unit": "working_days"},
            "form": [
                _field("result", "核查结论", "choice", required=True, choices=RESULTS),
                _field("actual_total", "现场总示数", "decimal", min=0, help="示数有误时必填"),
                _field("findings", "核查记录", "textarea", required=True),
            ],
            "effect": "inspection.site_check",
            "next": [],
        }
    ],
}
