"""`python -m mmis agency-import FILE --agency NAME [--org CODE]`

Import an agency collection (代收) reconciliation file (`txn_id,account_no,amount,paid_at` per
line, see mmis.accounts.agency) for the accounts of an org (default: the province) and print the
reconciliation report as JSON. A bad file is refused whole: every bad line is printed as
`lines[N].field: reason` and the exit code is 2; nothing is posted. Importing the same file again
posts nothing and prints the first import's report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmis agency-import", description=__doc__)
    parser.add_argument("file", help="the agency's file (UTF-8 CSV); - for standard input")
    parser.add_argument("--agency", required=True, help="the collecting agency's name, e.g. 邮储银行代收")
    parser.add_argument("--org", help="org code whose accounts the file pays (default: the province)")
    args = parser.parse_args(argv)

    from mmis.cli.django_setup import setup

    setup()
    from django.utils import timezone

    from mmis.accounts import agency
    from mmis.common.errors import InvalidInput
    from mmis.org.models import Org

    try:
        content = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"file: cannot be read as UTF-8 text ({exc})", file=sys.stderr)
        return 2
    org = (
        Org.objects.filter(code=args.org).first()
        if args.org
        else Org.objects.filter(depth=1).order_by("path").first()
    )
    if org is None:
        print(
            f"org: no org {args.org!r}" if args.org else "org: no org: load the demo first", file=sys.stderr
        )
        return 2
    try:
        report = agency.import_file(
            org=org, agency=args.agency, content=content, actor=None, at=timezone.now()
        )
    except InvalidInput as exc:
        for e in exc.errors:
            print(f"{e.path}: {e.message}", file=sys.stderr)
        return 2
    print(json.dumps(report, ensure_ascii=False))
    return 0
