"""Money from input (`services.parse_amount`): plain digits with at most two decimals, positive,
never through a float; everything else a clear error naming the field."""

from decimal import Decimal as D

import pytest

from mmis.accounts.services import parse_amount
from mmis.common.errors import InvalidInput


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120.50", D("120.50")),
        (" 5 ", D("5.00")),
        ("+3", D("3.00")),
        (".5", D("0.50")),
        (5.5, D("5.50")),
        (3, D("3.00")),
    ],
)
def test_amounts_taken(value, expected):
    assert parse_amount(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e3", "is not a number"),
        ("1 000", "is not a number"),
        ("NaN", "is not a number"),
        ("Infinity", "is not a number"),
        ("abc", "is not a number"),
        ("-1", "must be greater than zero"),
        ("0", "must be greater than zero"),
        ("1.001", "at most two decimals"),
        ("", "is required"),
        (True, "must be a number"),
    ],
)
def test_amounts_refused_with_the_field_named(value, message):
    with pytest.raises(InvalidInput) as exc:
        parse_amount(value, "rows[3].amount")
    (err,) = exc.value.errors
    assert err.path == "rows[3].amount" and message in err.message
