"""Stop a process group when the process that started it dies: the non-Linux PR_SET_PDEATHSIG.

``python watchdog.py --parent PID --group PGID`` (run by file path, standard library only, so
it starts fast) is started by `sales_stream.infra.process.spawn` next to each server it
spawns outside Linux, in its own session so no signal sent to the spawner's group reaches it.
It polls its parent pid: once it is no longer ``PID`` (the spawner died, even by SIGKILL, and
the watchdog was re-parented) it sends SIGTERM to the group, then SIGKILL after a grace
period. It exits when the group is gone or on SIGTERM (the spawner reaped its server).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

POLL_S = 0.1
GRACE_S = 5.0


def group_exists(pgid: int) -> bool:
    """Return True while any process (a zombie included) is in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, *, grace: float = GRACE_S) -> None:
    """SIGTERM the group, SIGKILL what is left of it after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while group_exists(pgid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


def main(argv: list[str] | None = None) -> int:
    """Watch until the group is gone; stop it if the parent dies first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", type=int, required=True, help="the spawner's pid")
    parser.add_argument("--group", type=int, required=True, help="the server's process group")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    while group_exists(args.group):
        if os.getppid() != args.parent:
            stop_group(args.group)
            return 0
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
