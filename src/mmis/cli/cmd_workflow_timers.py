"""`python -m mmis workflow-timers [--now 2026-11-23T09:00+08:00] [--every SECONDS]`

Evaluate the work-order deadlines once (or every N seconds): warn at the warning share of each
time limit, alarm when it is exceeded, escalate to the upper org (督办). Idempotent; the same
service the Celery beat task `workflow.check_deadlines` runs.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmis workflow-timers", description=__doc__)
    parser.add_argument("--now", help="evaluate as of this ISO time (default: the clock)")
    parser.add_argument("--every", type=int, default=0, help="repeat every N seconds (0: once)")
    args = parser.parse_args(argv)

    from mmis.cli.django_setup import setup

    setup()
    from django.utils import timezone

    from mmis.workflow.services import check_deadlines

    while True:
        now = datetime.fromisoformat(args.now) if args.now else timezone.now()
        if timezone.is_naive(now):
            now = timezone.make_aware(now)
        print(
            json.dumps({"now": now.isoformat(), **check_deadlines(now=now)}, ensure_ascii=False), flush=True
        )
        if not args.every:
            return 0
        time.sleep(args.every)
