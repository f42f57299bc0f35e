"""Benchmarks for keyapi-async: ``python -m benchmarks`` (``--quick`` for a CI smoke run).

Every figure is measured against the fake server (keyapi_async.testing) on 127.0.0.1,
beside the baselines a user would otherwise write; see docs/benchmarks.md for the record.
"""
