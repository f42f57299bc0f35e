"""Rate limiting as one family: when a request may start.

``base`` holds the interface (the ``RateLimiter`` protocol), ``local`` the GCRA limiter,
``adaptive`` the controller that learns the key's limit from 429s (``AdaptiveRate``,
``Patience``), ``redis`` one (adaptive) budget shared across processes (the ``redis`` extra,
imported only when ``RedisRateLimiter`` is used).

Layer: above the pipeline. May import the pipeline; never app, client, bulk or the CLI.
"""
