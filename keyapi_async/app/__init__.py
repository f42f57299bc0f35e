"""The app layer: what a long-lived client in an app adds to the pipeline.

Coalescing of concurrent detail requests, caches (memory, Redis), the credit budget, event
hooks and the OpenTelemetry adapter. Each is off unless configured, and its optional extra
(redis, opentelemetry) is imported only by the module that needs it.

Layer: above limiting. May import the pipeline and limiting; never client, bulk or the CLI.
"""
