"""`python -m mmis ami-listen`: subscribe to terminals on MQTT (mmis/ami/+/up) and store readings.

Options: --url mqtt://host:port (default MMIS_MQTT_URL), --client-id, --batch N (readings per
batch), --receive-maximum N (unacknowledged messages the broker may send ahead, MQTT v5),
--writers N (threads writing batches, each with its own database connection), --shared GROUP
(join the shared subscription $share/GROUP/mmis/ami/+/up: run several listeners, each with its own
--client-id, to divide the terminals), --idle-exit S (stop after S seconds without data; for tests
and benchmarks), --max-seconds S, --quiet. Prints running counts and, at the end, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmis ami-listen", description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None)
    ap.add_argument("--client-id", default="mmis-ami-listener")
    ap.add_argument("--batch", type=int, default=20000)
    ap.add_argument("--receive-maximum", type=int, default=200)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--shared", default=None, help="shared-subscription group")
    ap.add_argument("--idle-exit", type=float, default=None)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--ready-file", default=None, help="touch this file once subscribed")
    args = ap.parse_args(argv)

    from mmis.cli.django_setup import setup

    setup()
    from django.conf import settings

    from mmis.readings.ami import Listener

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    last = [0.0]

    def report(stats):
        if args.quiet or time.monotonic() - last[0] < 2:
            return
        last[0] = time.monotonic()
        print(
            f"messages {stats.messages}  readings {stats.readings}  stored {stats.stored}  "
            f"duplicates {stats.duplicates}  dead letters {stats.dead_letters}  acks {stats.acks}",
            flush=True,
        )

    def ready():
        if args.ready_file:
            open(args.ready_file, "w").close()

    listener = Listener(
        url=args.url or settings.MQTT_URL,
        client_id=args.client_id,
        batch_readings=args.batch,
        receive_maximum=args.receive_maximum,
        writers=args.writers,
        shared=args.shared,
        on_batch=report,
        on_ready=ready,
    )
    signal.signal(signal.SIGTERM, lambda *_: listener.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: listener.stopping.set())
    print(
        f"ami-listen: {settings.MQTT_URL if args.url is None else args.url} as {args.client_id}",
        file=sys.stderr,
        flush=True,
    )
    stats = listener.run(idle_exit=args.idle_exit, max_seconds=args.max_seconds)
    print(json.dumps(stats.as_dict()), flush=True)
    return 0
