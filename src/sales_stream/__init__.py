"""sales-stream: a real-time sales pipeline, Kafka -> MongoDB -> Tableau, with a Parquet lake."""

__version__ = "0.1.0"
