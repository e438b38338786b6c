"""`python -m mmis <command>`: the public JSON contracts (no database needed) and the operations
commands (which set up Django). Each command lives in `mmis.cli.cmd_<name>` with `run(argv) -> int`.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # contract commands (spec/): pure, no Django, no database
    "rate": ("cmd_rate", "one bill's charges from a tariff and usage (spec/rating.md)"),
    "late-fee": ("cmd_late_fee", "late-payment fee of an overdue amount (spec/late-fee.md)"),
    "theft": ("cmd_theft", "back-billing and penalty for electricity theft (spec/theft.md)"),
    "energy": ("cmd_energy", "billed energy from two register readings (spec/energy.md)"),
    "dlt645": ("cmd_dlt645", "encode and decode DL/T 645-2007 frames (spec/dlt645.md)"),
    # operations (Django)
    "run": ("cmd_run", "migrate, seed the demo utility if empty and serve on 127.0.0.1:8000"),
    "demo": ("cmd_demo", "build the deterministic demo utility: demo --customers N --seed S"),
    "manage": ("cmd_manage", "Django management commands: manage migrate, manage createsuperuser …"),
    "ami-listen": ("cmd_ami_listen", "subscribe to terminals on MQTT and store their readings"),
    "ami-simulate": ("cmd_ami_simulate", "play AMI terminals on MQTT for demos, tests and benchmarks"),
    "bill-run": ("cmd_bill_run", "calculate a billing month for reading books or an org subtree"),
    "agency-import": (
        "cmd_agency_import",
        "post an agency collection (代收) file: agency-import FILE --agency NAME",
    ),
    "workflow-timers": ("cmd_workflow_timers", "work-order deadlines: warn, alarm, escalate (督办)"),
}


def usage() -> str:
    lines = ["usage: python -m mmis <command> [arguments]", "", "commands:"]
    lines += [f"  {name:<14}{help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"mmis.cli.{COMMANDS[name][0]}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("mmis.cli."):
            print(f"command {name!r} is not available in this build", file=sys.stderr)
            return 2
        raise
    return int(module.run(rest) or 0)
