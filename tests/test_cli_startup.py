"""The CLI imports only the module of the command it runs (so it starts at once)."""

import subprocess
import sys

import pytest

HEAVY = ("kafka", "pymongo", "pandas", "pyarrow", "psycopg", "tableauhyperapi", "matplotlib")


@pytest.mark.parametrize("command", [None, "status", "down", "up", "sql"])
def test_parser_imports_no_heavy_dependency(command: str | None) -> None:
    code = (
        "import sys\n"
        "from sales_stream.cli import build_parser\n"
        f"build_parser({command!r})\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_help_lists_every_command() -> None:
    from sales_stream.cli import COMMANDS

    out = subprocess.run(
        [sys.executable, "-m", "sales_stream", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(name in out for name in COMMANDS)
