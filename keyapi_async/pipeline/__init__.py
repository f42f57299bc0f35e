"""The request pipeline: one module per stage, from arguments to typed records.

validation -> batching -> fanout / concurrency -> retrying -> transport (bodies, redaction,
reachability) -> decoding (salvage) -> models; errors is the one error tree.

Layer: the bottom. Imports only the standard library, third-party packages, the package's own
private root modules (``_version``) and other pipeline modules; never limiting, app, client,
bulk or the CLI.
"""
