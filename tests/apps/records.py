"""Realistic records for the cache tests: the fake server's synthetic data, decoded."""

from __future__ import annotations

import msgspec

from keyapi_async.pipeline.models import RankedVideo, VideoDetail
from keyapi_async.testing.data import RankingQuery, SyntheticData

_DATA = SyntheticData(seed=7, known_ratio=1.0, ranking_length=100)
_DETAIL = msgspec.json.Decoder(VideoDetail, strict=False)
_RANKED = msgspec.json.Decoder(RankedVideo, strict=False)


def details(n: int) -> list[VideoDetail]:
    """``n`` decoded video details with distinct ids."""
    ids = _DATA.make_ids(n, known=True)
    return [_DETAIL.decode(entry.raw) for entry in _DATA.detail_entries(ids)]


def ranking_page(page: int = 1, size: int = 10) -> list[RankedVideo]:
    """One decoded ranking page (JSON-in-string fields and all)."""
    query = RankingQuery("2025-01-06", "US", 1, 2)
    start = (page - 1) * size
    return [_RANKED.decode(e.raw) for e in _DATA.ranking_entries(query, start, start + size)]
