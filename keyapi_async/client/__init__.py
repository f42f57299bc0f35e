"""The client: ``KeyAPIClient`` composing the pipeline, limiting and the app layer.

``attempts`` is the attempt pipeline every request takes (slot, credit, permit, send,
decode, retry), ``details`` the detail fan-out and lookups (cache, coalescer), ``ranking``
the ranking pagination; ``client`` holds ``KeyAPIClient`` itself (configuration, lifecycle,
``request()``), made of the last two on top of the first.

Layer: above app. May import the pipeline, limiting and app; never bulk or the CLI.
"""
