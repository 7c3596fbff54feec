"""Decode throughput of sale events, compared with bare ``json.loads`` on the same payloads.

Also prints the backfill generation and encoding rates. Usage::

    python bench/decode_speed.py [--events 100000] [--repeats 5]
"""

import argparse
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sales_stream.events import SaleEvent, decode, encode
from sales_stream.produce.badevents import make_bad_payload
from sales_stream.produce.generator import SaleGenerator


def best_rate(func: Callable[[], object], count: int, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` runs of ``func`` over ``count`` items."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, repeats = args.events, args.repeats

    end = datetime(2024, 6, 1, tzinfo=UTC)
    start = time.perf_counter()
    events: list[SaleEvent] = list(SaleGenerator(1).backfill(7, end=end, events_per_day=n // 7))
    generate_rate = len(events) / (time.perf_counter() - start)
    n = len(events)
    start = time.perf_counter()
    payloads = [encode(e) for e in events]
    encode_rate = n / (time.perf_counter() - start)
    rng = random.Random(1)
    bad = [make_bad_payload(rng, base=e)[0] for e in events[: n // 10]]

    baseline = best_rate(lambda: [json.loads(p) for p in payloads], n, repeats)
    valid = best_rate(lambda: [decode(p) for p in payloads], n, repeats)
    invalid = best_rate(lambda: [decode(p) for p in bad], len(bad), repeats)

    size = sum(map(len, payloads)) / n
    print(f"events: {n}, mean payload {size:.0f} bytes, best of {repeats} runs")
    print(f"backfill generation: {generate_rate:>10,.0f} events/s")
    print(f"encode:              {encode_rate:>10,.0f} events/s")
    print(f"json.loads baseline: {baseline:>10,.0f} payloads/s")
    ratio = valid / baseline
    print(f"decode (valid):      {valid:>10,.0f} decodes/s  ratio vs json.loads {ratio:.2f}")
    print(f"decode (malformed):  {invalid:>10,.0f} decodes/s  (mixed bad kinds, incl. 16 KiB+)")


if __name__ == "__main__":
    main()
