"""`python -m mmis demo [--customers N] [--seed S] [--if-empty] [--quiet]`: build the deterministic demo
utility (org tree, one login per role, customers with their whole file) and print the logins."""

from __future__ import annotations

import argparse
import sys
import time

from mmis.cli.django_setup import setup


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mmis demo", description=__doc__)
    p.add_argument("--customers", type=int, default=5000, help="number of customers (default 5000)")
    p.add_argument(
        "--seed", type=int, default=2026, help="random seed: same seed, same utility (default 2026)"
    )
    p.add_argument(
        "--if-empty", action="store_true", help="do nothing when the database already has customers"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, summary only")
    args = p.parse_args(argv)
    if args.customers < 0:
        p.error("--customers must not be negative")
    return args


def run(argv: list[str]) -> int:
    args = parse(argv)
    setup()
    from mmis.cli.demo import PASSWORD, DemoContext, build, has_customers
    from mmis.cli.demo.users import logins

    if args.if_empty and has_customers():
        print("demo: the database already has customers; nothing to do (--if-empty)")
        return 0
    ctx = DemoContext(
        customers=args.customers, seed=args.seed, progress=not args.quiet and sys.stderr.isatty()
    )
    t0 = time.perf_counter()
    build(ctx)
    seconds = time.perf_counter() - t0
    print(summary(ctx, seconds))
    print()
    print(f"demo logins (password for all: {PASSWORD}):")
    for username, _password, role, org in logins(ctx):
        print(f"  {username:<10} {role:<32} {org}")
    return 0


def summary(ctx, seconds: float) -> str:
    rows = {}
    for r in ctx.reports:
        for table, count in r.rows.items():
            rows[table] = rows.get(table, 0) + count
    lines = [
        f"demo utility built in {seconds:.1f} s (seed {ctx.seed}): {ctx.province.name}, "
        f"{len(ctx.cities)} cities, {len(ctx.counties)} counties, {len(ctx.stations)} stations, "
        f"{len(ctx.halls)} service halls",
    ]
    n = ctx.customers
    if n:
        lines.append(f"customers: {n:,} ({n / max(seconds, 1e-9):,.0f}/s overall)")
    for table, count in rows.items():
        lines.append(f"  {table:<44}{count:>12,}")
    return "\n".join(lines)
