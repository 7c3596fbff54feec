"""Consumer groups of the pipeline's runtimes (each keeps its own offsets); import-light."""

#: The consumer: MongoDB sales and dead letters.
MONGO_GROUP = "sales-mongo"
#: The rollups, following the consumer.
ROLLUP_GROUP = "sales-rollups"
#: The Parquet lake.
LAKE_GROUP = "sales-lake"
#: The Hyper extract.
HYPER_GROUP = "sales-hyper"
