"""The bulk layer: crawls of many ids or many ranking pages into an output, resumable.

Crawls, their resume state, ids files and the compact id set, progress, backfills of date
ranges, credit estimates, the output lock, and the sinks (``bulk.sinks``).

Layer: above the client. May import the pipeline, limiting, app and client; never the CLI.
"""
