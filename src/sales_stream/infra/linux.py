"""The Linux-only parts of process handling, imported only under ``if process.LINUX``.

Everything that needs the Linux kernel itself (``prctl`` through ``libc.so.6``) lives here, so
the portable layer in `sales_stream.infra.process` runs wherever psutil does (a test greps
``src/`` to keep it so).
"""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the spawning thread ends (runs between fork and exec)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
