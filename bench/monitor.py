"""What the soak samples while the pipeline runs: progress counts, produce latency, processes.

`Monitor` runs in a thread of the soak's process and takes little: every ``interval_s`` the
number of sales the lake holds (its runtime's count, each after its object was written to
the store) and the number the rollups count (a ``$group`` over the rollup rows, from the
database's side); every second one message produced to a probe topic with ``acks=all``
(the broker's produce latency under the soak's load); every ``process_s`` the RSS and CPU
of every process of the run (this one, the servers, Hyper, the extract observer).

A count ``C`` observed at time ``t`` becomes a freshness: ``t`` minus the ``ts`` of the
``C``-th oldest sale, i.e. how old the newest sale that count covers is at best, in the order
the producer made them (`count_freshness`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from kafka import KafkaProducer

#: The extract observer (`common.ExtractObserver`) and its own Hyper: the instrument.
OBSERVER = "extract observer"
#: Process kinds, recognised in a command line (the first match wins).
KINDS = (
    ("weed", "SeaweedFS"),
    ("tansu", "Tansu"),
    ("secantus", "SecantusDB"),
    ("hyperd", "Hyper"),
    ("multiprocessing", OBSERVER),
)
SELF = "pipeline (producer, 3 runtimes)"


@dataclass
class Samples:
    """What `Monitor` collected; times in epoch seconds."""

    lake: list[tuple[float, int]] = field(default_factory=list)
    rollups: list[tuple[float, int]] = field(default_factory=list)
    produce: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    #: kind → [(time, RSS bytes, CPU % of one core)], summed over the kind's processes
    processes: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)


class Monitor:
    """Samples counts, a produce probe and the processes in a background thread.

    Args:
        lake_count: The number of sales the lake holds now.
        rollup_count: The number of sales the rollups count now.
        bootstrap: Kafka's address, for the probe.
        probe_topic: An existing topic the probe writes to (not read by the pipeline).
        state_dir: The servers' state directory (their command lines name it).
    """

    def __init__(
        self,
        *,
        lake_count: Callable[[], int],
        rollup_count: Callable[[], int],
        bootstrap: str,
        probe_topic: str,
        state_dir: Path,
        interval_s: float = 1.0,
        process_s: float = 5.0,
    ) -> None:
        self.samples = Samples()
        self._lake_count, self._rollup_count = lake_count, rollup_count
        self._probe = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        self._probe_topic = probe_topic
        self._state_dir = str(state_dir)
        self._interval_s, self._process_s = interval_s, process_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-monitor", daemon=True)
        self._procs: dict[int, tuple[str, psutil.Process]] = {}

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> Samples:
        """Stop sampling; return the samples."""
        self._stop.set()
        self._thread.join(timeout=30)
        self._probe.close()
        return self.samples

    def _run(self) -> None:
        next_process = 0.0
        while not self._stop.wait(self._interval_s):
            now = time.time()
            self.samples.lake.append((now, self._lake_count()))
            self.samples.rollups.append((now, self._rollup_count()))
            started = time.perf_counter()
            self._probe.send(self._probe_topic, b"probe").get(timeout=30)
            self.samples.produce.append((now, time.perf_counter() - started))
            if now >= next_process:
                self._sample_processes(now)
                next_process = now + self._process_s

    def _sample_processes(self, now: float) -> None:
        for proc in _processes_of_run(self._state_dir):
            if proc.pid not in self._procs:
                try:
                    proc.cpu_percent(None)  # the first call starts the CPU clock
                except psutil.NoSuchProcess:
                    continue  # ended since it was listed
                self._procs[proc.pid] = (_kind(proc), proc)
        totals: dict[str, list[float]] = {}
        for pid, (kind, proc) in list(self._procs.items()):
            try:
                rss, cpu = proc.memory_info().rss, proc.cpu_percent(None)
            except psutil.NoSuchProcess:
                del self._procs[pid]
                continue
            total = totals.setdefault(kind, [0.0, 0.0])
            total[0] += rss
            total[1] += cpu
        for kind, (rss, cpu) in totals.items():
            self.samples.processes.setdefault(kind, []).append((now, rss, cpu))


def _processes_of_run(state_dir: str) -> list[psutil.Process]:
    """This process, the servers' supervisor (parent of one naming ``state_dir``), descendants."""
    roots = {psutil.Process()}
    for proc in psutil.process_iter(["cmdline"]):
        if state_dir in " ".join(proc.info["cmdline"] or ()):
            parent = proc.parent()
            roots.add(parent if parent is not None else proc)
    found = {}
    for root in roots:
        try:
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.NoSuchProcess:
            continue
    return list(found.values())


def _kind(proc: psutil.Process) -> str:
    """What a process of the run is, from its command line."""
    if proc.pid == psutil.Process().pid:
        return SELF
    try:
        cmdline = " ".join(proc.cmdline())
        kind = next((name for marker, name in KINDS if marker in cmdline), "supervisor")
        parent = proc.parent()
        if kind == "Hyper" and parent and "multiprocessing" in " ".join(parent.cmdline()):
            return OBSERVER  # the observer's own Hyper: part of the instrument, not the pipeline
    except psutil.NoSuchProcess:
        return "other"
    return kind


def count_freshness(
    counts: Sequence[tuple[float, int]], sorted_ts: Sequence[float]
) -> list[tuple[float, float]]:
    """``(t, t - ts of the C-th oldest sale)`` for each count ``C > 0`` seen at ``t``."""
    out = []
    for at, count in counts:
        if 0 < count <= len(sorted_ts):
            out.append((at, at - sorted_ts[count - 1]))
    return out
