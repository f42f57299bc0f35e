"""The bulk layer: crawls of many ids or many ranking pages into an output, resumable.

``detail_crawl`` and ``ranking_crawl`` are the two crawls; ``run`` what they share (the
output, its lock and state, the tail that ends every run) and ``report`` their
``CrawlReport``; ``state``, ``filelock``, ``idsfile`` and ``idset`` the resume state, the
output lock, ids files and the compact id set; ``backfill`` date ranges, ``estimating``
credit estimates, ``progress`` the CLI's bars, ``outputs`` a sink picked from an output
spec; ``sinks`` the outputs themselves.

Layer: above the client. May import the pipeline, limiting, app and client; never the CLI.
"""
