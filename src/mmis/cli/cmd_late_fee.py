"""`python -m mmis late-fee [FILE]`: the late-payment fee (spec/late-fee.md). No Django."""

from __future__ import annotations

from typing import Any

from mmis.cli.jsonio import run as run_json
from mmis.rating.late_fee import late_fee_from_json


def handle(obj: Any) -> dict:
    return late_fee_from_json(obj).to_dict()


def run(argv: list[str]) -> int:
    return run_json(argv, handle)
