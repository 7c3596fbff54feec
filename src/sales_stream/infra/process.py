"""Spawn and stop server subprocesses without leaving orphans, on Linux and macOS.

Liveness, start time and command line come from psutil. A spawned server must not outlive
the process that spawned it: on Linux the kernel sees to it (``PR_SET_PDEATHSIG``,
`sales_stream.infra.linux`); elsewhere the server starts as the leader of its own process
group and a small watchdog process (`sales_stream.infra.watchdog`) stops that group once the
spawner is gone. `LINUX` picks the branch (tests switch it off to run the portable one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

#: True where the Linux-only branch (`sales_stream.infra.linux`) is used.
LINUX = sys.platform == "linux"
_WATCHDOG = Path(__file__).with_name("watchdog.py")
_WATCHDOGS: dict[int, subprocess.Popen[bytes]] = {}  # server pid -> its watchdog (non-Linux)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with output appended to ``log_path``.

    With ``die_with_parent`` the child is stopped (SIGTERM) when the spawner dies, even by
    SIGKILL: on Linux when the thread that spawned it ends (so spawn from the main thread),
    elsewhere within a fraction of a second, by a watchdog that stops the child's process
    group (its children too). Without it, the child runs in its own session (a detached
    supervisor).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if die_with_parent and LINUX:
        from sales_stream.infra import linux

        return _popen(argv, log_path=log_path, env=env, preexec_fn=linux.die_with_parent)
    proc = _popen(argv, log_path=log_path, env=env, new_session=True)
    if die_with_parent:
        _WATCHDOGS[proc.pid] = _start_watchdog(proc.pid)
    return proc


def _popen(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None,
    preexec_fn: Callable[[], None] | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=preexec_fn,
            start_new_session=new_session,
        )


def _start_watchdog(group: int) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-I",
        str(_WATCHDOG),
        "--parent",
        str(os.getpid()),
        "--group",
        str(group),
    ]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)


def pid_alive(pid: int) -> bool:
    """Return True if ``pid`` is a live process (zombies count as dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


def pid_start_time(pid: int) -> float | None:
    """Return the start time of ``pid`` (seconds since the epoch; None if unavailable)."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def pid_cmdline(pid: int) -> str:
    """Return the command line of ``pid`` ('' if unavailable)."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def terminate(pid: int, *, timeout: float = 10.0, kill: bool = False) -> None:
    """Stop ``pid`` (SIGTERM, or SIGKILL if ``kill``), escalating to SIGKILL at ``timeout``."""
    try:
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_until(lambda: not pid_alive(pid), timeout=timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_until(lambda: not pid_alive(pid), timeout=5.0)


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Collect the exit status of a child we started (and stop its watchdog): no zombie left."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    watchdog = _WATCHDOGS.pop(proc.pid, None)
    if watchdog is not None:
        watchdog.terminate()
        watchdog.wait(timeout=5)


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
