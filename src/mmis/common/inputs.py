"""Reading untrusted JSON-like input into exact values, collecting every error with its path.

Decimals must arrive as strings: a JSON number where a decimal is expected is an error, because
binary floats cannot carry prices exactly (spec/README.md). `mmis.cli.jsonio` parses JSON floats
into `JsonNumber` so they can be told apart from strings here.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from mmis.common.errors import FieldError, InvalidInput, join_path

_DECIMAL_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
MISSING = object()


class JsonNumber(str):
    """A JSON number literal kept as its text (so it is never a float)."""


class Reader:
    """Collects errors while reading fields; call `raise_if_errors()` at the end."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise InvalidInput(self.errors)

    # --- containers -------------------------------------------------------------------------
    def obj(self, value: Any, path: str, *, required: bool = True) -> dict | None:
        if value is MISSING or value is None:
            if required:
                self.error(path, "is required" if value is MISSING else "must be an object, not null")
            return None
        if not isinstance(value, dict):
            self.error(path, "must be an object")
            return None
        return value

    def get(self, container: dict | None, key: str) -> Any:
        if container is None:
            return MISSING
        return container.get(key, MISSING)

    # --- scalars ----------------------------------------------------------------------------
    def decimal(
        self,
        container: dict | None,
        key: str,
        base: str = "",
        *,
        required: bool = True,
        default: Decimal | None = None,
        min_value: Decimal | None = None,
        positive: bool = False,
        allow_null: bool = False,
    ) -> Decimal | None:
        path = join_path(base, key)
        value = self.get(container, key)
        if value is MISSING or (value is None and allow_null):
            if value is MISSING and required and container is not None:
                self.error(path, "is required")
            return default
        return self.decimal_value(value, path, min_value=min_value, positive=positive)

    def decimal_value(
        self, value: Any, path: str, *, min_value: Decimal | None = None, positive: bool = False
    ) -> Decimal | None:
        if isinstance(value, JsonNumber) or (isinstance(value, int | float) and not isinstance(value, bool)):
            self.error(path, f'must be a decimal string such as "{value}", not a JSON number')
            return None
        if not isinstance(value, str) or not _DECIMAL_RE.match(value.strip()):
            self.error(path, 'must be a decimal number written as a string, e.g. "0.5469"')
            return None
        try:
            d = Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - regex above already guards
            self.error(path, "is not a valid decimal number")
            return None
        if positive and d <= 0:
            self.error(path, "must be greater than 0")
            return None
        if min_value is not None and d < min_value:
            self.error(path, "must not be negative" if min_value == 0 else f"must be at least {min_value}")
            return None
        return d

    def integer(
        self,
        container: dict | None,
        key: str,
        base: str = "",
        *,
        required: bool = True,
        default: int | None = None,
        min_value: int | None = None,
        positive: bool = False,
    ) -> int | None:
        path = join_path(base, key)
        value = self.get(container, key)
        if value is MISSING or value is None:
            if required and container is not None:
                self.error(path, "is required")
            return default
        if isinstance(value, bool):
            self.error(path, "must be a whole number")
            return None
        if isinstance(value, int):
            n = value
        elif (isinstance(value, JsonNumber) and re.fullmatch(r"-?\d+", value)) or (
            isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value)
        ):
            n = int(value)
        else:
            self.error(path, "must be a whole number")
            return None
        if positive and n <= 0:
            self.error(path, "must be greater than 0")
            return None
        if min_value is not None and n < min_value:
            self.error(path, "must not be negative" if min_value == 0 else f"must be at least {min_value}")
            return None
        return n

    def date(self, container: dict | None, key: str, base: str = "", *, required: bool = True) -> date | None:
        path = join_path(base, key)
        value = self.get(container, key)
        if value is MISSING or value is None:
            if required and container is not None:
                self.error(path, "is required")
            return None
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            self.error(path, "must be a date written YYYY-MM-DD")
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.error(path, f"{value} is not a real calendar date")
            return None

    def choice(
        self,
        container: dict | None,
        key: str,
        choices: tuple[str, ...] | list[str],
        base: str = "",
        *,
        required: bool = True,
        default: str | None = None,
    ) -> str | None:
        path = join_path(base, key)
        value = self.get(container, key)
        if value is MISSING or value is None:
            if required and container is not None:
                self.error(path, "is required")
            return default
        if not isinstance(value, str) or value not in choices:
            self.error(path, f"unknown value {value!r}; expected one of: {', '.join(choices)}")
            return None
        return value

    def string(
        self,
        container: dict | None,
        key: str,
        base: str = "",
        *,
        required: bool = True,
        max_length: int = 200,
    ) -> str | None:
        path = join_path(base, key)
        value = self.get(container, key)
        if value is MISSING or value is None:
            if required and container is not None:
                self.error(path, "is required")
            return None
        if not isinstance(value, str) or isinstance(value, JsonNumber):
            self.error(path, "must be a string")
            return None
        if len(value) > max_length:
            self.error(path, f"is longer than {max_length} characters")
            return None
        return value


def format_decimal(value: Decimal) -> str:
    """Print a quantity without trailing zeros and never in exponent form ("6813.2", "400000")."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text
