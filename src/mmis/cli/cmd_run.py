"""`python -m mmis run`: migrate the database, seed the demo utility if it is empty, and serve."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from urllib.parse import urlparse

from mmis.cli.django_setup import setup

DEMO_LOGINS = [
    ("admin", "省公司系统管理员 administrator"),
    ("manager", "地市营销管理人员 manager"),
    ("counter", "营业厅受理员 counter staff"),
    ("reader", "抄表员 meter reader"),
    ("auditor", "核算员 billing auditor"),
    ("cashier", "收费员 cashier"),
    ("inspector", "用电检查员 inspector"),
    ("agent", "95598 客服代表 service agent"),
]
DEMO_PASSWORD = "Mmis@2026"


def _mqtt_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 1883), timeout=0.5):
            return True
    except OSError:
        return False


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmis run")
    parser.add_argument("--addr", default="127.0.0.1:8000")
    parser.add_argument("--customers", type=int, default=5000, help="demo customers to seed when empty")
    parser.add_argument("--no-serve", action="store_true", help="prepare the database and stop")
    args = parser.parse_args(argv)
    setup()
    from django.conf import settings
    from django.core.management import call_command

    print("迁移数据库 / migrating the database …", flush=True)
    call_command("migrate", interactive=False, verbosity=0)
    from mmis.cli import cmd_demo
    from mmis.cli.demo import has_customers

    if has_customers():
        print(f"\nMMIS 演示账号 / demo logins (password 密码: {DEMO_PASSWORD})")
        for username, role in DEMO_LOGINS:
            print(f"  {username:<10} {role}")
    else:
        print(f"播种演示供电公司 / seeding the demo utility ({args.customers:,} customers) …", flush=True)
        cmd_demo.run(["--customers", str(args.customers)])
    if settings.BROKER_URL:
        print(f"jobs: Celery broker {settings.BROKER_URL}")
    else:
        print("jobs: no MMIS_BROKER_URL, running jobs in-process")
    if _mqtt_reachable(settings.MQTT_URL):
        print(f"AMI: MQTT broker at {settings.MQTT_URL} answers; start `python -m mmis ami-listen` to ingest")
    else:
        print(
            f"AMI: no MQTT broker answers at {settings.MQTT_URL}; "
            "the listener stays off (demo readings are generated)"
        )
    if args.no_serve:
        return 0
    print(f"\n打开 / open http://{args.addr}/\n", flush=True)
    os.environ.setdefault("MMIS_SERVING", "1")
    call_command("runserver", args.addr, use_reloader=False, use_threading=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
