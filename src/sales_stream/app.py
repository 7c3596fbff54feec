"""The composition root: `Stack` builds the pipeline's runtimes once, for every front-end.

``pipeline.py`` (``make run``), the CLI, the notebooks and the benchmarks all get their
consumer, lake and extract runtimes here, so they cannot disagree on what a consumer does
(e.g. whether it keeps the rollups). Notebooks register the workers with
`sales_stream.ui.live.replace`, so a cell re-run stops the worker it built before.

    stack = Stack.from_settings(load_settings())
    workers = stack.live_workers(lake=stack.lake_location(), hyper="out/sales.hyper")
    for worker in workers:  # MongoDB and its rollups, the lake, the extract: one group each
        worker.start()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sales_stream.groups import HYPER_GROUP, LAKE_GROUP, MONGO_GROUP
from sales_stream.stream.runtime import StreamRuntime
from sales_stream.stream.worker import StreamWorker

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database

    from sales_stream.config import Settings
    from sales_stream.infra import Endpoints
    from sales_stream.lake.layout import Lake, LakeLocation
    from sales_stream.stream.sink import Sink

_N = TypeVar("_N", int, float)

#: The loop polls at least every second, so a short limit is safe; it also bounds how long
#: a rebalance waits for a member that died mid-join.
MAX_POLL_INTERVAL_MS = 30_000
#: A hung MongoDB must not block a write attempt forever.
SOCKET_TIMEOUT_MS = 60_000
#: The lake of embedded mode by default, on the embedded object store.
EMBEDDED_LAKE = "s3://lake/"


@dataclass
class Stack:
    """The running services and the settings, and the runtimes built on them.

    Args:
        settings: The pipeline's settings (topic, database, lake, rollups switch).
        endpoints: The running services (`sales_stream.infra.up`).
    """

    settings: Settings
    endpoints: Endpoints
    _client: MongoClient | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, endpoints: Endpoints | None = None) -> Stack:
        """Bring up (or find) the services of ``settings`` and build a stack on them."""
        if endpoints is None:
            from sales_stream import infra

            endpoints = infra.up(settings)
        return cls(settings, endpoints)

    @property
    def mongo(self) -> MongoClient:
        """The stack's MongoDB client (journaled writes, bounded socket waits)."""
        if self._client is None:
            from sales_stream.clients import mongo_client

            self._client = mongo_client(
                self.endpoints.mongo_uri.get_secret_value(), socketTimeoutMS=SOCKET_TIMEOUT_MS
            )
        return self._client

    @property
    def db(self) -> Database:
        """The pipeline's database."""
        return self.mongo[self.settings.db]

    def ensure_topic(self) -> None:
        """Create the topic with the configured partitions if it is missing."""
        from sales_stream.clients import ensure_topic

        ensure_topic(
            self.endpoints.kafka_bootstrap, self.settings.topic, partitions=self.settings.partitions
        )

    # Runtimes.

    def consumer(
        self,
        *,
        group_id: str = MONGO_GROUP,
        db: str | None = None,
        max_batch: int | None = None,
        rollup_flush_s: float | None = None,
    ) -> StreamRuntime:
        """Kafka → MongoDB: the sales (``_id`` only), the dead letters and the rollups.

        The rollups (unless ``settings.sql_rollups`` is off) follow the MongoDB sink in the
        chain: they count the sales it kept, and are flushed (then the offsets committed)
        every ``rollup_flush_s``.

        Args:
            group_id: Consumer group.
            db: Database name (default: the settings').
            max_batch: Most records per checkpoint (default: the settings').
            rollup_flush_s: Interval between two flushes of the rollups and commits (default:
                the settings').
        """
        from sales_stream.sinks.mongo import MongoSink

        database = self.mongo[db or self.settings.db]
        sinks: list[Sink] = [MongoSink(database)]
        if self.settings.sql_rollups:
            from sales_stream.sinks.rollups import RollupSink

            sinks.append(RollupSink(database))
        settings = self.settings
        return self._runtime(
            "mongodb",
            group_id,
            sinks,
            max_batch=_or(max_batch, settings.consumer_max_batch),
            commit_interval_s=_or(rollup_flush_s, settings.rollup_flush_s),
        )

    def lake_location(self, location: LakeLocation | None = None) -> Lake:
        """The lake at ``location`` (default: `lake_url`), opened.

        A lake `on_embedded_store` is opened with the object store's credentials.
        """
        from sales_stream.lake.layout import Lake, open_lake

        if isinstance(location, Lake):
            return location
        url = lake_url(self.settings, location)
        if on_embedded_store(self.settings, url):
            root = url.removeprefix("s3://").rstrip("/")
            return Lake(url, self.endpoints.s3_filesystem(), root)
        return open_lake(url)

    def lake_web_address(self, lake: Lake) -> str | None:
        """Where a person browses ``lake`` (the embedded store's filer), if anywhere."""
        if self.endpoints.filer_url is None or not lake.url.startswith("s3://"):
            return None
        return f"{self.endpoints.filer_url}{lake.root}/"

    def lake(
        self,
        path: LakeLocation | None = None,
        *,
        group_id: str = LAKE_GROUP,
        flush_events: int | None = None,
        flush_seconds: float | None = None,
    ) -> StreamRuntime:
        """Kafka → the Parquet lake at ``path`` (default: `lake_location`).

        A file holds at most ``flush_events`` sales, accumulated for ``flush_seconds``
        (defaults: the settings').
        """
        from sales_stream.sinks.lake import LakeSink

        sink = LakeSink(self.lake_location(path))
        settings = self.settings
        return self._runtime(
            "lake",
            group_id,
            [sink],
            max_batch=_or(flush_events, settings.lake_max_batch),
            flush_interval_s=_or(flush_seconds, settings.lake_flush_s),
        )

    def hyper(
        self, path: str | Path, *, group_id: str = HYPER_GROUP, flush_seconds: float | None = None
    ) -> StreamRuntime:
        """Kafka → the Tableau Hyper extract at ``path``, appended every ``flush_seconds``.

        Default: the settings' ``hyper_flush_s``.
        """
        from sales_stream.sinks.hyper import HyperSink

        return self._runtime(
            "hyper",
            group_id,
            [HyperSink(path)],
            max_batch=self.settings.hyper_max_batch,
            flush_interval_s=_or(flush_seconds, self.settings.hyper_flush_s),
            max_write_share=self.settings.hyper_write_share,
        )

    # Workers (a runtime in a thread).

    def consumer_worker(self, **options: object) -> StreamWorker:
        """`consumer` in a background thread."""
        runtime = self.consumer(**options)  # type: ignore[arg-type]
        return StreamWorker(runtime)

    def live_workers(
        self, *, lake: LakeLocation | None = None, hyper: str | Path | None = None
    ) -> list[StreamWorker]:
        """What ``make run`` runs: the consumer (and its rollups), the lake and the extract.

        The lake and the extract where a path is given.
        """
        workers = [self.consumer_worker()]
        if lake is not None:
            workers.append(self.lake_worker(lake))
        if hyper is not None:
            workers.append(self.hyper_worker(hyper))
        return workers

    def lake_worker(self, path: LakeLocation | None = None, **options: object) -> StreamWorker:
        """`lake` in a background thread."""
        runtime = self.lake(path, **options)  # type: ignore[arg-type]
        return StreamWorker(runtime)

    def hyper_worker(self, path: str | Path, **options: object) -> StreamWorker:
        """`hyper` in a background thread."""
        runtime = self.hyper(path, **options)  # type: ignore[arg-type]
        return StreamWorker(runtime)

    def close(self) -> None:
        """Close the MongoDB client (stop the workers first)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _runtime(
        self,
        name: str,
        group_id: str,
        sinks: list[Sink],
        *,
        max_batch: int,
        flush_interval_s: float = 0.0,
        max_write_share: float = 1.0,
        commit_interval_s: float = 0.0,
    ) -> StreamRuntime:
        return kafka_runtime(
            self.endpoints.kafka_bootstrap,
            self.settings.topic,
            group_id,
            sinks,
            name=name,
            max_batch=max_batch,
            flush_interval_s=flush_interval_s,
            max_write_share=max_write_share,
            commit_interval_s=commit_interval_s,
        )


def lake_url(settings: Settings, location: str | Path | None = None) -> str:
    """The lake's path or URL: ``location``, else ``settings.lake``, else the mode's default.

    The default is `EMBEDDED_LAKE` in embedded mode, the local folder ``lake`` otherwise.
    """
    from sales_stream.config import Mode

    default = EMBEDDED_LAKE if settings.mode is Mode.EMBEDDED else "lake"
    return str(location or settings.lake or default)


def on_embedded_store(settings: Settings, url: str) -> bool:
    """Whether the lake ``url`` is on the embedded object store (``s3://`` in embedded mode)."""
    from sales_stream.config import Mode

    return settings.mode is Mode.EMBEDDED and url.startswith("s3://")


def _or(value: _N | None, default: _N) -> _N:
    """``value`` unless it is ``None`` (0 is a value)."""
    return default if value is None else value


def kafka_runtime(
    bootstrap: str,
    topic: str,
    group_id: str,
    sinks: list[Sink],
    *,
    name: str,
    max_batch: int = 5000,
    flush_interval_s: float = 0.0,
    max_write_share: float = 1.0,
    commit_interval_s: float = 0.0,
) -> StreamRuntime:
    """A runtime reading ``topic`` in consumer group ``group_id`` into ``sinks``."""
    from sales_stream.stream.source import KafkaSource

    def source() -> KafkaSource:
        return KafkaSource(
            bootstrap,
            topic,
            group_id=group_id,
            max_poll_records=max_batch,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )

    return StreamRuntime(
        source,
        sinks,
        name=name,
        max_batch=max_batch,
        flush_interval_s=flush_interval_s,
        max_write_share=max_write_share,
        commit_interval_s=commit_interval_s,
    )
