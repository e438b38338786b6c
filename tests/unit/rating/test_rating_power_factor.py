"""The generated national power-factor tables equal spec/vectors/power_factor_table.json."""

from __future__ import annotations

import json
import os
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmis.common.inputs import format_decimal
from mmis.rating.power_factor import STANDARDS, adjustment_rate_for, pf_hundredths_exact, power_factor, table

REPO_ROOT = Path(__file__).resolve().parents[3]
SPEC_DIR = Path(os.environ.get("MMIS_SPEC_DIR") or REPO_ROOT.parent / "shared" / "spec")


def _spec_table() -> dict:
    path = SPEC_DIR / "vectors" / "power_factor_table.json"
    if not path.is_file():
        raise FileNotFoundError(f"power-factor table not found at {path}; set MMIS_SPEC_DIR")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("standard", STANDARDS)
def test_generated_table_equals_spec_entry_by_entry(standard: str) -> None:
    spec = _spec_table()[standard]
    ours = table(standard)
    assert list(spec) == list(ours)
    assert len(ours) == 101
    for pf, rate in spec.items():
        assert format_decimal(ours[pf]) == rate, f"standard {standard}, PF {pf}"


@pytest.mark.parametrize(
    ("standard", "pf", "percent"),
    [
        ("0.90", 95, "-0.75"),
        ("0.90", 94, "-0.60"),
        ("0.90", 89, "0.5"),
        ("0.90", 70, "10"),
        ("0.90", 65, "15"),
        ("0.90", 60, "25"),
        ("0.90", 54, "37"),
        ("0.85", 90, "-0.50"),
        ("0.85", 91, "-0.65"),
        ("0.85", 94, "-1.10"),
        ("0.85", 100, "-1.10"),
        ("0.85", 54, "27"),
        ("0.80", 90, "-1.00"),
        ("0.80", 91, "-1.15"),
        ("0.80", 92, "-1.30"),
        ("0.80", 60, "10"),
        ("0.80", 54, "17"),
    ],
)
def test_domain_table_rows(standard: str, pf: int, percent: str) -> None:
    assert adjustment_rate_for(standard, pf) == D(percent) / 100


@pytest.mark.parametrize(
    ("kwh", "kvarh", "pf"),
    [
        ("300000", "98000", "0.95"),  # 0.9506
        ("100000", "48500", "0.90"),  # 0.89976… rounds up to 0.90
        ("400000", "250000", "0.85"),  # 0.8480
        ("1000", "0", "1.00"),
        ("0", "5", "0.00"),
        ("0", "0", "1.00"),
        ("3", "4", "0.60"),  # exact
    ],
)
def test_power_factor_rounding(kwh: str, kvarh: str, pf: str) -> None:
    assert power_factor(D(kwh), D(kvarh)) == D(pf)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_power_factor_matches_high_precision_decimal(a: int, b: int) -> None:
    from decimal import ROUND_HALF_UP, localcontext

    k = pf_hundredths_exact(a, b)
    if b == 0:
        assert k == 100
        return
    with localcontext() as ctx:
        ctx.prec = 80
        pf = D(a) / (D(a) ** 2 + D(b) ** 2).sqrt()
        assert int((pf * 100).quantize(D(1), rounding=ROUND_HALF_UP)) == k
