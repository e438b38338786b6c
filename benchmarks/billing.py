"""Billing run throughput on PostgreSQL: seed N customers (the demo builder) with two register
readings each, run the month (in-process, then again from scratch on Celery with 2 worker
processes), and compare the run with a raw COPY of the same bill and bill-line rows. CPU seconds of
the run's processes and of this database's PostgreSQL backends give bills per CPU-hour.

`python benchmarks/billing.py --scale N` (default 1,000,000). Uses MMIS_BENCH_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/mmis_bench; the database is dropped and recreated) and, for the
Celery mode, MMIS_BENCH_BROKER_URL (default amqp://guest:guest@127.0.0.1:5672//; --no-celery skips).
Prints a table, then as the LAST line one JSON object with bills, seconds, bills_per_s,
copy_seconds, ratio_to_copy and wrong_bills (a random sample of 1,000 bills re-rated with the
scalar engine from their trace, compared line by line: must be 0).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/mmis_bench"
TRUNCATE_BILLING = (
    "TRUNCATE billing_auditflag, billing_billline, billing_correction, billing_bill,"
    " billing_runexception, billing_runtariff, billing_runpartition, billing_billingrun"
)
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"

READINGS_SQL = """
INSERT INTO readings_meterreading
  (org_id, metering_point_id, meter_id, reading_date, total, sharp, peak, flat, valley, reactive,
   max_demand, source, status, fault_flags, note, photo, entered_at)
SELECT p.org_id, p.id, m.id, d.day,
       b.base + CASE WHEN d.n = 1 THEN b.delta ELSE 0 END,
       CASE WHEN p.tou THEN b.base / 10 + CASE WHEN d.n = 1 THEN b.delta / 10 ELSE 0 END END,
       CASE WHEN p.tou THEN b.base * 3 / 10 + CASE WHEN d.n = 1 THEN b.delta * 3 / 10 ELSE 0 END END,
       CASE WHEN p.tou THEN b.base - b.base / 10 - 2 * (b.base * 3 / 10)
            + CASE WHEN d.n = 1 THEN b.delta - b.delta / 10 - 2 * (b.delta * 3 / 10) ELSE 0 END END,
       CASE WHEN p.tou THEN b.base * 3 / 10 + CASE WHEN d.n = 1 THEN b.delta * 3 / 10 ELSE 0 END END,
       b.base / 2 + CASE WHEN d.n = 1 THEN b.delta * 2 / 5 ELSE 0 END,
       CASE WHEN d.n = 1 THEN round(b.delta / 300.0, 4) END,
       'ami', 'valid', '[]', '', '', now()
FROM customers_meteringpoint p
LEFT JOIN assets_meter m ON m.metering_point_id = p.id
CROSS JOIN LATERAL (SELECT (100 + (p.id * 7919) % 90000)::numeric AS base,
                           (CASE WHEN p.usage_category = 'residential' THEN 30 + (p.id * 104729) % 600
                                 ELSE 200 + (p.id * 104729) % 5000 END)::numeric AS delta) b
CROSS JOIN (VALUES (0, DATE '2026-02-25'), (1, DATE '2026-03-25')) AS d(n, day)
"""


SEED_SCRIPT = """
import sys
from mmis.cli.django_setup import setup
setup()
from mmis.cli.demo import DemoContext, build
from mmis.cli.demo.builder import STEPS
steps = [s for s in STEPS if s.name in ("orgs", "users", "tariffs", "customers")]
build(DemoContext(customers=int(sys.argv[1]), progress=False), steps)
"""


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc; 0 for a process that is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by some processes and by this database's PostgreSQL backends while a run
    goes: backends come and go (the run's calculating thread opens its own connection), so they
    are sampled during the run and each one counts from its first sample to its last."""

    def __init__(self, pids: list[int]) -> None:
        from django.utils import timezone

        self.pids = pids
        self.started = timezone.now()
        self.seen: dict[int, list[float]] = {}
        self.last = 0.0
        self.sample(force=True)

    def _backends(self) -> list[tuple[int, bool]]:
        """This database's backends, and whether each started after the meter did."""
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute(
                "SELECT pid, backend_start >= %s FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend'",
                [self.started],
            )
            return cur.fetchall()

    def sample(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        keys = [("app", pid, False) for pid in self.pids]
        keys += [("pg", pid, new) for pid, new in self._backends()]
        for kind, pid, new in keys:
            cpu = _cpu_seconds(pid)
            first_last = self.seen.setdefault((kind, pid), [0.0 if new else cpu, cpu])
            first_last[1] = max(first_last[1], cpu)

    def seconds(self) -> tuple[float, float]:
        """(application CPU, PostgreSQL CPU) since the meter started."""
        self.sample(force=True)
        app = sum(b - a for (kind, _), (a, b) in self.seen.items() if kind == "app")
        pg = sum(b - a for (kind, _), (a, b) in self.seen.items() if kind == "pg")
        return app, pg


def env_for(url: str, broker: str = "") -> dict[str, str]:
    env = dict(os.environ)
    env["MMIS_DATABASE_URL"] = url
    env["MMIS_BROKER_URL"] = broker
    env["MMIS_VAR_DIR"] = str(Path("/tmp") / "mmis_bench_billing")
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def seed(url: str, scale: int) -> float:
    from seed import migrate, recreate_database

    t0 = time.perf_counter()
    recreate_database(url)
    env = env_for(url)
    migrate(env)
    # the customer-file steps of the demo only: the bench writes its own readings, and the demo's
    # later steps (a year of readings, billing, payments, work orders) are not what it measures
    subprocess.run([sys.executable, "-c", SEED_SCRIPT, str(scale)], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=1_000_000)
    p.add_argument(
        "--no-seed",
        action="store_true",
        help="reuse the seeded customers and readings (earlier billing output is removed first)",
    )
    p.add_argument("--no-celery", action="store_true")
    p.add_argument(
        "--celery-rerun",
        action="store_true",
        help="the Celery run replaces the in-process run's drafts (else: the month from scratch)",
    )
    p.add_argument("--sample", type=int, default=1000)
    args = p.parse_args(argv)
    url = os.environ.get("MMIS_BENCH_DATABASE_URL", DEFAULT_URL)
    broker = os.environ.get("MMIS_BENCH_BROKER_URL", DEFAULT_BROKER)
    seed_s = 0.0 if args.no_seed else seed(url, args.scale)
    for k, v in env_for(url).items():
        os.environ[k] = v
    os.environ.pop("MMIS_BROKER_URL", None)
    from mmis.cli.django_setup import setup

    setup()
    from django.db import connection
    from django.utils import timezone
    from tqdm import tqdm

    from mmis.billing import calc, services
    from mmis.billing.models import Bill, BillLine
    from mmis.common.periods import Period
    from mmis.org.models import Org

    month = Period.month(2026, 3)
    with connection.cursor() as cur:
        t0 = time.perf_counter()
        cur.execute("SELECT COUNT(*) FROM readings_meterreading")
        n_readings = cur.fetchone()[0]
        if not args.no_seed or n_readings == 0:
            cur.execute("DELETE FROM readings_meterreading")
            t0 = time.perf_counter()
            cur.execute(READINGS_SQL)
            n_readings = cur.rowcount
        if args.no_seed:  # the seeded file and readings again, but the month's FIRST run
            cur.execute(TRUNCATE_BILLING)
        cur.execute("ANALYZE")
    readings_s = time.perf_counter() - t0
    province = Org.objects.filter(depth=1).order_by("path").first()

    # --- in-process run ----------------------------------------------------------------------
    t0 = time.perf_counter()
    run = services.plan_run(org=province, month=month, actor=None, at=timezone.now())
    plan_s = time.perf_counter() - t0
    cpu0 = time.process_time()
    meter = CpuMeter([])

    def progress(part) -> None:
        bar.update(part.points)
        meter.sample()

    with tqdm(total=run.points_total, unit=" points", desc="in-process run", file=sys.stderr) as bar:
        run = services.run_in_process(run, progress=progress)
    run_s = time.perf_counter() - t0
    app_cpu, pg_cpu = time.process_time() - cpu0, meter.seconds()[1]
    bills = run.bills
    lines = BillLine.objects.filter(bill__run=run).count()

    # --- raw COPY of the same rows into tables of the same shape (indexes included) ---------
    with connection.cursor() as cur:
        bill_txt, line_txt = io.StringIO(), io.StringIO()
        raw = cur.cursor
        with raw.copy(f"COPY (SELECT * FROM billing_bill WHERE run_id = {run.pk}) TO STDOUT") as cp:
            for chunk in cp:
                bill_txt.write(bytes(chunk).decode())
        with raw.copy(
            f"COPY (SELECT l.* FROM billing_billline l JOIN billing_bill b ON b.id = l.bill_id "
            f"WHERE b.run_id = {run.pk}) TO STDOUT"
        ) as cp:
            for chunk in cp:
                line_txt.write(bytes(chunk).decode())
        cur.execute("DROP TABLE IF EXISTS bench_bill, bench_line")
        cur.execute(
            "CREATE UNLOGGED TABLE bench_bill (LIKE billing_bill INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        cur.execute(
            "CREATE UNLOGGED TABLE bench_line (LIKE billing_billline INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        cur.execute("ALTER TABLE bench_bill SET LOGGED")
        cur.execute("ALTER TABLE bench_line SET LOGGED")
        connection.commit() if not connection.get_autocommit() else None
        t0 = time.perf_counter()
        with raw.copy("COPY bench_bill FROM STDIN") as cp:
            cp.write(bill_txt.getvalue())
        with raw.copy("COPY bench_line FROM STDIN") as cp:
            cp.write(line_txt.getvalue())
        copy_s = time.perf_counter() - t0
        cur.execute("DROP TABLE bench_bill, bench_line")

    # --- scalar engine on a random sample -----------------------------------------------------
    ids = list(Bill.objects.filter(run=run).values_list("pk", flat=True))
    rng = random.Random(42)
    sample = rng.sample(ids, min(args.sample, len(ids)))
    versions = services.run_versions(run.pk)
    wrong = 0
    for b in Bill.objects.filter(pk__in=sample).prefetch_related("lines"):
        results = calc.scalar_rate(b.full_trace, versions)
        expected = [(s, ln.code, ln.quantity, ln.price, ln.amount) for s, r in results for ln in r.lines]
        got = [(ln.segment, ln.code, ln.quantity, ln.price, ln.amount) for ln in b.lines.all()]
        if got != expected or b.amount != sum(r.total for _, r in results):
            wrong += 1

    # --- Celery mode: 2 worker processes, same code path ------------------------------------
    celery_s = None
    celery_bills = None
    celery_cpu = (0.0, 0.0)
    if not args.no_celery:
        if not args.celery_rerun:  # the same month from scratch, so both modes do the same work
            with connection.cursor() as cur:
                cur.execute(TRUNCATE_BILLING)
                cur.execute("ANALYZE")
        celery_s, celery_bills, celery_cpu = celery_run(url, broker, province.pk, month)

    per_cpu_h = bills / (app_cpu + pg_cpu) * 3600 if app_cpu + pg_cpu else 0.0
    rows = [
        ("customers seeded (demo builder)", f"{args.scale:,}", f"{seed_s:.1f} s" if seed_s else "reused"),
        ("register readings (SQL)", f"{n_readings:,}", f"{readings_s:.1f} s"),
        ("plan (partitions)", f"{run.partitions_total:,}", f"{plan_s:.2f} s"),
        ("run in-process: bills", f"{bills:,}", f"{run_s:.1f} s"),
        ("  bill lines", f"{lines:,}", ""),
        ("  exceptions", f"{run.exceptions:,}", ""),
        ("  held for audit", f"{run.flagged:,}", ""),
        ("  bills/s (1 process)", f"{bills / run_s:,.0f}", f"{bills / run_s * 3600:,.0f} /h"),
        (
            "  CPU: Python + PostgreSQL",
            f"{app_cpu:,.1f} + {pg_cpu:,.1f} s",
            f"{per_cpu_h:,.0f} bills per CPU-hour",
        ),
        ("raw COPY of the same rows", f"{bills + lines:,}", f"{copy_s:.1f} s"),
        ("run / COPY", f"{run_s / copy_s:.2f}×", "target ≤ 3×"),
        ("scalar check: wrong bills", f"{wrong} / {len(sample)}", ""),
        ("load average (1, 5, 15 min)", " ".join(f"{x:.1f}" for x in os.getloadavg()), "shared machine"),
    ]
    if celery_s is not None:
        c_cpu = sum(celery_cpu)
        rows.append(("run on Celery, 2 workers: bills", f"{celery_bills:,}", f"{celery_s:.1f} s"))
        rows.append(
            (
                "  bills/s (2 workers)",
                f"{celery_bills / celery_s:,.0f}",
                "replacing the drafts above" if args.celery_rerun else "the month from scratch",
            )
        )
        rows.append(
            (
                "  CPU: workers + PostgreSQL",
                f"{celery_cpu[0]:,.1f} + {celery_cpu[1]:,.1f} s",
                f"{celery_bills / c_cpu * 3600:,.0f} bills per CPU-hour" if c_cpu else "",
            )
        )
    w = max(len(r[0]) for r in rows)
    print(f"{'billing run':<{w}}  {'count':>14}  time")
    for a, b, c in rows:
        print(f"{a:<{w}}  {b:>14}  {c}")
    print(
        json.dumps(
            {
                "bench": "billing",
                "scale": args.scale,
                "bills": bills,
                "lines": lines,
                "seconds": round(run_s, 2),
                "bills_per_s": round(bills / run_s, 1),
                "copy_seconds": round(copy_s, 2),
                "ratio_to_copy": round(run_s / copy_s, 2),
                "wrong_bills": wrong,
                "cpu_seconds": round(app_cpu + pg_cpu, 1),
                "bills_per_cpu_hour": round(per_cpu_h),
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "celery_workers": 2 if celery_s is not None else 0,
                "celery_seconds": None if celery_s is None else round(celery_s, 2),
                "celery_bills_per_s": None if celery_s is None else round(celery_bills / celery_s, 1),
                "celery_cpu_seconds": None if celery_s is None else round(sum(celery_cpu), 1),
            }
        )
    )
    return 0


def _children(parent: int) -> list[int]:
    """The celery master and its worker processes."""
    out = [parent]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def celery_run(url: str, broker: str, org_id: int, month) -> tuple[float, int, tuple[float, float]]:
    """Plan a fresh run of the month and let 2 Celery worker processes calculate it."""
    from django.utils import timezone

    from mmis.billing import services
    from mmis.billing.models import BillingRun
    from mmis.org.models import Org

    env = env_for(url, broker)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mmis",
            "worker",
            "-c",
            "2",
            "-l",
            "WARNING",
            "-P",
            "prefork",
            "-n",
            f"bench{os.getpid()}@%h",
            "-Q",
            "celery",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(4)
        os.environ["MMIS_BROKER_URL"] = broker
        from celery import current_app

        current_app.conf.task_always_eager = False
        current_app.conf.broker_url = broker
        run = services.plan_run(
            org=Org.objects.get(pk=org_id),
            month=month,
            actor=None,
            at=timezone.now(),
            mode=BillingRun.Mode.CELERY,
        )
        t0 = time.perf_counter()
        meter = CpuMeter(_children(worker.pid))
        services.dispatch(run)
        while True:
            run.refresh_from_db()
            if run.partitions_done + run.partitions_failed >= run.partitions_total:
                break
            meter.sample()
            time.sleep(0.2)
        return time.perf_counter() - t0, run.bills, meter.seconds()
    finally:
        worker.terminate()
        worker.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
