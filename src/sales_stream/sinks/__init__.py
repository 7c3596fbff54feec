"""Sinks: where consumed sale events are stored (MongoDB, the Parquet data lake)."""
