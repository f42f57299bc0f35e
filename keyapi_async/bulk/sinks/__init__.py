"""Sinks: where a crawl's records go (JSONL, CSV, Parquet files; a PostgreSQL table).

Part of the bulk layer. pyarrow and asyncpg are imported only when a sink that needs them is
created, so importing this package costs neither.
"""
