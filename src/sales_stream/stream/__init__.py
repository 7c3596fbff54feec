"""The one streaming runtime (poll → decode → dead letters → batch → sinks → commit).

Public API: `StreamRuntime`, `StreamWorker` (its thread), the `Sink` contract (`SinkResult`,
`SinkUnavailable`, `DeferredSink`, `PreparingSink`), `Batch`, typed stats (`StreamStats`,
`StreamState`), and the sources (`KafkaSource`, and `MemoryLog`/`MemorySource` for fast tests).
"""

from sales_stream.stream.batch import Batch
from sales_stream.stream.runtime import Backoff, StreamRuntime
from sales_stream.stream.sink import (
    DeferredSink,
    PreparingSink,
    Sink,
    SinkResult,
    SinkUnavailable,
)
from sales_stream.stream.source import KafkaSource, MemoryLog, MemorySource, Source
from sales_stream.stream.stats import SinkTotals, StreamState, StreamStats
from sales_stream.stream.worker import StreamWorker

__all__ = [
    "Backoff",
    "Batch",
    "DeferredSink",
    "KafkaSource",
    "MemoryLog",
    "MemorySource",
    "PreparingSink",
    "Sink",
    "SinkResult",
    "SinkTotals",
    "SinkUnavailable",
    "Source",
    "StreamRuntime",
    "StreamState",
    "StreamStats",
    "StreamWorker",
]
