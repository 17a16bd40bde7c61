"""Every service check in tests/ goes through `tests.services.require`, which skips locally but fails
under CI=true, so CI cannot pass by skipping."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

SKIPPERS = {"skip", "skipif", "importorskip", "xfail"}


def skip_calls(path: Path) -> list[str]:
    """`pytest.skip(...)`, `pytest.importorskip(...)`, `pytest.mark.skip*`/`xfail` and
    `unittest.skip*` in one file, as `file:line name`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in SKIPPERS | {"skipIf", "skipUnless", "SkipTest"}:
            found.append(f"{path.name}:{node.lineno} {node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in {"pytest", "unittest"}:
            found.extend(
                f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name in SKIPPERS | {"SkipTest"}
            )
    return found


def test_no_test_skips_except_through_require() -> None:
    offenders = [
        hit for path in sorted(TESTS.glob("*.py")) if path.name != "services.py" for hit in skip_calls(path)
    ]
    assert not offenders, f"skips that bypass tests/services.py's require(): {offenders}"


def test_the_scan_sees_a_skip(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import pytest\nfrom pytest import importorskip\n"
        "def test_x():\n    pytest.skip('no nginx')\n"
        "@pytest.mark.skipif(True, reason='')\ndef test_y():\n    pass\n"
    )
    assert sorted(hit.split()[1] for hit in skip_calls(sample)) == ["importorskip", "skip", "skipif"]


def run_require(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_missing_service.py"
    test.write_text(
        "from tests.services import require\n"
        "def test_missing():\n    require('a service that is not here', None)\n"
        "def test_present():\n    require('python', '/usr/bin/python3')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(test)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )


def test_require_skips_locally_and_fails_on_ci(tmp_path: Path) -> None:
    local = run_require(tmp_path, None)
    assert local.returncode == 0 and "1 passed, 1 skipped" in local.stdout, local.stdout
    for ci in ("true", "TRUE"):
        on_ci = run_require(tmp_path, ci)
        assert on_ci.returncode == 1 and "1 failed, 1 passed" in on_ci.stdout, on_ci.stdout
        assert "a service that is not here is not installed" in on_ci.stdout
