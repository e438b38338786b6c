"""The definition language: parsing with paths, safe conditions, routing, form validation."""

from decimal import Decimal

import pytest

from mmis.common.errors import InvalidInput
from mmis.workflow import rules


def spec(**over):
    base = {
        "start": "accept",
        "time_limit": {
            "value": 5,
            "unit": "working_days",
            "cases": [{"when": {"field": "dual"}, "value": 9}],
        },
        "steps": [
            {
                "code": "accept",
                "name": "受理",
                "role": "counter_staff",
                "form": [
                    {"name": "kind", "type": "choice", "choices": ["small", "big"], "required": True},
                    {"name": "kva", "type": "decimal", "required": True, "min": 0},
                    {"name": "persons", "type": "int"},
                    {"name": "urgent", "type": "bool"},
                    {"name": "visit_on", "type": "date"},
                ],
                "next": [{"to": "design", "when": {"field": "kind", "op": "eq", "value": "big"}}, "finish"],
            },
            {"code": "design", "name": "设计审查", "role": "counter_staff", "next": ["finish"]},
            {"code": "finish", "name": "归档", "role": "counter_staff"},
        ],
    }
    base.update(over)
    return base


def test_parse_and_route_exclusive():
    d = rules.parse_definition(spec())
    assert d.start == "accept"
    assert rules.route(d.step("accept"), {"kind": "big"}) == ["design"]
    assert rules.route(d.step("accept"), {"kind": "small"}) == ["finish"]
    assert rules.route(d.step("finish"), {}) == []
    assert d.predecessors("finish") == ["accept", "design"]
    assert d.time_limit.for_data({"dual": True}) == Decimal(9)
    assert d.time_limit.for_data({}) == Decimal(5)


def test_parallel_split_takes_every_matching_branch():
    s = spec()
    s["steps"][0]["split"] = "parallel"
    s["steps"][0]["next"] = ["design", {"to": "finish", "when": {"field": "urgent", "op": "truthy"}}]
    d = rules.parse_definition(s)
    assert rules.route(d.step("accept"), {"urgent": True}) == ["design", "finish"]
    assert rules.route(d.step("accept"), {"urgent": False}) == ["design"]


def test_bad_definitions_are_refused_with_paths():
    s = spec()
    s["steps"][0]["next"] = [{"to": "nowhere"}]
    s["steps"][1]["time_limit"] = {"value": -1, "unit": "fortnights"}
    s["steps"][2]["code"] = "Bad Code"
    with pytest.raises(rules.InvalidDefinition) as exc:
        rules.parse_definition(s)
    paths = {e.path for e in exc.value.errors}
    assert "steps[0].next[0].to" in paths
    assert "steps[1].time_limit.value" in paths
    assert "steps[1].time_limit.unit" in paths
    assert "steps[2].code" in paths


def test_conditions_never_execute_code():
    data = {"kva": "315", "cat": "residential", "n": 3}
    assert rules.evaluate({"field": "kva", "op": "ge", "value": 315}, data)
    assert not rules.evaluate({"field": "kva", "op": "gt", "value": "315"}, data)
    assert rules.evaluate({"field": "cat", "op": "in", "value": ["residential", "agricultural"]}, data)
    assert rules.evaluate(
        {"all": [{"field": "n", "op": "lt", "value": 4}, {"not": {"field": "missing"}}]}, data
    )
    assert rules.evaluate(
        {"any": [{"field": "missing", "op": "present"}, {"field": "n", "op": "eq", "value": 3}]}, data
    )
    # a would-be expression is just a string compared as data
    assert not rules.evaluate({"field": "cat", "op": "eq", "value": "__import__('os').system('x')"}, data)
    errors = []
    rules.check_condition({"field": "x", "op": "exec"}, "when", errors)
    assert errors and errors[0].path == "when.op"


def test_form_validation_collects_every_error():
    d = rules.parse_definition(spec())
    fields = d.step("accept").form
    with pytest.raises(InvalidInput) as exc:
        rules.clean_form(
            fields, {"kind": "huge", "kva": "-1", "persons": "2.5", "visit_on": "2026-02-30", "x": 1}
        )
    paths = {e.path for e in exc.value.errors}
    assert paths == {"form.kind", "form.kva", "form.persons", "form.visit_on", "form.x"}
    with pytest.raises(InvalidInput) as exc:
        rules.clean_form(fields, {})
    assert {e.path for e in exc.value.errors} == {"form.kind", "form.kva"}
    clean = rules.clean_form(fields, {"kind": "big", "kva": "8.50", "persons": 4, "urgent": "on"})
    assert clean == {"kind": "big", "kva": "8.50", "persons": 4, "urgent": True}
    with pytest.raises(InvalidInput):
        rules.clean_form(fields, {"kind": "big", "kva": 8.5})  # floats are refused
