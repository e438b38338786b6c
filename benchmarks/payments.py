"""Payments benchmark (PostgreSQL).

1. Bank withholding: N accounts with one open charge each, one batch exported, its result file
   (all successful) imported and posted: rows/s of `import_results` (parse, validate, post).
2. API: counter payments (cash) through POST /api/v1/payments with an Idempotency-Key and an API
   token, from C keep-alive connections of one asyncio client (raw HTTP/1.1, cheap) to gunicorn
   (gthread) on 127.0.0.1 only (bounded request count and time): payments/s, p50/p99 latency,
   errors, server CPU per payment (gunicorn + PostgreSQL: what the machine would sustain with
   its cores free), client CPU.
3. Agency collection: a file paying M fresh accounts' charges on time (`--agency-rows`), imported
   and posted: rows/s of `agency.import_file`; then the ledger invariants.

    MMIS_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/mmis_bench \
        python benchmarks/payments.py --scale 1000000 --requests 5000

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setup_django(url: str) -> None:
    os.environ["MMIS_DATABASE_URL"] = url
    os.environ.setdefault("MMIS_VAR_DIR", "/tmp/mmis-bench-payments")
    sys.path.insert(0, str(REPO / "src"))
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmis.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def full_rows(model, rows: list[dict]) -> tuple[list[str], list[tuple]]:
    """Every concrete column (defaults filled) so COPY never misses a NOT NULL column."""
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and f.name not in rows[0])]
    names = [f.name for f in fields]
    defaults = {f.name: (f.get_default() if f.has_default() else None) for f in fields}
    return names, [tuple(r.get(n, defaults[n]) for n in names) for r in rows]


def seed(n: int) -> tuple:
    """Org, n bank-withholding accounts with one open charge each (COPY)."""
    from datetime import date
    from decimal import Decimal

    from django.db import transaction
    from django.utils import timezone

    from mmis.accounts.channels import _copy, _next_ids
    from mmis.accounts.models import LedgerEntry, LedgerLine
    from mmis.customers.models import Account, Customer
    from mmis.org import services as org_services
    from mmis.org.models import Org

    tag = uuid.uuid4().hex[:6]
    org_services.ensure_roles()
    prov = Org.objects.filter(depth=1).first() or org_services.create_org(
        parent=None, code="99", name="基准省公司", level=Org.Level.PROVINCE
    )
    county = org_services.create_org(parent=prov, code=f"B{tag}", name=f"基准县{tag}", level=Org.Level.COUNTY)
    now = timezone.now()
    chunk = 100_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        with transaction.atomic():
            cids = _next_ids(Customer, m)
            cust = [
                {
                    "id": cid,
                    "org": county.pk,
                    "customer_no": f"9{tag}{start + i:09d}",
                    "kind": "individual",
                    "name": f"基准客户{start + i}",
                    "id_type": "resident_id",
                    "opened_on": date(2020, 1, 1),
                    "created_at": now,
                    "updated_at": now,
                    "status": "active",
                }
                for i, cid in enumerate(cids)
            ]
            names, rows = full_rows(Customer, cust)
            _copy(Customer, names, rows)
            aids = _next_ids(Account, m)
            accs = [
                {
                    "id": aid,
                    "org": county.pk,
                    "customer": cid,
                    "account_no": f"8{tag}{start + i:09d}",
                    "name": f"基准客户{start + i}",
                    "payment_method": "bank_withholding",
                    "bank_name": "基准银行",
                    "bank_account_mask": "6222****0000",
                }
                for i, (aid, cid) in enumerate(zip(aids, cids, strict=True))
            ]
            names, rows = full_rows(Account, accs)
            _copy(Account, names, rows)
            eids = _next_ids(LedgerEntry, m)
            amt = Decimal("123.45")
            ents = [
                {
                    "id": eid,
                    "org": county.pk,
                    "account": aid,
                    "kind": "charge",
                    "document_no": f"BILL{eid}",
                    "amount": amt,
                    "due_date": date(2099, 1, 1),
                    "business_date": now.date(),
                    "posted_at": now,
                    "source_type": f"bench{tag}",
                    "source_id": eid,
                    "late_fee_class": "residential",
                }
                for eid, aid in zip(eids, aids, strict=True)
            ]
            names, rows = full_rows(LedgerEntry, ents)
            _copy(LedgerEntry, names, rows)
            lines = []
            for eid, aid in zip(eids, aids, strict=True):
                lines.append((eid, aid, "receivable", amt))
                lines.append((eid, None, "revenue", -amt))
            _copy(LedgerLine, ["entry", "account", "gl", "amount"], lines)
    # statistics, as autovacuum would have them for a ledger of this size
    from django.db import connection

    with connection.cursor() as cur:
        for model in (Customer, Account, LedgerEntry, LedgerLine):
            cur.execute(f'ANALYZE "{model._meta.db_table}"')
    return prov, county


def bench_batch(county) -> dict:
    from django.utils import timezone

    from mmis.accounts import channels
    from mmis.accounts.models import BankBatchLine

    t0 = time.perf_counter()
    batch = channels.export_batch(org=county, actor=None, at=timezone.now())
    export_s = time.perf_counter() - t0
    rows = (
        BankBatchLine.objects.filter(batch=batch)
        .order_by("line_no")
        .values_list("line_no", "account__account_no", "amount")
        .iterator(chunk_size=50000)
    )
    content = "".join(f"{ln},{acc},{amt},0000,BK{batch.batch_no}{ln}\n" for ln, acc, amt in rows)
    t0 = time.perf_counter()
    report = channels.import_results(batch=batch, content=content, actor=None, at=timezone.now())
    import_s = time.perf_counter() - t0
    return {"rows": batch.line_count, "export_s": export_s, "import_s": import_s, "report": report}


def bench_agency(county) -> dict:
    """An agency collection file paying every open charge of `county` on time (the set-based path):
    rows/s of `agency.import_file` (parse, validate, post)."""
    from datetime import timedelta

    from django.utils import timezone

    from mmis.accounts import agency
    from mmis.accounts.models import LedgerEntry

    paid_at = (timezone.localtime() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    rows = (
        LedgerEntry.objects.filter(org=county, kind="charge")
        .order_by("pk")
        .values_list("pk", "account__account_no", "amount")
        .iterator(chunk_size=50000)
    )
    content = "".join(f"AG{pk},{acc},{amt},{paid_at}\n" for pk, acc, amt in rows)
    t0 = time.perf_counter()
    report = agency.import_file(org=county, agency="基准代收", content=content, actor=None, at=timezone.now())
    return {"rows": report["rows"], "posted": report["posted"], "seconds": time.perf_counter() - t0}


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start in time")


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (Linux /proc; 0 for a process that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _server_pids(master: int) -> tuple[list[int], list[int]]:
    """gunicorn workers (children of the master) and this database's client backends."""
    from django.db import connection

    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    kids.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        backends = [r[0] for r in cur.fetchall()]
    return kids, backends


def _request_bytes(*, port: int, token: str, account_no: str, key: str) -> bytes:
    body = json.dumps({"account_no": account_no, "amount": "10.00", "channel": "cash"}).encode()
    head = (
        f"POST /api/v1/payments HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(
    port: int, reqs: list[bytes], deadline: float, lat: list[float], errors: list[int], trace: list
) -> None:
    """One keep-alive connection sending its requests one after the other (raw HTTP/1.1: the load
    generator must cost little of the 2 cores it shares with the server)."""
    reader = writer = None
    for req in reqs:
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        status, close = 0, True
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            low = head.lower()
            i = low.index(b"content-length:") + 15
            await reader.readexactly(int(low[i : low.index(b"\r\n", i)]))
            close = b"connection: close" in low
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        lat.append((time.perf_counter() - t0) * 1000)
        trace.append((t0, lat[-1], status))
        if status != 201:
            errors[0] += 1
        if close and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def _load(
    port: int, per_client: list[list[bytes]], max_seconds: float, trace: list | None = None
) -> tuple[list[float], int, float]:
    """Run the clients concurrently (one asyncio loop); latencies, errors, seconds. `trace`, if
    given, receives (start, ms, status) of every request."""
    lat: list[float] = []
    errors = [0]
    trace = [] if trace is None else trace

    async def run() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(
            *[_client(port, reqs, t0 + max_seconds, lat, errors, trace) for reqs in per_client]
        )
        return time.perf_counter() - t0

    seconds = asyncio.run(run())
    return lat, errors[0], seconds


def bench_api(
    county,
    *,
    requests: int,
    workers: int,
    threads: int,
    clients: int,
    port: int,
    max_seconds: float,
    cashiers: int,
    trace: list | None = None,
) -> dict:
    """gunicorn (gthread: `workers` processes × `threads` threads, persistent PostgreSQL
    connections) on 127.0.0.1 only; `clients` keep-alive connections from one asyncio loop in this
    process, each sending its share of the requests one after the other. Bounded: `requests`
    payments at most, and the clients stop after `max_seconds`."""
    from django.utils import timezone

    from mmis.accounts import services
    from mmis.customers.models import Account
    from mmis.org import services as org_services

    tokens = []
    for i in range(cashiers):
        u = org_services.create_user(
            username=f"bench_cashier_{uuid.uuid4().hex[:8]}",
            password="Bench@2026-x",
            org=county,
            roles=["cashier"],
            check_password=False,
        )
        services.open_session(cashier=u, at=timezone.now())
        tokens.append(org_services.issue_api_token(user=u, name=f"bench{i}"))
    warmup = 20 * clients
    account_nos = list(
        Account.objects.filter(org=county)
        .order_by("pk")
        .values_list("account_no", flat=True)[: max(requests + warmup, 1)]
    )

    def plan(keys: range) -> list[list[bytes]]:
        """Requests of each client: client c takes c, c+clients, … (distinct accounts at once)."""
        out: list[list[bytes]] = [[] for _ in range(clients)]
        for k in keys:
            c = k % clients
            out[c].append(
                _request_bytes(
                    port=port,
                    token=tokens[c % len(tokens)],
                    account_no=account_nos[k % len(account_nos)],
                    key=f"bench-{uuid.uuid4().hex}",
                )
            )
        return out

    env = {**os.environ, "MMIS_DEBUG": "0", "DJANGO_SETTINGS_MODULE": "mmis.settings"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--pythonpath",
            str(REPO / "src"),
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--keep-alive",
            "30",
            "--backlog",
            "256",
            "--log-level",
            "warning",
            "mmis.wsgi:application",
        ],
        env=env,
    )
    try:
        _wait_port(port, proc)
        # warm-up (not measured): every worker imports, connects, prepares its statements
        _load(port, plan(range(requests, requests + warmup)), 60.0)
        measured = plan(range(requests))
        workers_pids, pg_pids = _server_pids(proc.pid)
        cpu0 = _cpu_seconds(workers_pids)
        pg0 = {pid: _cpu_seconds([pid]) for pid in pg_pids}
        client0 = time.process_time()
        lat, errors, seconds = _load(port, measured, max_seconds, trace)
        client_cpu = time.process_time() - client0
        app_cpu = _cpu_seconds(workers_pids) - cpu0
        # backends replaced during the run (CONN_MAX_AGE) count from their start; the last
        # seconds of a backend that closed before the end are lost: a lower bound
        pg_now = _server_pids(proc.pid)[1]
        pg_cpu = sum(max(_cpu_seconds([pid]) - pg0.get(pid, 0.0), 0.0) for pid in set(pg_now) | set(pg0))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    lat.sort()
    n = len(lat)
    return {
        "requests": n,
        "seconds": seconds,
        "per_s": (n - errors) / seconds if seconds else 0.0,
        "p50": statistics.median(lat) if lat else 0.0,
        "p99": lat[min(n - 1, int(n * 0.99))] if lat else 0.0,
        "errors": errors,
        # CPU the server side (gunicorn workers + PostgreSQL backends) spent per payment: on a
        # shared machine this, not the wall-clock rate, says what 2 free cores would sustain
        "cpu_ms": (app_cpu + pg_cpu) * 1000 / n if n else 0.0,
        "app_cpu_ms": app_cpu * 1000 / n if n else 0.0,
        "pg_cpu_ms": pg_cpu * 1000 / n if n else 0.0,
        "client_cpu_ms": client_cpu * 1000 / n if n else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=1_000_000, help="bank withholding result rows")
    ap.add_argument("--requests", type=int, default=5000, help="API payments (bounded)")
    # one process: every payment in flight is group-committed with the others (two processes
    # halve the batches and measured more CPU per payment on both sides)
    ap.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    ap.add_argument("--threads", type=int, default=24, help="threads per worker (one DB connection each)")
    ap.add_argument("--clients", type=int, default=24, help="concurrent keep-alive client connections")
    ap.add_argument("--cashiers", type=int, default=12, help="cashiers (API tokens) the clients use")
    ap.add_argument("--max-seconds", type=float, default=180.0, help="stop the API load after this")
    ap.add_argument("--port", type=int, default=8111)
    ap.add_argument("--agency-rows", type=int, default=200_000, help="agency collection file rows (0: skip)")
    ap.add_argument(
        "--stalls",
        action="store_true",
        help="print the worst latency of each half second (finds server stalls)",
    )
    args = ap.parse_args(argv)
    url = os.environ.get("MMIS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/mmis_bench")
    setup_django(url)
    from mmis.accounts import queries

    t0 = time.perf_counter()
    _prov, county = seed(max(args.scale, args.requests + 20 * args.clients))
    seed_s = time.perf_counter() - t0
    b = bench_batch(county)
    a = bench_api(
        county,
        requests=args.requests,
        workers=args.workers,
        threads=args.threads,
        clients=args.clients,
        port=args.port,
        max_seconds=args.max_seconds,
        cashiers=args.cashiers,
        trace=(trace := []),
    )
    if args.stalls and trace:
        start = min(t for t, _ms, _st in trace)
        worst: dict[int, float] = {}
        for t, ms, _st in trace:
            k = int((t - start) * 2)
            worst[k] = max(worst.get(k, 0.0), ms)
        print("worst ms per 0.5 s: " + " ".join(f"{worst[k]:.0f}" for k in sorted(worst)))
    # after the API load: its figures are not disturbed by autovacuum of the rows this posts
    g = {"rows": 0, "posted": 0, "seconds": 0.0}
    if args.agency_rows:
        _p, agency_county = seed(args.agency_rows)
        g = bench_agency(agency_county)
    check = queries.ledger_check()
    rows_per_s = b["rows"] / b["import_s"] if b["import_s"] else 0.0
    print(f"{'figure':<34}{'value':>16}")
    print(f"{'seed rows (accounts+charges)':<34}{b['rows']:>16,}  ({seed_s:.1f} s)")
    print(f"{'batch export':<34}{b['export_s']:>15.1f}s")
    print(f"{'batch import + post':<34}{b['import_s']:>15.1f}s")
    print(f"{'batch rows/s':<34}{rows_per_s:>16,.0f}")
    agency_per_s = g["posted"] / g["seconds"] if g["seconds"] else 0.0
    print(f"{'agency file rows posted':<34}{g['posted']:>16,}  ({g['seconds']:.1f} s)")
    print(f"{'agency rows/s':<34}{agency_per_s:>16,.0f}")
    print(f"{'API payments':<34}{a['requests']:>16,}")
    print(f"{'API payments/s':<34}{a['per_s']:>16,.0f}")
    print(f"{'API p50 / p99 ms':<34}{a['p50']:>8.1f} / {a['p99']:.1f}")
    print(f"{'API errors':<34}{a['errors']:>16}")
    print(
        f"{'server CPU ms / payment':<34}{a['cpu_ms']:>16.1f}"
        f"  (gunicorn {a['app_cpu_ms']:.1f} + PostgreSQL ≥{a['pg_cpu_ms']:.1f})"
    )
    print(f"{'load client CPU ms / payment':<34}{a['client_cpu_ms']:>16.2f}")
    print(f"{'load average (1/5/15 min)':<34}{' '.join(f'{x:.2f}' for x in os.getloadavg()):>16}")
    print(f"{'ledger balanced':<34}{check['balanced']!s:>16}  ({check['entries']:,} entries)")
    print(
        json.dumps(
            {
                "bench": "payments",
                "scale": b["rows"],
                "batch_rows_per_s": round(rows_per_s, 1),
                "batch_seconds": round(b["import_s"], 2),
                "agency_rows_per_s": round(agency_per_s, 1),
                "api_requests": a["requests"],
                "api_payments_per_s": round(a["per_s"], 1),
                "p50_ms": round(a["p50"], 2),
                "p99_ms": round(a["p99"], 2),
                "errors": a["errors"],
                "ledger_balanced": bool(check["balanced"]),
                "server_cpu_ms_per_payment": round(a["cpu_ms"], 2),
                "app_cpu_ms_per_payment": round(a["app_cpu_ms"], 2),
                "pg_cpu_ms_per_payment": round(a["pg_cpu_ms"], 2),
                "client_cpu_ms_per_payment": round(a["client_cpu_ms"], 2),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
