"""Rate limiting as one family: when a request may start.

``local`` holds the interface (the ``RateLimiter`` protocol) and the local GCRA limiter,
``adaptive`` the controller that learns the key's limit from 429s (``AdaptiveRate``,
``Patience``), ``redis`` one (adaptive) budget shared across processes (the ``redis`` extra,
imported only when ``RedisRateLimiter`` is used).

Layer: above the pipeline. May import the pipeline; never app, client, bulk or the CLI.
"""
