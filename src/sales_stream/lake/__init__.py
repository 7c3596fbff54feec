"""The Parquet data lake: where files go, how they are written, read, compacted and shown.

Layout under the lake root (a local directory, or any pyarrow or fsspec filesystem URL such
as ``hdfs://namenode:8020/lake`` or ``webhdfs://127.0.0.1:9870/lake``)::

    sales/date=YYYY-MM-DD/region=<name>/part-<topic>-<partition>-<first>-<last>[.<inc>].parquet
    _dead_letters/part-<topic>-<partition>-<first>-<last>[.<inc>].parquet

``date`` is the UTC date of ``ts``. Region names are percent-encoded exactly as pyarrow's
hive partitioning encodes them (``region=%C3%8Ele-de-France``), so
``pyarrow.dataset.dataset(..., partitioning="hive")`` and ``pandas.read_parquet`` give back
the exact names. As usual with hive partitioning, ``date`` and ``region`` live in the
directory names only, not inside the files. Readers (pyarrow, Spark) ignore names starting
with ``.`` or ``_``: hence ``_dead_letters`` and the ``.part-….tmp`` temporary files.

A file holds the rows of one Kafka topic incarnation and partition for one directory, and its
name gives the offsets of its first and last rows and the incarnation ``<inc>`` (the sink's
exactly-once rule relies on it, see `sales_stream.sinks.lake`). Compaction merges the files
of a closed partition into one file per topic-partition named after the whole range it covers.

Schema: ``ts`` is ``timestamp[ms, tz=UTC]``; low-cardinality strings are dictionary-encoded;
money is ``float64``, the values of the event contract and of MongoDB, so the lake's sums
match MongoDB's; files are zstd-compressed. Dead-letter files hold the fields of
`sales_stream.deadletters.DeadLetter`, the record MongoDB stores.

Modules, one job each (import from them; this package re-exports nothing):

* `layout` — `Lake`/`open_lake`, data file names (`part_name`, `PartFile`), listing,
  `live_parts`, the partition directories;
* `tables` — the Arrow schemas (from `sales_stream.contract` and `DeadLetter`) and tables;
* `files` — atomic, synced writes and reads of one file;
* `read` — `read_lake`, `lake_files`, `revenue_by_region_lake`, `read_dead_letters`;
* `compaction` — `compact`, `compact_partition`;
* `tree` — `lake_stats`, `partition_tree`.
"""
