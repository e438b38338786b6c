"""Seed throughput: the demo builder loading N customers into a fresh PostgreSQL database.

`python benchmarks/seed.py --scale N` (default 1,000,000) drops and recreates the database of
MMIS_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/mmis_bench), migrates it,
runs the demo builder (`python -m mmis demo`: org tree, logins, and per customer the customer,
address, account, metering point, meter, CT/PT, contract and their history rows, by COPY), prints
a table of rows and seconds per table group and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/mmis_bench"
CUSTOMER_FILE_STEPS = ("orgs", "users", "customers")
GROUPS = {
    "customers": ("customers_customer", "customers_historicalcustomer"),
    "addresses": ("customers_serviceaddress", "customers_historicalserviceaddress"),
    "accounts": ("customers_account", "customers_historicalaccount"),
    "metering points": ("customers_meteringpoint", "customers_historicalmeteringpoint"),
    "contracts": ("customers_supplycontract", "customers_historicalsupplycontract"),
    "meters": ("assets_meter", "assets_historicalmeter"),
    "CT/PT": ("assets_instrumenttransformer", "assets_historicalinstrumenttransformer"),
}


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing to drop a database named {name!r}")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "mmis", "manage", "migrate", "--skip-checks", "-v0"],
        check=True,
        env=env,
        cwd=ROOT,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=1_000_000, help="customers (default 1,000,000)")
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args(argv)
    url = os.environ.get("MMIS_BENCH_DATABASE_URL", DEFAULT_URL)

    t0 = time.perf_counter()
    recreate_database(url)
    env = {**os.environ, "MMIS_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "src")}
    migrate(env)
    prepare_s = time.perf_counter() - t0

    # Django reads the database URL once, at set-up: point it at the bench database first.
    os.environ["MMIS_DATABASE_URL"] = url
    from mmis.cli.django_setup import setup

    setup()
    from mmis.cli.demo import DemoContext, build
    from mmis.cli.demo.builder import STEPS

    # The customer file only (org tree, logins, customers with their whole file): later demo steps
    # (tariffs, readings, bills, payments) are measured by their own benchmarks.
    steps = [s for s in STEPS if s.name in CUSTOMER_FILE_STEPS]
    ctx = DemoContext(customers=args.scale, seed=args.seed, progress=sys.stderr.isatty(), log=lambda _m: None)
    t1 = time.perf_counter()
    build(ctx, steps)
    seconds = time.perf_counter() - t1

    report = ctx.report("customers")
    rows_total = sum(sum(r.rows.values()) for r in ctx.reports)
    n = args.scale
    print(
        f"seed benchmark: {n:,} customers into {urlsplit(url).path.lstrip('/')} "
        f"(drop, create, migrate: {prepare_s:.1f} s)"
    )
    print()
    print(f"{'step / table group':<24}{'rows':>12}{'seconds':>10}{'customers/s':>14}")
    print("-" * 60)
    for r in ctx.reports:
        print(
            f"{'step ' + r.name:<24}{sum(r.rows.values()):>12,}{r.seconds:>10.2f}"
            f"{(n / r.seconds if r.name == 'customers' and r.seconds else 0):>14,.0f}"
        )
    for group, tables in GROUPS.items():
        rows = sum(report.rows.get(t, 0) for t in tables)
        secs = sum(report.table_seconds.get(t, 0.0) for t in tables)
        print(f"  COPY {group:<19}{rows:>12,}{secs:>10.2f}{(n / secs if secs else 0):>14,.0f}")
    for key in ("(generate)", "(encrypt)", "(rebuild indexes)"):
        secs = report.table_seconds.get(key, 0.0)
        label = "python " + key[1:-1] if key != "(rebuild indexes)" else "rebuild indexes+FKs"
        print(f"  {label:<22}{'':>12}{secs:>10.2f}{(n / secs if secs else 0):>14,.0f}")
    print("-" * 60)
    print(f"{'total':<24}{rows_total:>12,}{seconds:>10.2f}{n / seconds:>14,.0f}")
    print("(COPY runs in a writer thread while Python generates the next chunk: the parts overlap)")
    print(
        json.dumps(
            {
                "bench": "seed",
                "scale": n,
                "seconds": round(seconds, 2),
                "customers_per_s": round(n / seconds),
                "rows": rows_total,
                "rows_per_s": round(rows_total / seconds),
                "customer_step_seconds": round(report.seconds, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
