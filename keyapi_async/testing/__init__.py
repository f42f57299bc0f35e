"""A local, faithful and harsher-than-life KeyAPI server for tests and benchmarks.

It speaks real HTTP on a real socket, so it exercises a client exactly as
the production API would, plus the faults production only shows rarely.
It stands alone: it imports nothing from the SDK's client modules.
"""

from keyapi_async.testing.faults import Faults
from keyapi_async.testing.server import DEFAULT_API_KEY, FakeKeyAPI
from keyapi_async.testing.stats import RequestRecord, ServerStats

__all__ = ["DEFAULT_API_KEY", "FakeKeyAPI", "Faults", "RequestRecord", "ServerStats"]
