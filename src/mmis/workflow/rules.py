"""Pure rules of the work-order engine: the process-definition language, safe conditions on form
data (no eval), form validation, routing and time-limit choice. No ORM, no clock.

A definition (stored as JSON in `ProcessDefinition.spec`)::

    {
      "start": "accept",
      "time_limit": {"value": 5, "unit": "working_days"},          # whole process (commitment)
      "warn_share": 0.8,                                           # warn at 80 % of a limit
      "steps": [
        {"code": "accept", "name": "受理", "role": "counter_staff", "org_level": "station",
         "time_limit": {"value": 1, "unit": "working_days"},
         "form": [{"name": "capacity_kva", "label": "容量", "type": "decimal", "required": true}],
         "split": "exclusive",                                     # or "parallel"
         "next": [{"to": "design", "when": {"field": "voltage", "op": "eq", "value": "10kV"}},
                  {"to": "contract"}],
         "join": false,                                            # wait for all branches
         "customer_side": false,                                   # time does not count
         "effect": "services.energise",                            # handler run on completion
         "assign": "initiator"}                                    # or candidates (default)
      ]
    }

A time limit may depend on the data: `{"value": 22, "unit": "working_days",
"cases": [{"when": {...}, "value": 32}]}`.

Conditions: `{"field": f, "op": eq|ne|gt|ge|lt|le|in|not_in|truthy|falsy|present, "value": v}`,
`{"all": [...]}`, `{"any": [...]}`, `{"not": cond}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from mmis.common.errors import FieldError, InvalidInput

UNITS = ("working_days", "days", "hours")
ORG_LEVELS = ("province", "city", "county", "station", "service_hall", "initiator")
FIELD_TYPES = ("text", "textarea", "int", "decimal", "date", "bool", "choice", "multichoice")
OPS = ("eq", "ne", "gt", "ge", "lt", "le", "in", "not_in", "truthy", "falsy", "present")
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class InvalidDefinition(InvalidInput):
    """A process definition that the engine cannot run."""


@dataclass(frozen=True)
class TimeLimit:
    value: Decimal
    unit: str
    cases: tuple[tuple[dict, Decimal], ...] = ()

    def for_data(self, data: dict) -> Decimal:
        for when, value in self.cases:
            if evaluate(when, data):
                return value
        return self.value

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"value": str(self.value), "unit": self.unit}
        if self.cases:
            out["cases"] = [{"when": w, "value": str(v)} for w, v in self.cases]
        return out


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    type: str
    required: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    min_value: Decimal | None = None
    max_length: int = 200
    help: str = ""


@dataclass(frozen=True)
class Transition:
    to: str
    when: dict | None = None
    label: str = ""


@dataclass(frozen=True)
class StepDef:
    code: str
    name: str
    role: str
    org_level: str
    time_limit: TimeLimit | None
    form: tuple[FormField, ...] = ()
    next: tuple[Transition, ...] = ()
    split: str = "exclusive"
    join: bool = False
    customer_side: bool = False
    effect: str = ""
    assign: str = "candidates"
    can_send_back: bool = True
    attachments: tuple[str, ...] = ()

    @property
    def is_end(self) -> bool:
        return not self.next


@dataclass(frozen=True)
class Definition:
    start: str
    steps: dict[str, StepDef]
    time_limit: TimeLimit | None
    warn_share: Decimal = Decimal("0.8")
    escalate_share: Decimal = Decimal("1.0")
    start_form: tuple[FormField, ...] = ()
    order: tuple[str, ...] = field(default=())

    def step(self, code: str) -> StepDef:
        return self.steps[code]

    def predecessors(self, code: str) -> list[str]:
        return [s.code for s in self.steps.values() if any(t.to == code for t in s.next)]


# --- parsing ------------------------------------------------------------------------------------
def _dec(value: Any, path: str, errors: list[FieldError], *, positive: bool = True) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        errors.append(FieldError(path, "must be a number"))
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors.append(FieldError(path, f"{value!r} is not a number"))
        return None
    if not d.is_finite() or (positive and d <= 0):
        errors.append(FieldError(path, "must be greater than 0"))
        return None
    return d


def _limit(raw: Any, path: str, errors: list[FieldError]) -> TimeLimit | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.append(FieldError(path, "must be an object {value, unit}"))
        return None
    value = _dec(raw.get("value"), f"{path}.value", errors)
    unit = raw.get("unit", "working_days")
    if unit not in UNITS:
        errors.append(
            FieldError(f"{path}.unit", f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
        )
    cases = []
    for i, case in enumerate(raw.get("cases") or []):
        if not isinstance(case, dict) or "when" not in case:
            errors.append(FieldError(f"{path}.cases[{i}]", "must be {when, value}"))
            continue
        check_condition(case["when"], f"{path}.cases[{i}].when", errors)
        v = _dec(case.get("value"), f"{path}.cases[{i}].value", errors)
        if v is not None:
            cases.append((case["when"], v))
    if value is None or unit not in UNITS:
        return None
    return TimeLimit(value=value, unit=unit, cases=tuple(cases))


def _form(raw: Any, path: str, errors: list[FieldError]) -> tuple[FormField, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append(FieldError(path, "must be a list of fields"))
        return ()
    out = []
    names = set()
    for i, f in enumerate(raw):
        p = f"{path}[{i}]"
        if not isinstance(f, dict):
            errors.append(FieldError(p, "must be an object"))
            continue
        name = f.get("name", "")
        if not isinstance(name, str) or not CODE_RE.match(name):
            errors.append(FieldError(f"{p}.name", "must be a lower-case identifier"))
            continue
        if name in names:
            errors.append(FieldError(f"{p}.name", f"field {name} appears twice"))
        names.add(name)
        ftype = f.get("type", "text")
        if ftype not in FIELD_TYPES:
            errors.append(FieldError(f"{p}.type", f"unknown type {ftype!r}"))
            continue
        choices = []
        for c in f.get("choices") or []:
            if isinstance(c, list | tuple) and len(c) == 2:
                choices.append((str(c[0]), str(c[1])))
            else:
                choices.append((str(c), str(c)))
        if ftype in ("choice", "multichoice") and not choices:
            errors.append(FieldError(f"{p}.choices", "a choice field needs choices"))
        min_value = f.get("min")
        out.append(
            FormField(
                name=name,
                label=str(f.get("label") or name),
                type=ftype,
                required=bool(f.get("required", False)),
                choices=tuple(choices),
                min_value=Decimal(str(min_value)) if min_value is not None else None,
                max_length=int(f.get("max_length", 2000 if ftype == "textarea" else 200)),
                help=str(f.get("help", "")),
            )
        )
    return tuple(out)


def parse_definition(spec: Any) -> Definition:
    """Check a definition completely (every error with its path) and build it."""
    errors: list[FieldError] = []
    if not isinstance(spec, dict):
        raise InvalidDefinition([FieldError("spec", "must be an object")])
    raw_steps = spec.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise InvalidDefinition([FieldError("steps", "at least one step is required")])
    steps: dict[str, StepDef] = {}
    order = []
    for i, s in enumerate(raw_steps):
        p = f"steps[{i}]"
        if not isinstance(s, dict):
            errors.append(FieldError(p, "must be an object"))
            continue
        code = s.get("code", "")
        if not isinstance(code, str) or not CODE_RE.match(code):
            errors.append(FieldError(f"{p}.code", "must be a lower-case identifier"))
            continue
        if code in steps:
            errors.append(FieldError(f"{p}.code", f"step {code} appears twice"))
            continue
        name = s.get("name")
        if not name:
            errors.append(FieldError(f"{p}.name", "is required"))
        role = s.get("role")
        if not role or not isinstance(role, str):
            errors.append(FieldError(f"{p}.role", "is required"))
        org_level = s.get("org_level", "station")
        if org_level not in ORG_LEVELS:
            errors.append(FieldError(f"{p}.org_level", f"unknown org level {org_level!r}"))
        split = s.get("split", "exclusive")
        if split not in ("exclusive", "parallel"):
            errors.append(FieldError(f"{p}.split", "must be exclusive or parallel"))
        transitions = []
        for j, t in enumerate(s.get("next") or []):
            tp = f"{p}.next[{j}]"
            if isinstance(t, str):
                t = {"to": t}
            if not isinstance(t, dict) or not isinstance(t.get("to"), str):
                errors.append(FieldError(tp, "must name the step it goes to"))
                continue
            if t.get("when") is not None:
                check_condition(t["when"], f"{tp}.when", errors)
            transitions.append(Transition(to=t["to"], when=t.get("when"), label=str(t.get("label", ""))))
        assign = s.get("assign", "candidates")
        if assign not in ("candidates", "initiator"):
            errors.append(FieldError(f"{p}.assign", "must be candidates or initiator"))
        steps[code] = StepDef(
            code=code,
            name=str(name or code),
            role=str(role or ""),
            org_level=org_level,
            time_limit=_limit(s.get("time_limit"), f"{p}.time_limit", errors),
            form=_form(s.get("form"), f"{p}.form", errors),
            next=tuple(transitions),
            split=split,
            join=bool(s.get("join", False)),
            customer_side=bool(s.get("customer_side", False)),
            effect=str(s.get("effect", "")),
            assign=assign,
            can_send_back=bool(s.get("can_send_back", True)),
            attachments=tuple(str(a) for a in s.get("attachments") or []),
        )
        order.append(code)
    for code, st in steps.items():
        for j, t in enumerate(st.next):
            if t.to not in steps:
                idx = order.index(code)
                errors.append(FieldError(f"steps[{idx}].next[{j}].to", f"no step {t.to!r}"))
    start = spec.get("start") or (order[0] if order else "")
    if start not in steps:
        errors.append(FieldError("start", f"no step {start!r}"))
    if not any(s.is_end for s in steps.values()):
        errors.append(FieldError("steps", "no final step (a step without next)"))
    warn_share = _dec(spec.get("warn_share", "0.8"), "warn_share", errors)
    if warn_share is not None and warn_share >= 1:
        errors.append(FieldError("warn_share", "must be below 1"))
    escalate_share = _dec(spec.get("escalate_share", "1.0"), "escalate_share", errors)
    if escalate_share is not None and escalate_share < 1:
        errors.append(FieldError("escalate_share", "must be at least 1"))
    time_limit = _limit(spec.get("time_limit"), "time_limit", errors)
    start_form = _form(spec.get("start_form"), "start_form", errors)
    if errors:
        raise InvalidDefinition(errors)
    return Definition(
        start=start,
        steps=steps,
        time_limit=time_limit,
        warn_share=warn_share or Decimal("0.8"),
        escalate_share=escalate_share or Decimal("1.0"),
        start_form=start_form,
        order=tuple(order),
    )


# --- conditions ---------------------------------------------------------------------------------
def check_condition(cond: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(cond, dict) or len(cond) == 0:
        errors.append(FieldError(path, "a condition is an object"))
        return
    if "all" in cond or "any" in cond:
        key = "all" if "all" in cond else "any"
        items = cond[key]
        if not isinstance(items, list) or not items:
            errors.append(FieldError(f"{path}.{key}", "must be a non-empty list"))
            return
        for i, c in enumerate(items):
            check_condition(c, f"{path}.{key}[{i}]", errors)
        return
    if "not" in cond:
        check_condition(cond["not"], f"{path}.not", errors)
        return
    if not isinstance(cond.get("field"), str):
        errors.append(FieldError(f"{path}.field", "is required"))
    op = cond.get("op", "eq" if "value" in cond else "truthy")
    if op not in OPS:
        errors.append(FieldError(f"{path}.op", f"unknown operator {op!r}"))
    if op in ("in", "not_in") and not isinstance(cond.get("value"), list):
        errors.append(FieldError(f"{path}.value", "must be a list"))


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None


def _compare(left: Any, right: Any, op: str) -> bool:
    ln, rn = _num(left), _num(right)
    if ln is not None and rn is not None:
        a, b = ln, rn
    elif left is None or right is None:
        return False
    else:
        a, b = str(left), str(right)
    return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]


def _equal(left: Any, right: Any) -> bool:
    ln, rn = _num(left), _num(right)
    if ln is not None and rn is not None and not isinstance(left, str | bool):
        return ln == rn
    if isinstance(left, bool) or isinstance(right, bool):
        return bool(left) == bool(right) and isinstance(left, bool) == isinstance(right, bool)
    return left == right or (ln is not None and rn is not None and ln == rn)


def evaluate(cond: dict | None, data: dict) -> bool:
    """Evaluate a condition on (form) data. Unknown fields are missing; nothing is executed."""
    if cond is None:
        return True
    if "all" in cond:
        return all(evaluate(c, data) for c in cond["all"])
    if "any" in cond:
        return any(evaluate(c, data) for c in cond["any"])
    if "not" in cond:
        return not evaluate(cond["not"], data)
    value = data.get(cond["field"])
    op = cond.get("op", "eq" if "value" in cond else "truthy")
    expected = cond.get("value")
    if op == "eq":
        return _equal(value, expected)
    if op == "ne":
        return not _equal(value, expected)
    if op in ("gt", "ge", "lt", "le"):
        return _compare(value, expected, op)
    if op == "in":
        return any(_equal(value, e) for e in expected)
    if op == "not_in":
        return not any(_equal(value, e) for e in expected)
    if op == "truthy":
        return bool(value)
    if op == "falsy":
        return not value
    if op == "present":
        return value not in (None, "", [])
    raise ValueError(f"unknown operator {op!r}")


def route(step: StepDef, data: dict) -> list[str]:
    """Steps that follow `step` given the data: the first matching transition (exclusive) or
    every matching one (parallel). [] at the end of the process."""
    if step.is_end:
        return []
    matching = [t.to for t in step.next if evaluate(t.when, data)]
    if step.split == "parallel":
        return matching
    return matching[:1]


# --- forms --------------------------------------------------------------------------------------
def clean_form(fields: tuple[FormField, ...], data: Any, *, prefix: str = "form") -> dict[str, Any]:
    """Validate form data against the step's fields; returns JSON-safe cleaned values
    (decimals as strings, dates ISO). Unknown keys are refused."""
    errors: list[FieldError] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput([FieldError(prefix, "must be an object")])
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            errors.append(FieldError(f"{prefix}.{key}", "is not a field of this step"))
    out: dict[str, Any] = {}
    for f in fields:
        p = f"{prefix}.{f.name}"
        raw = data.get(f.name)
        empty = raw is None or (isinstance(raw, str) and not raw.strip()) or raw == []
        if empty:
            if f.required and f.type != "bool":
                errors.append(FieldError(p, f"{f.label} is required"))
            if f.type == "bool":
                out[f.name] = False
            continue
        if f.type in ("text", "textarea"):
            if not isinstance(raw, str):
                errors.append(FieldError(p, "must be text"))
            elif len(raw.strip()) > f.max_length:
                errors.append(FieldError(p, f"is too long: at most {f.max_length} characters"))
            else:
                out[f.name] = raw.strip()
        elif f.type in ("int", "decimal"):
            if isinstance(raw, bool | float):
                errors.append(FieldError(p, "must be a number written as text or an integer"))
                continue
            text = str(raw).strip()
            if f.type == "int" and not re.fullmatch(r"-?\d+", text):
                errors.append(FieldError(p, "must be a whole number"))
                continue
            d = _num(text)
            if d is None or not d.is_finite():
                errors.append(FieldError(p, f"{raw!r} is not a number"))
                continue
            if f.min_value is not None and d < f.min_value:
                errors.append(FieldError(p, f"must be at least {f.min_value}"))
                continue
            out[f.name] = int(d) if f.type == "int" else str(d)
        elif f.type == "date":
            try:
                out[f.name] = date.fromisoformat(str(raw).strip()).isoformat()
            except ValueError:
                errors.append(FieldError(p, "must be a date YYYY-MM-DD"))
        elif f.type == "bool":
            if isinstance(raw, bool):
                out[f.name] = raw
            elif str(raw).lower() in ("true", "1", "on", "yes"):
                out[f.name] = True
            elif str(raw).lower() in ("false", "0", "off", "no"):
                out[f.name] = False
            else:
                errors.append(FieldError(p, "must be true or false"))
        elif f.type == "choice":
            values = [c[0] for c in f.choices]
            if str(raw) not in values:
                errors.append(FieldError(p, f"unknown value {raw!r}; expected one of: {', '.join(values)}"))
            else:
                out[f.name] = str(raw)
        elif f.type == "multichoice":
            values = [c[0] for c in f.choices]
            items = raw if isinstance(raw, list) else [raw]
            bad = [str(x) for x in items if str(x) not in values]
            if bad:
                errors.append(FieldError(p, f"unknown values: {', '.join(bad)}"))
            else:
                out[f.name] = [str(x) for x in items]
    if errors:
        raise InvalidInput(errors)
    return out
