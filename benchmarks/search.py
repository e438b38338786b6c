"""Global customer search latency on a large customer file (PostgreSQL).

Uses MMIS_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/mmis_bench). When that
database holds fewer than --scale customers, it is rebuilt with the demo builder first
(`benchmarks/seed.py` does the same and prints the seeding speed).
Prints a table of latencies per kind of query and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1_000_000, help="customers in the file")
    ap.add_argument("--queries", type=int, default=40, help="queries per kind")
    args = ap.parse_args()
    url = os.environ.get("MMIS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/mmis_bench")
    os.environ["MMIS_DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmis.settings")
    sys.path.insert(0, str(ROOT / "src"))
    import django

    try:
        django.setup()
        from mmis.customers.models import Customer

        have = Customer.objects.count()
    except Exception:
        have = 0
    if have < args.scale:
        print(f"seeding {args.scale:,} customers into {url} (have {have:,}) …", flush=True)
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "seed.py"), "--scale", str(args.scale)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        django.db.connections.close_all()
    from django.db import connection

    from mmis.customers import queries
    from mmis.customers.crypto import cipher
    from mmis.customers.models import Customer, ServiceAddress
    from mmis.org.models import User

    total = Customer.objects.count()
    user = User.objects.get(username="admin")
    rng = random.Random(7)
    max_id = Customer.objects.order_by("-pk").values_list("pk", flat=True).first()
    sample = []
    while len(sample) < args.queries:
        c = Customer.objects.filter(pk__gte=rng.randint(1, max_id)).order_by("pk").first()
        if c:
            sample.append(c)
    c = cipher()
    meters = {}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT p.customer_id, m.asset_no FROM assets_meter m JOIN customers_meteringpoint p "
            "ON p.id = m.metering_point_id WHERE p.customer_id = ANY(%s)",
            [[s.pk for s in sample]],
        )
        meters = dict(cur.fetchall())
    addresses = dict(
        ServiceAddress.objects.filter(customer_id__in=[s.pk for s in sample]).values_list(
            "customer_id", "detail"
        )
    )
    kinds = {
        "customer_no": lambda s: s.customer_no,
        "phone": lambda s: c.decrypt(s.phone_enc),
        "id_number": lambda s: c.decrypt(s.id_number_enc),
        "meter": lambda s: meters.get(s.pk, s.customer_no),
        "name": lambda s: s.name,
        "address": lambda s: addresses.get(s.pk, s.name),
    }
    rows, all_ms = [], []
    for kind, term_of in kinds.items():
        times, found = [], 0
        for s in sample:
            term = term_of(s)
            t0 = time.perf_counter()
            hits = queries.search(user, term, limit=50)
            times.append((time.perf_counter() - t0) * 1000)
            found += any(h.customer.pk == s.pk for h in hits)
        times.sort()
        all_ms += times
        rows.append(
            (
                kind,
                statistics.median(times),
                times[int(0.99 * (len(times) - 1))],
                max(times),
                found / len(sample),
            )
        )
    print(f"\nglobal customer search on {total:,} customers ({connection.vendor})")
    print(f"{'query kind':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'found':>6}")
    for kind, p50, p99, mx, hit in rows:
        print(f"{kind:<12} {p50:>8.1f} {p99:>8.1f} {mx:>8.1f} {hit:>6.0%}")
    all_ms.sort()
    out = {
        "bench": "search",
        "scale": total,
        "p50_ms": round(statistics.median(all_ms), 1),
        "p99_ms": round(all_ms[int(0.99 * (len(all_ms) - 1))], 1),
        "max_ms": round(all_ms[-1], 1),
        "found_rate": round(sum(r[4] for r in rows) / len(rows), 3),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
