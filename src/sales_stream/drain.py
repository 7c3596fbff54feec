"""Before a stop: stop the producers, let the consumer groups reach the end of the topic.

``down`` first asks the producers of the notebooks' kernels to stop (the state directory's
`sales_stream.infra.embedded.stop_file`, which `sales_stream.ui.live` watches), then calls
`drain`, so MongoDB (and
its rollups), the lake and the extract agree when the services stop. It waits while some
group is behind *and* moving; a group that made no progress for `STALL_S` (no consumer runs)
is named with what it still has to read, which the durable broker keeps for its next start.
End offsets come from a fetch's highwater: the embedded broker's ListOffsets(LATEST) lags.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from sales_stream.groups import HYPER_GROUP, LAKE_GROUP, MONGO_GROUP

PIPELINE_GROUPS = (MONGO_GROUP, LAKE_GROUP, HYPER_GROUP)
#: Seconds without progress after which a group is taken as not running.
STALL_S = 5.0


def highwaters(bootstrap: str, topic: str, *, timeout_s: float = 10.0) -> dict[int, int]:
    """Each partition's end offset, from fetch responses (partition → next offset)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return {}
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        ends: dict[int, int] = {}
        while len(ends) < len(partitions) and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200, max_records=1)
            for tp in partitions:
                end = consumer.highwater(tp)
                if end is not None:
                    ends[tp.partition] = end
        return ends
    finally:
        consumer.close()


def group_lags(bootstrap: str, topic: str, groups: Iterable[str]) -> dict[str, int]:
    """Records each group has still to read on ``topic`` (groups that never committed: left out)."""
    ends = highwaters(bootstrap, topic)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sales-stream-drain")
    try:
        lags = {}
        for group in groups:
            committed = {
                tp.partition: meta.offset
                for tp, meta in admin.list_group_offsets(group).get(group, {}).items()
                if tp.topic == topic and meta.offset >= 0
            }
            if committed:
                lags[group] = sum(max(0, end - committed.get(p, 0)) for p, end in ends.items())
        return lags
    finally:
        admin.close()


def drain(
    bootstrap: str,
    topic: str,
    *,
    groups: Iterable[str] = PIPELINE_GROUPS,
    timeout_s: float = 60.0,
    progress: Callable[[str], None] = print,
) -> dict[str, int]:
    """Wait until every group that moves has read the topic to its end; return what is left.

    Never raises for the broker: a broker that cannot be read leaves nothing to wait for.
    """
    groups = tuple(groups)
    deadline = time.monotonic() + timeout_s
    last: dict[str, tuple[int, float]] = {}
    try:
        while True:
            lags = {g: n for g, n in group_lags(bootstrap, topic, groups).items() if n}
            now = time.monotonic()
            for group, lag in lags.items():
                if last.get(group, (None, 0.0))[0] != lag:
                    last[group] = (lag, now)
            moving = [g for g in lags if now - last[g][1] < STALL_S]
            if not moving or now >= deadline:
                break
            time.sleep(0.5)
    except KafkaError:
        return {}
    for group, lag in sorted(lags.items()):
        progress(f"{group} is {lag} records behind on {topic}: it reads them at the next start")
    return lags
