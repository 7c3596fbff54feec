"""Scale-out: the rate of 1, 2 and 3 ``consume`` processes in one group, from MongoDB's side.

What a user runs, on a private embedded instance (temporary state directory, the durable stack:
the broker's log in the object store):

1. ``--events`` sales are produced once, keyed by region as the producer does, on a topic of
   6 partitions (the regions do not spread evenly: the shares are printed);
2. each run starts 1, 2 or 3 ``python -m sales_stream consume`` processes in a new group, into
   a new database (sales, dead letters, rollups: everything ``make run`` has), samples
   MongoDB's count of stored sales every 0.1 s until all are there, then stops them (SIGTERM,
   as Ctrl-C) together: members leaving one by one (``--until-idle``) would make the last one
   rejoin alone, which the embedded broker can hold for 15 s and more; the rate is the sales
   stored between 10 % and 90 % of the total over the time between (start-up and group join
   left out); each run is checked on the database (every sale stored once and counted in the
   rollups);
3. the runs go 1, 2, 3 processes, then 3, 2, 1, and so on for ``--rounds`` (the database slows
   down as it serves); each count's median rate is compared with the 1-process median of the
   same run.

On a 2-core machine the broker, the database and the consumers share the cores: the point of
scale-out here is that it stays exact (``tests/test_scale_out.py``); these rates show what the
coordination costs. The bound printed next to each ratio is the best a group could do if the
work were split as the range assignor splits the 6 partitions. Usage::

    python bench/scale_out.py [--events 60000] [--rounds 3]
"""

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import produce
from pymongo.collection import Collection

import sales_stream
from sales_stream import infra
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.drain import highwaters
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.rollups import totals
from sales_stream.store import HOURLY, SALES

TOPIC = "bench-scale-out"
PARTITIONS = 6
PROCESSES = (1, 2, 3)
SAMPLE_S = 0.1
LOW, HIGH = 0.1, 0.9
#: The processes run the code this script imports (a git worktree's too).
SRC = str(Path(sales_stream.__file__).resolve().parents[1])


def crossing(samples: list[tuple[float, int]], level: float) -> float:
    """When the sampled count reached ``level`` (linear between two samples)."""
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if c1 >= level:
            return t1 if c1 == c0 else t0 + (t1 - t0) * (level - c0) / (c1 - c0)
    raise ValueError(f"the count never reached {level}")


def count_until(
    sales: Collection, n: int, members: list[subprocess.Popen], tag: str
) -> list[tuple[float, int]]:
    """Sample the count of ``sales`` every `SAMPLE_S` until it reaches ``n``."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + 600
    while not samples or samples[-1][1] < n:
        if time.monotonic() > deadline or any(m.poll() is not None for m in members):
            raise RuntimeError(f"{tag}: {samples[-1:]} of {n} sales stored, a member gone")
        samples.append((time.monotonic(), sales.estimated_document_count()))
        time.sleep(SAMPLE_S)
    return samples


def run(settings: Settings, endpoints: infra.Endpoints, processes: int, n: int, tag: str) -> float:
    """``processes`` consumers in a new group and database; return their rate (sales/s)."""
    env = {
        **os.environ,
        "SALES_STREAM_STATE_DIR": str(settings.state_dir),
        "SALES_STREAM_TOPIC": TOPIC,
        "SALES_STREAM_DB": tag,
        "SALES_STREAM_PARTITIONS": str(PARTITIONS),
        "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "sales_stream", "consume", "--group", tag]
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    sales = client[tag][SALES]
    with tempfile.TemporaryFile("w+") as errors:  # not a pipe that nobody reads meanwhile
        members = [
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
            for _ in range(processes)
        ]
        try:
            samples = count_until(sales, n, members, tag)
            for member in members:
                member.send_signal(signal.SIGTERM)
            codes = [member.wait(timeout=120) for member in members]
        finally:
            for member in members:
                if member.poll() is None:
                    member.kill()
                    member.wait()
        if any(codes):
            errors.seek(0)
            raise RuntimeError(f"{tag}: consume exited {codes}: {errors.read()[-2000:]}")
    stored, counted = sales.count_documents({}), totals(client[tag], HOURLY)[0]
    client.drop_database(tag)
    client.close()
    if stored != n or counted != n:
        raise RuntimeError(f"{tag}: {stored} of {n} sales stored, {counted} in the rollups")
    return (HIGH - LOW) * n / (crossing(samples, HIGH * n) - crossing(samples, LOW * n))


def range_bound(shares: list[int], processes: int) -> float:
    """The best speed-up if the range assignor's split of the partitions bounds the work."""
    size, extra = divmod(len(shares), processes)
    start, largest = 0, 0
    for member in range(processes):
        end = start + size + (1 if member < extra else 0)
        largest = max(largest, sum(shares[start:end]))
        start = end
    return sum(shares) / largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = SaleGenerator(42).events(args.events)
    rates: dict[int, list[float]] = {k: [] for k in PROCESSES}
    with tempfile.TemporaryDirectory(prefix="sales-bench-") as tmp:
        settings = Settings(_env_file=None, mode="embedded", state_dir=Path(tmp) / "state")
        with infra.up(settings) as endpoints:
            ensure_topic(endpoints.kafka_bootstrap, TOPIC, partitions=PARTITIONS)
            produce(endpoints.kafka_bootstrap, TOPIC, events)
            ends = highwaters(endpoints.kafka_bootstrap, TOPIC)
            shares = [ends[p] for p in range(PARTITIONS)]
            print(f"durable embedded stack (Tansu on SeaweedFS, SecantusDB); {args.events:,} "
                  f"sales produced once on {PARTITIONS} partitions, keyed by region (shares "
                  f"{' / '.join(f'{100 * s / sum(shares):.0f}' for s in shares)} %); each run: "
                  "N consume processes in a new group into a new database (dead letters, "
                  f"rollups); rate = sales stored from {LOW:.0%} to {HIGH:.0%}, sampled on "
                  "MongoDB")  # fmt: skip
            for index in range(1, args.rounds + 1):
                order = PROCESSES if index % 2 else PROCESSES[::-1]
                done = {k: run(settings, endpoints, k, args.events, f"r{index}_{k}") for k in order}
                for k in order:
                    rates[k].append(done[k])
                print(f"round {index}: " + ", ".join(
                    f"{k} process{'es' if k > 1 else ''} {done[k]:,.0f}/s" for k in order
                ))  # fmt: skip
    base = statistics.median(rates[1])
    for k in PROCESSES:
        rate = statistics.median(rates[k])
        label = f"{k} process{'es' if k > 1 else ''}"
        print(f"{label:<12} {rate:>8,.0f} sales/s (median of {args.rounds})  "
              f"{rate / base:.2f}x 1 process  (range-assignor bound "
              f"{range_bound(shares, k):.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
