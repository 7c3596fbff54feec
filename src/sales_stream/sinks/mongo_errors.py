"""MongoDB driver errors as the stream runtime's errors, for the MongoDB sink and the rollups."""

from __future__ import annotations

import re

from pymongo.errors import PyMongoError

from sales_stream.stream.sink import MONGODB_SERVICE, SinkUnavailable

__all__ = ["unavailable"]


def unavailable(exc: PyMongoError) -> SinkUnavailable:
    """The runtime's transient error for a MongoDB failure, with a short reason.

    pymongo's server-selection errors append their timeouts and the whole topology description
    (hundreds of characters); the reason keeps what precedes them, e.g. ``AutoReconnect:
    127.0.0.1:41235: [Errno 111] Connection refused``.
    """
    head = _DRIVER_DETAILS.split(str(exc), maxsplit=1)[0]
    return SinkUnavailable(MONGODB_SERVICE, exc, reason=f"{type(exc).__name__}: {head}")


_DRIVER_DETAILS = re.compile(r" \(configured timeouts|, Timeout: |, Topology Description: ")
