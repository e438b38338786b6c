"""`make bench`: run every benchmark script and print the JSON last line of each as one table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(
        p for p in HERE.glob("*.py") if p.name not in {"run_all.py"} and not p.name.startswith("_")
    )
    only = set(sys.argv[1:])
    results = []
    for script in scripts:
        if only and script.stem not in only:
            continue
        print(f"== {script.stem} ==", flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            results.append({"bench": script.stem, "error": f"exit {proc.returncode}"})
            continue
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
        try:
            results.append(json.loads(lines[-1]))
        except (IndexError, json.JSONDecodeError):
            results.append({"bench": script.stem, "error": "no JSON last line"})
    print("\n== summary ==")
    for r in results:
        print(json.dumps(r, ensure_ascii=False))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
