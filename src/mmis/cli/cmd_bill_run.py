"""`python -m mmis bill-run --month 2026-03 [--org CODE] [--books B01,B02] [--draft] [--resume RUN_ID]`
`python -m mmis bill-run --audit RUN_ID`

Calculate a billing month with a progress bar: in-process by default; with MMIS_BROKER_URL the
partitions go to Celery workers (`celery -A mmis worker`) and this command watches them. The audit
rules run with the calculation; with --draft the run writes drafts and `--audit RUN_ID` runs the
audit stage on them later (also after the audit rules changed, on the bills not approved yet).
"""

from __future__ import annotations

import argparse
import sys
import time


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmis bill-run", description=__doc__)
    parser.add_argument("--month", help="billing month YYYY-MM")
    parser.add_argument("--org", help="org code (default: the province)")
    parser.add_argument("--books", default="", help="comma-separated reading book codes")
    parser.add_argument("--resume", type=int, help="resume the partitions of this run not done yet")
    parser.add_argument("--draft", action="store_true", help="write drafts; the audit stage runs later")
    parser.add_argument("--audit", type=int, metavar="RUN_ID", help="run the audit stage of this run")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from mmis.cli.django_setup import setup

    setup()
    from django.conf import settings
    from django.utils import timezone
    from tqdm import tqdm

    from mmis.billing import services
    from mmis.billing.models import BillingRun
    from mmis.common.errors import InvalidInput
    from mmis.common.periods import Period
    from mmis.org.models import Org

    celery = bool(settings.BROKER_URL)
    if args.audit:
        run_ = BillingRun.objects.get(pk=args.audit)
        t0 = time.perf_counter()
        n = services.audit_run(run=run_, actor=None, at=timezone.now())
        run_.refresh_from_db()
        print(
            f"run {run_.pk} {run_.month_label}: {run_.get_state_display()} · audited {n} bills"
            f" · held for audit {run_.flagged} · {time.perf_counter() - t0:.1f} s"
        )
        return 0
    if args.resume:
        run_ = BillingRun.objects.get(pk=args.resume)
    else:
        if not args.month:
            parser.error("--month is required (or --resume RUN_ID)")
        year, month = (int(x) for x in args.month.split("-"))
        org = (
            Org.objects.get(code=args.org)
            if args.org
            else Org.objects.filter(depth=1).order_by("path").first()
        )
        if org is None:
            print("no org: load the demo first (python -m mmis demo)", file=sys.stderr)
            return 2
        books = [b for b in args.books.split(",") if b]
        try:
            run_ = services.plan_run(
                org=org,
                month=Period.month(year, month),
                actor=None,
                at=timezone.now(),
                book_codes=books or None,
                mode=BillingRun.Mode.CELERY if celery else BillingRun.Mode.IN_PROCESS,
                audit_inline=not args.draft,
            )
        except InvalidInput as exc:
            for e in exc.errors:
                print(f"{e.path}: {e.message}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    bar = tqdm(
        total=run_.points_total,
        unit=" points",
        disable=args.no_progress,
        desc=f"run {run_.pk} {run_.month_label}",
    )
    if celery:
        services.dispatch(run_)
        seen = 0
        while True:
            run_.refresh_from_db()
            done = sum(run_.partitions.filter(state__in=["done", "failed"]).values_list("points", flat=True))
            bar.update(done - seen)
            seen = done
            if run_.partitions_done + run_.partitions_failed >= run_.partitions_total:
                break
            time.sleep(0.5)
    else:
        services.run_in_process(run_, progress=lambda p: bar.update(p.points))
    bar.close()
    run_.refresh_from_db()
    secs = time.perf_counter() - t0
    print(
        f"run {run_.pk} {run_.month_label}: {run_.get_state_display()} · partitions {run_.partitions_done}/"
        f"{run_.partitions_total} (failed {run_.partitions_failed}) · bills {run_.bills} · exceptions "
        f"{run_.exceptions} · held for audit {run_.flagged} · {run_.amount} 元 · {secs:.1f} s"
        f" ({run_.bills / secs if secs else 0:.0f} bills/s)"
    )
    return 0 if run_.partitions_failed == 0 else 1
