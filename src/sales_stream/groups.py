"""Consumer groups of the pipeline's runtimes (each keeps its own offsets); import-light."""

#: The consumer: MongoDB sales, dead letters and rollups.
MONGO_GROUP = "sales-mongo"
#: The Parquet lake.
LAKE_GROUP = "sales-lake"
#: The Hyper extract.
HYPER_GROUP = "sales-hyper"
