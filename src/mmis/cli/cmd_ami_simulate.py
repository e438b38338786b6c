"""`python -m mmis ami-simulate --terminals N --meters-per-terminal M --days D`: play AMI terminals.

Each terminal publishes one message per day holding the daily frozen registers of all its meters
on mmis/ami/<terminal>/up (QoS 1), then (with --serve S) stays S seconds answering remote
commands. --register creates the terminals and meters in the database first (so the listener
knows them); --frames-every K sends every K-th terminal's data as raw DL/T 645 frames;
--bad N adds N malformed messages (they end in the dead-letter table); --answer ok|fail|ignore.
Last line: one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
from datetime import date


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmis ami-simulate", description=__doc__.splitlines()[0])
    ap.add_argument("--terminals", type=int, default=10)
    ap.add_argument("--meters-per-terminal", type=int, default=100)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument(
        "--last-day", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: yesterday)"
    )
    ap.add_argument("--prefix", default="SIM")
    ap.add_argument("--url", default=None)
    ap.add_argument("--inflight", type=int, default=1000)
    ap.add_argument("--frames-every", type=int, default=0)
    ap.add_argument("--bad", type=int, default=0)
    ap.add_argument("--answer", choices=["ok", "fail", "ignore"], default="ok")
    ap.add_argument("--serve", type=float, default=0.0, help="seconds to keep answering commands")
    ap.add_argument("--pregenerate", action="store_true", help="build every message before publishing")
    ap.add_argument("--register", action="store_true", help="create the terminals and meters in the database")
    args = ap.parse_args(argv)

    from mmis.readings.simulator import Simulator, register_in_db

    url = args.url
    if args.register or url is None:
        from mmis.cli.django_setup import setup

        setup()
        from django.conf import settings

        url = url or settings.MQTT_URL
    if args.register:
        n = register_in_db(
            terminals=args.terminals, meters_per_terminal=args.meters_per_terminal, prefix=args.prefix
        )
        print(f"registered {n} new meters behind {args.terminals} terminals")
    sim = Simulator(
        url=url,
        terminals=args.terminals,
        meters_per_terminal=args.meters_per_terminal,
        days=args.days,
        last_day=args.last_day,
        prefix=args.prefix,
        inflight=args.inflight,
        frames_every=args.frames_every,
        answer=args.answer,
    )
    sim.connect()
    bad = [
        (f"mmis/ami/{args.prefix}BAD/up", b"{not json" if i % 2 == 0 else b"68AB") for i in range(args.bad)
    ]
    try:
        res = sim.publish_all(extra=bad)
        print(
            f"published {res.messages} messages, {res.readings} readings in {res.seconds:.2f} s "
            f"({res.messages_per_s:,.0f} msg/s, {res.readings_per_s:,.0f} readings/s)"
        )
        if args.serve:
            sim.serve(args.serve)
    finally:
        sim.close()
    print(
        json.dumps(
            {
                "messages": res.messages,
                "readings": res.readings,
                "seconds": round(res.seconds, 3),
                "readings_per_s": round(res.readings_per_s),
                "commands_answered": res.commands_answered,
            }
        )
    )
    return 0
