"""Meter-data ingestion into PostgreSQL: (a) file import vs a raw COPY of the same rows, (b) MQTT
end to end from the AMI simulator to stored daily frozen rows, with losses counted.

`python benchmarks/ingest.py --scale N` (N readings in the file, default 1,000,000; the MQTT part
sends --mqtt-terminals × --mqtt-meters × --mqtt-days readings, default 200 × 1000 × 5 = 1,000,000,
QoS 1, one message per terminal and day; the listener side is --mqtt-listeners processes in one
shared subscription, default 2, each with --mqtt-writers threads, default 1, and an MQTT v5 receive
maximum of --mqtt-receive-maximum messages, default 200).
Reads MMIS_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/mmis_bench) and
MMIS_MQTT_URL (default mqtt://127.0.0.1:1883). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_URL = os.environ.get("MMIS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/mmis_bench")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            c.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    os.environ["MMIS_DATABASE_URL"] = BENCH_URL
    os.environ.setdefault("MMIS_VAR_DIR", "/tmp/mmis-bench")
    sys.path.insert(0, str(HERE.parent / "src"))
    from mmis.cli.django_setup import setup

    setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def station():
    from mmis.org import services as org_services
    from mmis.org.models import Org

    st = Org.objects.filter(code="B9010101").first()
    if st:
        return st
    p = Org.objects.filter(code="B9").first() or org_services.create_org(
        parent=None, code="B9", name="基准省", level="province"
    )
    c = org_services.create_org(parent=p, code="B901", name="基准市", level="city")
    k = org_services.create_org(parent=c, code="B90101", name="基准县", level="county")
    return org_services.create_org(parent=k, code="B9010101", name="基准供电所", level="station")


def bench_user():
    from mmis.org.models import User

    u = User.objects.filter(username="bench").first()
    return u or User.objects.create_superuser("bench", password="Bench@2026-x")


def ensure_points(n: int, org) -> list[tuple[int, str, int]]:
    """n metering points with installed meters: [(point id, point no, meter id)], bulk-created."""
    from mmis.assets.models import Meter
    from mmis.customers.models import Account, Customer, MeteringPoint, ServiceAddress

    have = MeteringPoint.objects.filter(point_no__startswith="BP").count()
    if have < n:
        cust = Customer.objects.filter(customer_no="BENCH0001").first() or Customer.objects.create(
            org=org,
            customer_no="BENCH0001",
            kind="organisation",
            name="基准客户",
            id_type="other",
            opened_on=date(2020, 1, 1),
        )
        addr = cust.addresses.first() or ServiceAddress.objects.create(
            org=org, customer=cust, region="基准", detail="1号", full_text="基准1号"
        )
        acct = cust.accounts.first() or Account.objects.create(
            org=org, customer=cust, account_no="BA0001", name="基准"
        )
        for start in range(have, n, 20000):
            stop = min(n, start + 20000)
            pts = MeteringPoint.objects.bulk_create(
                [
                    MeteringPoint(
                        org=org,
                        customer=cust,
                        account=acct,
                        address=addr,
                        point_no=f"BP{i:08d}",
                        usage_category="residential",
                        voltage_level="220V",
                        tou=True,
                    )
                    for i in range(start, stop)
                ]
            )
            Meter.objects.bulk_create(
                [
                    Meter(
                        org=org,
                        asset_no=f"BM{p.point_no[2:]}",
                        kind="single_phase",
                        state="installed",
                        metering_point=p,
                        tou=True,
                    )
                    for p in pts
                ]
            )
    rows = (
        MeteringPoint.objects.filter(point_no__startswith="BP")
        .order_by("point_no")
        .values_list("pk", "point_no")[:n]
    )
    meters = dict(Meter.objects.filter(asset_no__startswith="BM").values_list("metering_point_id", "pk"))
    return [(pk, no, meters[pk]) for pk, no in rows]


def make_csv(points, months: int) -> tuple[bytes, list[tuple[int, int, int, str, list[str]]]]:
    lines = ["point_no,reading_date,total,sharp,peak,flat,valley"]
    data = []
    first = date(2024, 1, 15)
    for k in range(months):
        d = date(first.year + (first.month - 1 + k) // 12, (first.month - 1 + k) % 12 + 1, 15).isoformat()
        for i, (pid, no, mid) in enumerate(points):
            total = 1000 + (i % 500) * 3 + k * (150 + i % 200)
            s, p, f = total // 10, total * 3 // 10, total * 4 // 10
            vals = [f"{total}.25", f"{s}.05", f"{p}.10", f"{f}.05", f"{total - s - p - f}.05"]
            lines.append(f"{no},{d},{','.join(vals)}")
            data.append((pid, mid, k, d, vals))
    return ("\n".join(lines) + "\n").encode(), data


def truncate(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


def part_a(scale: int) -> dict:
    from django.db import connection, transaction

    from mmis.readings import imports, services
    from mmis.readings.models import MeterReading

    months = 10 if scale >= 100 else 1
    org = station()
    user = bench_user()
    points = ensure_points(max(1, scale // months), org)
    t0 = time.perf_counter()
    csv_bytes, data = make_csv(points, months)
    gen = time.perf_counter() - t0
    print(f"file: {len(data):,} rows, {len(csv_bytes) / 1e6:.1f} MB (generated in {gen:.1f} s)")
    at = datetime(2026, 11, 1, tzinfo=UTC)
    at_text = str(MeterReading._meta.get_field("entered_at").get_db_prep_value(at, connection))
    rows = [
        (
            org.pk,
            pid,
            mid,
            d,
            *vals,
            None,
            None,
            "file",
            "pending_validation",
            "[]",
            "",
            "",
            user.pk,
            at_text,
            "1",
        )
        for pid, mid, _k, d, vals in data
    ]
    table = "readings_meterreading"
    truncate(table, "readings_readingexception")
    # raw COPY of the same rows
    t0 = time.perf_counter()
    with transaction.atomic():
        imports.write_rows(rows)
    copy_s = time.perf_counter() - t0
    truncate(table, "readings_readingexception")
    del rows
    # the import: read the file, check every row, look up points and meters, COPY the good rows
    t0 = time.perf_counter()
    report = imports.import_readings(actor=user, data=csv_bytes, filename="bench.csv", at=at, validate=False)
    import_s = time.perf_counter() - t0
    assert report.imported == len(data), (report.imported, report.errors[:5])
    # VEE on a sample (set-based loading, rules in Python)
    sample = list(
        MeterReading.objects.filter(reading_date__lte="2024-03-15")
        .order_by("pk")
        .values_list("pk", flat=True)[:60000]
    )
    t0 = time.perf_counter()
    counts = services.validate_readings(reading_ids=sample, at=at)
    vee_s = time.perf_counter() - t0
    return {
        "import_rows": report.imported,
        "import_seconds": round(import_s, 2),
        "import_rows_per_s": round(report.imported / import_s),
        "copy_seconds": round(copy_s, 2),
        "ratio_to_copy": round(import_s / copy_s, 2),
        "vee_rows": len(sample),
        "vee_rows_per_s": round(len(sample) / vee_s) if vee_s else 0,
        "vee_exceptions": counts.get("exception", 0),
    }


def run_pair(
    *,
    mqtt_url: str,
    prefix: str,
    terminals: int,
    meters: int,
    days: int,
    inflight: int,
    batch: int,
    listeners: int = 1,
    writers: int = 2,
    receive_maximum: int = 200,
    timeout: float = 600,
) -> dict:
    """Listener subprocess(es) + simulator: time from the first publish to the last row stored.
    With several listeners they join one shared subscription and divide the terminals."""
    import threading

    from django.db import connection

    from mmis.readings.ami import Listener
    from mmis.readings.models import DailyFrozenReading
    from mmis.readings.simulator import Simulator

    table = DailyFrozenReading._meta.db_table
    truncate(table)
    client_id = f"mmis-bench-{prefix}-{os.getpid()}"
    env = {**os.environ, "MMIS_DATABASE_URL": BENCH_URL, "MMIS_MQTT_URL": mqtt_url}
    sim = Simulator(
        url=mqtt_url,
        terminals=terminals,
        meters_per_terminal=meters,
        days=days,
        last_day=date(2026, 10, 31),
        prefix=prefix,
        inflight=inflight,
        pregenerate=True,
    )
    sim.prepare()
    expected = terminals * meters * days
    procs, ready_files, ids = [], [], []
    for k in range(listeners):
        ready = Path(f"/tmp/mmis-bench-ready-{os.getpid()}-{k}")
        ready.unlink(missing_ok=True)
        cid = f"{client_id}-{k}" if listeners > 1 else client_id
        args = [
            sys.executable,
            "-m",
            "mmis",
            "ami-listen",
            "--client-id",
            cid,
            "--idle-exit",
            "120",
            "--quiet",
            "--batch",
            str(batch),
            "--writers",
            str(writers),
            "--receive-maximum",
            str(receive_maximum),
            "--ready-file",
            str(ready),
        ]
        if listeners > 1:
            args += ["--shared", client_id]
        procs.append(
            subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
        ready_files.append(ready)
        ids.append(cid)
    for _ in range(600):  # the listeners load their meter directory, connect and subscribe
        if all(r.exists() or p.poll() is not None for r, p in zip(ready_files, procs, strict=True)):
            break
        time.sleep(0.1)
    for r in ready_files:
        r.unlink(missing_ok=True)
    sim.connect()
    holder: dict = {}
    th = threading.Thread(target=lambda: holder.setdefault("r", sim.publish_all()))
    th.start()  # pregeneration happens before publish_all's clock (sim.started_at) starts
    stored, last_n, last_change = 0, -1, time.perf_counter()
    began = time.perf_counter()
    while True:
        time.sleep(0.5 if expected < 100_000 else 1.0)
        with connection.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            stored = cur.fetchone()[0]
        if stored != last_n:
            last_n, last_change = stored, time.perf_counter()
        if (
            stored >= expected
            or time.perf_counter() - last_change > 15
            or time.perf_counter() - began > timeout
        ):
            break
    t_end = time.perf_counter()
    load = os.getloadavg()[0]
    th.join()
    sim.close()
    stats: dict = {}
    for p in procs:
        p.terminate()  # it stops cleanly on SIGTERM and prints its counts
        out, err = p.communicate(timeout=90)
        if expected != stored:
            print("listener stderr:", err[-3000:])
        one = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        for k, v in one.items():
            stats[k] = stats.get(k, 0) + v
    for cid in ids:
        Listener(url=mqtt_url, client_id=cid).forget_session()
    res = holder["r"]
    seconds = t_end - sim.started_at
    return {
        "readings": expected,
        "messages": res.messages,
        "seconds": round(seconds, 2),
        "readings_per_s": round(stored / seconds),
        "messages_per_s": round(min(stored / meters, res.messages) / seconds),
        "lost": expected - stored,
        "publish_msgs_per_s": round(res.messages_per_s),
        "messages_per_batch": round(stats.get("messages", 0) / max(stats.get("batches", 1), 1), 1),
        "load_avg": round(load, 2),
    }


def part_b(
    terminals: int,
    meters: int,
    days: int,
    mqtt_url: str,
    *,
    listeners: int,
    writers: int,
    receive_maximum: int,
) -> dict:
    from mmis.readings.simulator import register_in_db

    org = station()
    t0 = time.perf_counter()
    register_in_db(terminals=terminals, meters_per_terminal=meters, prefix="BENCH", org=org)
    register_in_db(terminals=1000, meters_per_terminal=1, prefix="BSMALL", org=org)
    print(f"registered {terminals * meters + 1000:,} meters in {time.perf_counter() - t0:.1f} s")
    # one reading per message: the naive pair (publisher waits for each PUBACK, listener commits and
    # acknowledges message by message, one message in flight) against the same traffic with windows,
    # batching and writer threads
    naive = run_pair(
        mqtt_url=mqtt_url,
        prefix="BSMALL",
        terminals=1000,
        meters=1,
        days=1,
        inflight=1,
        batch=1,
        writers=0,
        receive_maximum=1,
    )
    tuned = run_pair(
        mqtt_url=mqtt_url,
        prefix="BSMALL",
        terminals=1000,
        meters=1,
        days=1,
        inflight=1000,
        batch=20000,
        writers=writers,
        receive_maximum=receive_maximum,
    )
    print(f"one reading per message: naive {naive['messages_per_s']} msg/s, ", end="")
    print(f"tuned {tuned['messages_per_s']} msg/s")
    main_run = run_pair(
        mqtt_url=mqtt_url,
        prefix="BENCH",
        terminals=terminals,
        meters=meters,
        days=days,
        inflight=1000,
        batch=20000,
        listeners=listeners,
        writers=writers,
        receive_maximum=receive_maximum,
    )
    return {
        "mqtt_readings": main_run["readings"],
        "mqtt_messages": main_run["messages"],
        "mqtt_seconds": main_run["seconds"],
        "mqtt_readings_per_s": main_run["readings_per_s"],
        "mqtt_lost": main_run["lost"] + naive["lost"] + tuned["lost"],
        "mqtt_listeners": listeners,
        "mqtt_writers": writers,
        "mqtt_receive_maximum": receive_maximum,
        "mqtt_load_avg": main_run["load_avg"],
        "publish_msgs_per_s": main_run["publish_msgs_per_s"],
        "messages_per_batch": main_run["messages_per_batch"],
        "naive_pair_msgs_per_s": naive["messages_per_s"],
        "tuned_pair_msgs_per_s": tuned["messages_per_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1_000_000, help="readings in the import file")
    ap.add_argument("--mqtt-terminals", type=int, default=200)
    ap.add_argument("--mqtt-meters", type=int, default=1000)
    ap.add_argument("--mqtt-days", type=int, default=5)
    ap.add_argument("--mqtt-listeners", type=int, default=2, help="listener processes (shared subscription)")
    ap.add_argument("--mqtt-writers", type=int, default=1, help="writer threads per listener")
    ap.add_argument("--mqtt-receive-maximum", type=int, default=200)
    ap.add_argument("--skip-import", action="store_true")
    ap.add_argument("--skip-mqtt", action="store_true")
    args = ap.parse_args()
    ensure_database(BENCH_URL)
    setup_django()
    from django.conf import settings

    fig: dict = {"bench": "ingest", "scale": args.scale}
    if not args.skip_import:
        fig.update(part_a(args.scale))
    if not args.skip_mqtt:
        fig.update(
            part_b(
                args.mqtt_terminals,
                args.mqtt_meters,
                args.mqtt_days,
                settings.MQTT_URL,
                listeners=args.mqtt_listeners,
                writers=args.mqtt_writers,
                receive_maximum=args.mqtt_receive_maximum,
            )
        )
    fig["load_avg"] = round(os.getloadavg()[0], 2)
    print()
    print(f"{'figure':<34}{'value':>16}")
    for k in (
        "import_rows",
        "import_seconds",
        "import_rows_per_s",
        "copy_seconds",
        "ratio_to_copy",
        "vee_rows_per_s",
        "mqtt_readings",
        "mqtt_messages",
        "mqtt_seconds",
        "mqtt_readings_per_s",
        "mqtt_lost",
        "mqtt_listeners",
        "mqtt_writers",
        "mqtt_receive_maximum",
        "mqtt_load_avg",
        "load_avg",
        "publish_msgs_per_s",
        "messages_per_batch",
        "naive_pair_msgs_per_s",
        "tuned_pair_msgs_per_s",
    ):
        if k in fig:
            print(f"{k:<34}{fig[k]:>16,}" if isinstance(fig[k], int) else f"{k:<34}{fig[k]:>16}")
    fig.pop("listener", None)
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
