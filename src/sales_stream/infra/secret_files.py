"""Secrets kept in the state directory: made once, mode 0600, never half-written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def secret_text(path: Path, make: Callable[[], str]) -> str:
    """Return the text of ``path``, written with ``make()`` (mode 0600) if it is absent.

    The file is written whole, then linked into place: a concurrent reader never sees half
    of it, and when two processes race, both use the winner's secret.
    """
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(make())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its secret
        finally:
            tmp.unlink()
    return path.read_text(encoding="ascii").strip()
