"""The producer side: generated sales sent to the Kafka topic, live or as a history.

Modules, one job each (import from them; this package re-exports nothing):

* `generator` — realistic, reproducible sales (`SaleGenerator`) and the clocks that date them;
* `badevents` — deliberately malformed messages, for the dead-letter path;
* `producer` — `ProducerThread` (start, pause, resume, stop) and `backfill`;
* `send_schedule` — when the live producer's next messages are due;
* `send_meter` — what it sent: counters, the latest sales, its measured rate.
"""
