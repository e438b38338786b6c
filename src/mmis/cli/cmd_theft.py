"""`python -m mmis theft [FILE]`: back-billing and penalty for theft (spec/theft.md). No Django."""

from __future__ import annotations

from typing import Any

from mmis.cli.jsonio import run as run_json
from mmis.rating.theft import theft_from_json


def handle(obj: Any) -> dict:
    return theft_from_json(obj).to_dict()


def run(argv: list[str]) -> int:
    return run_json(argv, handle)
