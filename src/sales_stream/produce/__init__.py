"""The producer side: generated sales sent to the Kafka topic, live or as a history.

Modules, one job each (import from them; this package re-exports nothing):

* `generator` — realistic, reproducible sales (`SaleGenerator`) and the clocks that date them;
* `badevents` — deliberately malformed messages, for the dead-letter path;
* `producer` — `ProducerThread`, the live producer a notebook starts, pauses and stops; its
  parts: `messages` (what it sends), `send_schedule` (when), `send_loop` (its worker thread),
  `run_state` (what the controls share with the worker), `send_meter` (counters, rate);
* `delivery` — the Kafka client (records keyed by region) and the tally of what the broker
  settled, shared with `backfill`;
* `backfill` — a history sent as fast as possible, once per topic (`topic_has_records`);
* `stats` — `ProducerStats`, what both report.
"""
