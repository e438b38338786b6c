"""`python -m mmis energy [FILE]`: billed energy from two register readings (spec/energy.md). No Django."""

from __future__ import annotations

from typing import Any

from mmis.cli.jsonio import run as run_json
from mmis.rating.energy import billed_energy_from_json


def handle(obj: Any) -> dict:
    return billed_energy_from_json(obj).to_dict()


def run(argv: list[str]) -> int:
    return run_json(argv, handle)
