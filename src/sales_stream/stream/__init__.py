"""The one streaming runtime (poll → decode → dead letters → batch → sinks → commit).

Public API: `StreamRuntime`, `StreamWorker` (its thread), the `Sink` contract (`SinkResult`,
`SinkUnavailable`, `DeferredSink`, `PreparingSink`), `Batch`, typed stats (`StreamStats`,
`StreamState`), the `KafkaSource`, and the in-memory ends for fast tests (`MemoryLog`,
`MemorySource`, `MemorySink`).
"""

from sales_stream.stream.batch import Batch
from sales_stream.stream.memory import MemoryLog, MemorySink, MemorySource
from sales_stream.stream.runtime import StreamRuntime
from sales_stream.stream.sink import (
    DeferredSink,
    PreparingSink,
    Sink,
    SinkResult,
    SinkUnavailable,
)
from sales_stream.stream.source import KafkaSource, Source
from sales_stream.stream.stats import SinkTotals, StreamState, StreamStats
from sales_stream.stream.worker import StreamWorker
from sales_stream.stream.writer import Backoff

__all__ = [
    "Backoff",
    "Batch",
    "DeferredSink",
    "KafkaSource",
    "MemoryLog",
    "MemorySink",
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
