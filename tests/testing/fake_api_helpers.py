"""Constants and small helpers shared by the fake-server tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

DETAIL = "/v1/tiktok/video/detail/analytics"
RANKING = "/v1/tiktok/video/ranking/analytics"
RANKING_PARAMS = {
    "date": "2024-05-01",
    "region": "US",
    "video_rank_field": "1",
    "rank_type": "1",
    "page_num": "1",
    "page_size": "10",
}


@dataclass
class Reply:
    """What came back over the wire."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


Get = Callable[..., Awaitable[Reply]]


def ranking(**changes: str | None) -> dict[str, str]:
    """RANKING_PARAMS with some values changed (None removes the parameter)."""
    params = dict(RANKING_PARAMS)
    for name, value in changes.items():
        if value is None:
            params.pop(name)
        else:
            params[name] = value
    return params
