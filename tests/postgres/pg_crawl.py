"""``python pg_crawl.py BASE_URL DSN TABLE IDS_FILE``: crawl the ids into a PostgresSink.

The crawling process of the kill-and-resume test (which SIGKILLs it mid-crawl); prints
the crawl report as JSON when it gets to the end.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec

import keyapi_async as ka


async def main(base_url: str, dsn: str, table: str, ids: list[str]) -> None:
    sink = ka.PostgresSink(dsn, table=table)
    async with ka.KeyAPIClient(
        "test-key", base_url=base_url, qps=250, max_concurrency=8,
        retry_policy=ka.RetryPolicy(base_delay=0.001, max_delay=0.01),
    ) as client:
        report = await ka.crawl_video_details(client, ids, sink)
    print(msgspec.json.encode(report.to_dict()).decode())


if __name__ == "__main__":
    with open(sys.argv[4]) as handle:
        ids = [line.strip() for line in handle if line.strip()]
    asyncio.run(main(*sys.argv[1:4], ids))
