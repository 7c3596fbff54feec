"""The Makefile's Python check: the wrong Python gets one line saying which one is needed.

``make -n`` on a copy of the project, with a PATH holding only fake interpreters that print a
version: nothing is installed and no virtualenv is created.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")

pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make")


def _make_n(
    tmp_path: Path, target: str, pythons: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``make -n target`` where PATH has only ``pythons`` (name -> the version it prints)."""
    bin_dir, project = tmp_path / "bin", tmp_path / "project"
    bin_dir.mkdir()
    project.mkdir()
    for name, version in pythons.items():
        fake = bin_dir / name
        fake.write_text(f"#!/bin/sh\necho {version}\n")
        fake.chmod(0o755)
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, project / name)
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "-n", target],
        cwd=project,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("target", ["run", "test"])
def test_another_python3_gets_one_line_naming_3_11(tmp_path: Path, target: str) -> None:
    result = _make_n(tmp_path, target, {"python3": "3.12"})
    assert result.returncode != 0
    assert result.stdout == ""  # no pip, no venv
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "need Python 3.11" in lines[0]
    assert f"{tmp_path / 'bin' / 'python3'} is Python 3.12" in lines[0]
    assert "pyenv install 3.11" in lines[0]
    assert "brew install python@3.11" in lines[0]


def test_no_python_at_all_gets_the_same_line(tmp_path: Path) -> None:
    result = _make_n(tmp_path, "run", {})
    assert result.returncode != 0
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert "need Python 3.11, but no python3.11 or python3 is on PATH" in result.stderr


@pytest.mark.parametrize(
    "pythons", [{"python3.11": "3.11", "python3": "3.12"}, {"python3": "3.11"}]
)
def test_python_3_11_builds_the_venv(tmp_path: Path, pythons: dict[str, str]) -> None:
    result = _make_n(tmp_path, "run", pythons)
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path / 'bin'}/python3" in result.stdout
    assert "-m venv .venv" in result.stdout
    assert "pip install --quiet -r requirements.txt" in result.stdout


def test_clean_needs_no_python(tmp_path: Path) -> None:
    result = _make_n(tmp_path, "clean", {"python3": "3.12"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rm -rf .venv .sales_stream out"
