"""The portable process layer (macOS and the like), run here with the Linux-only paths off.

``portable`` switches `process.LINUX` off and makes `sales_stream.infra.linux` (``prctl``
through ``libc.so.6``) unimportable, so any use of it would fail the test; the subprocess
tests do the same in their own interpreter (`_PORTABLE`).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import sales_stream.infra
from sales_stream.infra import embedded, ports, process
from sales_stream.infra.process import (
    pid_alive,
    pid_cmdline,
    pid_start_time,
    reap,
    spawn,
    terminate,
    wait_until,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "sales_stream"
LINUX_MODULE = SRC / "infra" / "linux.py"
#: What only the Linux-only module may contain: hand-read /proc, the C library, prctl.
LINUX_ONLY = ("/proc", "libc.so.6", "prctl", "CDLL")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
#: Prepended to a subprocess's script: the same switch as the `portable` fixture.
_PORTABLE = """
import sys
sys.modules["sales_stream.infra.linux"] = None
from sales_stream.infra import process
process.LINUX = False
"""
_PARENT = """
from pathlib import Path
import time
proc = process.spawn(sys.argv[2:], log_path=Path(sys.argv[1]))
print(proc.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def portable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `process` as on a platform without /proc and prctl."""
    monkeypatch.setattr(process, "LINUX", False)
    monkeypatch.setitem(sys.modules, "sales_stream.infra.linux", None)
    monkeypatch.delattr(sales_stream.infra, "linux", raising=False)


@pytest.fixture
def cleanup() -> Iterator[list[int]]:
    """Pids SIGKILLed at the end if a failed test left them running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _watchdogs(group: int) -> list[int]:
    """The pids of the live watchdogs of process group ``group``."""
    found = []
    for candidate in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = candidate.info["cmdline"] or []
        watching = any(arg.endswith("watchdog.py") for arg in cmdline) and str(group) in cmdline
        if watching and candidate.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(candidate.info["pid"])
    return found


def test_a_server_starts_is_seen_alive_and_stops(portable, tmp_path: Path, cleanup) -> None:
    before = time.time()
    proc = spawn(SLEEPER, log_path=tmp_path / "logs" / "sleeper.log")
    cleanup.append(proc.pid)
    assert pid_alive(proc.pid)
    assert pid_cmdline(proc.pid) == " ".join(SLEEPER)
    started = pid_start_time(proc.pid)
    assert started is not None
    assert before - 2 <= started <= time.time() + 2
    assert pid_start_time(proc.pid) == started  # an identity: the same on every read
    assert os.getpgid(proc.pid) == proc.pid  # the group its watchdog stops
    assert wait_until(lambda: len(_watchdogs(proc.pid)) == 1, timeout=10)
    terminate(proc.pid)
    assert not pid_alive(proc.pid)
    reap(proc)
    assert proc.returncode == -signal.SIGTERM
    assert _watchdogs(proc.pid) == []  # reaped with its server
    assert pid_start_time(proc.pid) is None
    assert pid_cmdline(proc.pid) == ""


def test_a_zombie_counts_as_dead(portable, tmp_path: Path) -> None:
    proc = spawn([sys.executable, "-c", "pass"], log_path=tmp_path / "quick.log")
    assert wait_until(lambda: not pid_alive(proc.pid), timeout=10)
    assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE  # exited, not reaped
    reap(proc)
    assert proc.returncode == 0
    assert not pid_alive(proc.pid)


@pytest.mark.parametrize(
    "mode",
    [
        "portable",
        pytest.param(
            "linux",
            marks=pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux"),
        ),
    ],
)
def test_a_killed_parent_leaves_no_orphan(mode: str, tmp_path: Path, cleanup) -> None:
    script = (
        _PORTABLE if mode == "portable" else "import sys\nfrom sales_stream.infra import process\n"
    ) + _PARENT
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "child.log"), *SLEEPER],
        stdout=subprocess.PIPE,
        text=True,
    )
    cleanup.append(parent.pid)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    cleanup.append(child)
    assert pid_alive(child)
    parent.kill()
    parent.wait(timeout=10)
    assert wait_until(lambda: not pid_alive(child), timeout=20)
    assert wait_until(lambda: _watchdogs(child) == [], timeout=20)


def test_a_killed_supervisor_leaves_no_server(tmp_path: Path, cleanup) -> None:
    """The real servers, spawned by a portable supervisor that is then SIGKILLed."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    script = _PORTABLE + "from sales_stream.infra import supervisor\nsys.exit(supervisor.main())"
    argv = [
        sys.executable,
        "-c",
        script,
        "--state-dir",
        str(state_dir),
        "--owner-pid",
        str(os.getpid()),
        "--ports",
        json.dumps(ports.stable_ports(state_dir, sql_port=None)),
    ]
    with (tmp_path / "supervisor.log").open("wb") as log:
        sup = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    cleanup.append(sup.pid)

    def _settled() -> bool:
        state = embedded.read_state(state_dir)
        return bool(state.get("ready") or state.get("error")) or sup.poll() is not None

    assert wait_until(_settled, timeout=60, interval=0.1)
    state = embedded.read_state(state_dir)
    assert state.get("ready"), (tmp_path / "supervisor.log").read_text()
    servers = [state["kafka"]["pid"], state["database"]["pid"]]
    cleanup.extend(servers)
    assert all(pid_alive(pid) for pid in servers)
    assert all(os.getpgid(pid) == pid for pid in servers)
    sup.kill()
    sup.wait(timeout=10)
    assert wait_until(lambda: not any(pid_alive(pid) for pid in servers), timeout=30)
    assert wait_until(lambda: not any(_watchdogs(pid) for pid in servers), timeout=20)


def _imports_linux(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name == "sales_stream.infra.linux" for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        if node.module == "sales_stream.infra.linux":
            return True
        return node.module == "sales_stream.infra" and any(a.name == "linux" for a in node.names)
    return False


def _mentions_linux_flag(test: ast.expr) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id == "LINUX")
        or (isinstance(n, ast.Attribute) and n.attr == "LINUX")
        for n in ast.walk(test)
    )


def _unguarded_linux_imports(tree: ast.AST) -> list[int]:
    """Line numbers of imports of `infra.linux` not inside an ``if`` on the LINUX flag."""
    found: list[int] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if _imports_linux(node) and not guarded:
            found.append(node.lineno)  # type: ignore[attr-defined]
        if isinstance(node, ast.If):
            for child in node.body:
                visit(child, guarded or _mentions_linux_flag(node.test))
            for child in node.orelse:
                visit(child, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


def test_linux_only_code_stays_in_its_branch() -> None:
    """/proc, libc.so.6 and prctl only in infra/linux.py, imported only under ``if LINUX``."""
    assert LINUX_MODULE.exists()
    misplaced, unguarded = [], []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path != LINUX_MODULE:
            misplaced += [f"{path.relative_to(SRC)}: {word}" for word in LINUX_ONLY if word in text]
        unguarded += [
            f"{path.relative_to(SRC)}:{line}" for line in _unguarded_linux_imports(ast.parse(text))
        ]
    assert misplaced == []
    assert unguarded == []


def test_the_guard_check_sees_an_unguarded_import() -> None:
    """The checker itself: a top-level import is caught, one under ``if LINUX`` is not."""
    bad = "from sales_stream.infra import linux\n"
    good = "if x and process.LINUX:\n    from sales_stream.infra import linux\nelse:\n    pass\n"
    assert _unguarded_linux_imports(ast.parse(bad)) == [1]
    assert _unguarded_linux_imports(ast.parse(good)) == []
    assert _unguarded_linux_imports(
        ast.parse("if LINUX:\n    pass\nelse:\n    import sales_stream.infra.linux\n")
    ) == [4]
