"""The read side: what notebooks, the dashboard, the checks and the report ask of the store.

`mongo_queries` (aggregations over MongoDB), `sql_queries` (the same over the PostgreSQL
endpoint), `dashboard_views` (the dashboard's figures from the rollups). They find the data by
`sales_stream.store`'s names and never import a writer.
"""
