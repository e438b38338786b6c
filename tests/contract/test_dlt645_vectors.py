"""Every vector of spec/vectors/dlt645.json through `python -m mmis dlt645` (spec/vectors/README.md)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmis.cli.main import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def _spec_dir() -> Path:
    configured = os.environ.get("MMIS_SPEC_DIR")
    spec = Path(configured) if configured else REPO_ROOT.parent / "shared" / "spec"
    if not (spec / "vectors" / "dlt645.json").is_file():
        pytest.fail(
            f"spec vectors not found: {spec / 'vectors' / 'dlt645.json'} is missing "
            "(set MMIS_SPEC_DIR to the spec directory)",
            pytrace=False,
        )
    return spec


VECTORS = json.loads((_spec_dir() / "vectors" / "dlt645.json").read_text(encoding="utf-8"))


def _run_in_process(monkeypatch: pytest.MonkeyPatch, payload: object) -> tuple[int, str]:
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(payload)))
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["dlt645"])
    return code, stdout.getvalue()


def _is_error(expected: object) -> bool:
    return isinstance(expected, dict) and set(expected) == {"exit", "error_paths"}


def test_the_vector_file_is_not_empty() -> None:
    assert len(VECTORS) >= 19
    assert all({"name", "input", "expected"} <= set(v) for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run_in_process(monkeypatch, vector["input"])
    assert "Traceback" not in out
    result = json.loads(out)
    expected = vector["expected"]
    if _is_error(expected):
        assert code == expected["exit"], out
        assert set(result) == {"errors"}
        assert result["errors"], out
        assert all(set(e) == {"path", "message"} and e["message"] for e in result["errors"])
        paths = {e["path"] for e in result["errors"]}
        for wanted in expected["error_paths"]:
            options = wanted if isinstance(wanted, list) else [wanted]
            assert paths & set(options), f"none of {options} among reported paths {sorted(paths)}"
    else:
        assert code == 0, out
        assert result == expected


def test_bad_frame_through_a_real_process_exits_2_without_traceback() -> None:
    bad = next(v for v in VECTORS if v["name"] == "bad checksum")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mmis", "dlt645"],
        input=json.dumps(bad["input"]),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = json.loads(proc.stdout)["errors"]
    assert [e["path"] for e in errors] == ["frame"]
    assert "checksum" in errors[0]["message"]


def test_the_command_does_not_import_django() -> None:
    code = "import sys, mmis.cli.cmd_dlt645, mmis.readings.dlt645; print('django' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
