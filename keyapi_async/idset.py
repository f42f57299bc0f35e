"""Compatibility path: round one's docs named ``keyapi_async.idset.CompactIdSet``.

The set now lives in ``keyapi_async.bulk.idset``.
"""

from .bulk.idset import CompactIdSet

__all__ = ["CompactIdSet"]
