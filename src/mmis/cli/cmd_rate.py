"""`python -m mmis rate [FILE]`: one bill's charges (spec/rating.md). No Django."""

from __future__ import annotations

from typing import Any

from mmis.cli.jsonio import run as run_json
from mmis.rating.engine import rate
from mmis.rating.tariff import parse_rate_request


def handle(obj: Any) -> dict:
    request = parse_rate_request(obj)
    return rate(request.tariff, request.usage, request.period).to_dict()


def run(argv: list[str]) -> int:
    return run_json(argv, handle)
