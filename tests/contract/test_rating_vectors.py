"""Every vector of spec/vectors/{rate,late_fee,theft,energy}.json through `python -m mmis`.

In-process through `mmis.cli.main.main` (captured stdin/stdout) for all of them, and a few
through a real subprocess to prove the exit status and that no traceback is printed.
"""

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
SPEC_DIR = Path(os.environ.get("MMIS_SPEC_DIR") or REPO_ROOT.parent / "shared" / "spec")
VECTOR_FILES = {
    "rate": "rate.json",
    "late-fee": "late_fee.json",
    "theft": "theft.json",
    "energy": "energy.json",
}


def _load(command: str) -> list[dict]:
    path = SPEC_DIR / "vectors" / VECTOR_FILES[command]
    if not path.is_file():  # fail loudly: a missing spec must never pass silently
        raise FileNotFoundError(f"spec vectors not found at {path}; set MMIS_SPEC_DIR")
    vectors = json.loads(path.read_text(encoding="utf-8"))
    assert vectors, f"{path} holds no vectors"
    return vectors


CASES = [(cmd, v) for cmd in VECTOR_FILES for v in _load(cmd)]


def _run_in_process(command: str, stdin_text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    monkeypatch.setattr(sys, "stdout", out)
    status = main([command])
    return status, out.getvalue()


def _assert_matches(expected, status: int, stdout: str) -> None:
    assert "Traceback" not in stdout
    got = json.loads(stdout)
    if isinstance(expected, dict) and "error_paths" in expected:
        assert status == expected["exit"] == 2, stdout
        assert set(got) == {"errors"}
        assert all(set(e) == {"path", "message"} and e["message"] for e in got["errors"])
        paths = {e["path"] for e in got["errors"]}
        for wanted in expected["error_paths"]:
            options = wanted if isinstance(wanted, list) else [wanted]
            assert paths & set(options), f"none of {options} among reported paths {sorted(paths)}"
        return
    assert status == 0, stdout
    assert _typed(got) == _typed(expected)


def _typed(value):
    """Compare strings as strings and integers/booleans by type and value (True is not 1)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize(("command", "vector"), CASES, ids=[f"{c}: {v['name']}" for c, v in CASES])
def test_vector_in_process(command: str, vector: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    status, stdout = _run_in_process(command, json.dumps(vector["input"]), monkeypatch)
    _assert_matches(vector["expected"], status, stdout)


def test_every_command_has_vectors() -> None:
    for command in VECTOR_FILES:
        assert len(_load(command)) >= 5


def _subprocess(command: str, stdin_text: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "mmis", command],
        input=stdin_text,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("command", list(VECTOR_FILES))
def test_error_vectors_through_a_real_process(command: str) -> None:
    vector = next(v for v in _load(command) if "error_paths" in v["expected"])
    proc = _subprocess(command, json.dumps(vector["input"]))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    _assert_matches(vector["expected"], proc.returncode, proc.stdout)


@pytest.mark.parametrize("command", list(VECTOR_FILES))
def test_success_vector_through_a_real_process(command: str) -> None:
    vector = next(v for v in _load(command) if "error_paths" not in v["expected"])
    proc = _subprocess(command, json.dumps(vector["input"]))
    _assert_matches(vector["expected"], proc.returncode, proc.stdout)


@pytest.mark.parametrize("garbage", ["", "not json", "[]", "42", '{"tariff": 1}', "[1, 2]", "NaN"])
def test_garbage_input_exits_2_without_traceback(garbage: str) -> None:
    proc = _subprocess("rate", garbage)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["errors"]


def test_contract_commands_do_not_import_django() -> None:
    code = "import sys, mmis.cli.cmd_rate, mmis.cli.cmd_late_fee, mmis.cli.cmd_theft, mmis.cli.cmd_energy;"
    code += "print(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "False"
