"""Rating throughput: the vectorised engine against the scalar Decimal engine.

`python benchmarks/rating.py --scale N` builds N synthetic customers with a realistic mix of
tariffs (residential tiered monthly and annual, TOU C&I with funds, two-part large industry
with PF and demand, agricultural flat), rates them all with `mmis.rating.vector` (compute only,
timed) and a sample with the scalar engine, checks that both agree on the sample to the fen,
prints a table and, as the last line, one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmis.common.periods import Period
from mmis.rating.engine import rate
from mmis.rating.tariff import TOU_PERIODS, Tariff, Usage, parse_tariff
from mmis.rating.vector import UsageBatch, rate_batch

Q = 10_000
MARCH = Period(date(2026, 3, 1), date(2026, 4, 1))
FUNDS = [
    {"code": "hydro_project", "price": "0.00196875"},
    {"code": "reservoir_resettlement", "price": "0.0062"},
    {"code": "renewable", "price": "0.019"},
    {"code": "rural_grid_loan", "price": "0.02"},
]
TARIFFS: dict[str, tuple[float, dict]] = {
    "residential tiered monthly": (
        0.60,
        {
            "energy": {
                "type": "tiered",
                "basis": "monthly",
                "tiers": [
                    {"up_to": "210", "price": "0.5469"},
                    {"up_to": "400", "price": "0.5969"},
                    {"up_to": None, "price": "0.8469"},
                ],
                "household_bonus": {"min_persons": 5, "tier1_extra": "100"},
            },
            "funds": [{"code": "reservoir_resettlement", "price": "0.0062"}],
        },
    ),
    "residential tiered annual": (
        0.15,
        {
            "energy": {
                "type": "tiered",
                "basis": "annual",
                "tiers": [
                    {"up_to": "2760", "price": "0.538"},
                    {"up_to": "4800", "price": "0.588"},
                    {"up_to": None, "price": "0.838"},
                ],
            },
            "funds": [{"code": "reservoir_resettlement", "price": "0.0062"}],
        },
    ),
    "TOU C&I with funds": (
        0.15,
        {
            "energy": {"type": "tou", "prices": {"peak": "1.0345", "flat": "0.6896", "valley": "0.3447"}},
            "funds": FUNDS,
        },
    ),
    "two-part industry, PF, demand": (
        0.05,
        {
            "energy": {
                "type": "tou",
                "prices": {"sharp": "1.2750", "peak": "1.0200", "flat": "0.6000", "valley": "0.2280"},
            },
            "basic": {"type": "demand_contract", "price": "28", "contract_kw": "1000"},
            "power_factor": {"standard": "0.90"},
            "funds": FUNDS,
        },
    ),
    "agricultural flat": (
        0.05,
        {
            "energy": {"type": "flat", "price": "0.4883"},
            "funds": [{"code": "reservoir_resettlement", "price": "0.0062"}],
        },
    ),
}


@dataclass
class Group:
    name: str
    tariff: Tariff
    batch: UsageBatch


def _kwh(rng: np.random.Generator, n: int, mean_kwh: float) -> np.ndarray:
    """kWh with two decimals (register delta × multiplier), as 1/10,000 integers."""
    return (rng.gamma(2.0, mean_kwh / 2.0, n) * 100).astype(np.int64) * 100


def build(scale: int, seed: int = 7) -> list[Group]:
    rng = np.random.default_rng(seed)
    groups = []
    names = list(TARIFFS)
    counts = [int(TARIFFS[name][0] * scale) for name in names]
    counts[0] += scale - sum(counts)
    for name, n in zip(names, counts, strict=True):
        tariff = parse_tariff(TARIFFS[name][1])
        e = tariff.energy
        if e.type == "tou":
            mean = 60_000 if tariff.basic else 8_000
            shares = {"sharp": 0.05, "peak": 0.25, "flat": 0.35, "valley": 0.35}
            tou = {p: _kwh(rng, n, mean * shares[p]) for p in TOU_PERIODS if p in e.prices}
            kwh = sum(tou.values())
        else:
            tou = None
            kwh = _kwh(rng, n, 250 if "residential" in name else 1_500)
        batch = UsageBatch(
            kwh=kwh,
            ytd_kwh=(rng.integers(0, 5_000, n) * Q).astype(np.int64),
            persons=rng.integers(1, 7, n),
            tou_kwh=tou,
            kvarh=(kwh * rng.uniform(0.2, 0.8, n)).astype(np.int64) // 100 * 100,
            max_demand_kw=(rng.integers(600, 1_400, n) * Q).astype(np.int64),
            proration_days=30,
        )
        groups.append(Group(name, tariff, batch))
    return groups


def usage_of(batch: UsageBatch, i: int) -> Usage:
    def d(a: np.ndarray) -> Decimal:
        return Decimal(int(a[i])).scaleb(-4)

    return Usage(
        kwh=d(batch.kwh),
        tou_kwh={p: d(a) for p, a in batch.tou_kwh.items()} if batch.tou_kwh else None,
        ytd_kwh=d(batch.ytd_kwh),
        persons=int(batch.persons[i]),
        kvarh=d(batch.kvarh),
        max_demand_kw=d(batch.max_demand_kw),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1_000_000, help="synthetic customers (default 1,000,000)")
    ap.add_argument("--sample", type=int, default=20_000, help="customers rated by the scalar engine")
    ap.add_argument("--repeat", type=int, default=3, help="vector passes; the best is reported")
    args = ap.parse_args()
    groups = build(args.scale)

    best = float("inf")
    per_group: dict[str, float] = {}
    results = {}
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        for g in groups:
            t0 = time.perf_counter()
            results[g.name] = rate_batch(g.tariff, g.batch)
            per_group[g.name] = min(per_group.get(g.name, float("inf")), time.perf_counter() - t0)
        best = min(best, time.perf_counter() - start)
    vector_rate = args.scale / best

    # scalar sample, proportional to the mix; inputs are built before the clock starts
    sample = min(args.sample, args.scale)
    cases = []
    for g in groups:
        n = len(g.batch)
        k = max(1, round(sample * n / args.scale))
        for i in np.linspace(0, n - 1, k).astype(int):
            cases.append((g, int(i), usage_of(g.batch, int(i))))
    start = time.perf_counter()
    scalar = [rate(g.tariff, u, MARCH) for g, _, u in cases]
    scalar_seconds = time.perf_counter() - start
    scalar_rate = len(cases) / scalar_seconds

    mismatches = sum(
        1 for (g, i, _), r in zip(cases, scalar, strict=True) if results[g.name].total_of(i) != r.total
    )
    billed = sum(int(r.total.sum()) for r in results.values()) / 100

    print(f"{'tariff group':<32}{'customers':>12}{'seconds':>10}{'bills/s':>14}")
    for g in groups:
        n = len(g.batch)
        print(f"{g.name:<32}{n:>12,}{per_group[g.name]:>10.3f}{n / per_group[g.name]:>14,.0f}")
    print(f"{'vectorised, all groups':<32}{args.scale:>12,}{best:>10.3f}{vector_rate:>14,.0f}")
    print(
        f"{'scalar Decimal engine (sample)':<32}{len(cases):>12,}{scalar_seconds:>10.3f}{scalar_rate:>14,.0f}"
    )
    print(
        f"ratio vector/scalar: {vector_rate / scalar_rate:,.1f}x; sample totals equal to the fen: "
        f"{len(cases) - mismatches}/{len(cases)}; billed {billed:,.2f} yuan"
    )
    print(
        json.dumps(
            {
                "bench": "rating",
                "scale": args.scale,
                "vector_bills_per_s": round(vector_rate),
                "scalar_bills_per_s": round(scalar_rate),
                "ratio": round(vector_rate / scalar_rate, 1),
                "vector_seconds": round(best, 4),
                "scalar_sample": len(cases),
                "sample_mismatches": mismatches,
            }
        )
    )
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
