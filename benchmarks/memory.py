"""Section 5: peak RSS streaming 20,000 and 200,000 ids through a crawl to JSONL.

Each size runs in a fresh child process (``python -m benchmarks.memory --child ...``) that
pulls its ids from a generator and reads its own high-water mark at the end: ``VmHWM`` on
Linux (``ru_maxrss`` there includes the spawning parent's RSS, see ``_rss_mib``),
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` elsewhere. The server (no qps limit, own
process) is shared. Flat means memory does not grow with the input: 200k <= 1.2 x 20k.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec

from .harness import API_KEY, SectionResult, fake_server, run_child

TITLE = "5. Memory: peak RSS of a streaming crawl"
CONCURRENCY = 32
#: What each child runs: the judged crawl, and the bare stream beside it (context).
MODES = {
    "crawl": "crawl_video_details",
    "stream": "iter_detail_batches(dedupe=False) -> JsonlSink",
}


def _maxrss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _rss_mib() -> float:
    """This process's own peak RSS in MiB.

    On Linux ``ru_maxrss`` survives ``execve``: a child spawned by a parent holding 70 MiB
    reports at least 70 MiB whatever it does itself. ``VmHWM`` belongs to the process's
    own address space, so it is used where it exists; ``ru_maxrss`` elsewhere.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return _maxrss_mib()


def id_stream(n: int) -> Iterator[str]:
    """``n`` distinct 19-digit ids, generated lazily (never a list)."""
    for i in range(n):
        yield str(7_000_000_000_000_000_000 + i * 7_919)


async def _crawl(url: str, n: int, out: Path, mode: str) -> dict[str, object]:
    import keyapi_async as ka

    async with ka.KeyAPIClient(
        API_KEY, base_url=url, qps=100_000, max_concurrency=CONCURRENCY
    ) as client:
        before = _rss_mib()
        if mode == "crawl":
            report = await ka.crawl_video_details(client, id_stream(n), ka.JsonlSink(out))
            return {"rss_before_mib": before, "report": report.to_dict()}
        # "stream": the same pipeline without any dedupe set (ids known unique), to show
        # what the crawl's memory growth is made of.
        sink = ka.JsonlSink(out)
        fetched = missing = 0
        async with sink, contextlib.aclosing(
            client.iter_detail_batches(id_stream(n), dedupe=False)
        ) as batches:
            async for batch in batches:
                if batch.error is not None:
                    raise batch.error
                await sink.write(batch.videos)
                fetched += len(batch.videos)
                missing += len(batch.missing)
        report_ = {"fetched": fetched, "missing": missing, "ok": True}
        return {"rss_before_mib": before, "report": report_}


def child(url: str, n: int, mode: str) -> None:
    """Crawl ``n`` ids; print one JSON line with the peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "videos.jsonl"
        info = asyncio.run(_crawl(url, n, out, mode))
        info["bytes_written"] = out.stat().st_size
    info["peak_rss_mib"] = _rss_mib()
    info["ru_maxrss_mib"] = _maxrss_mib()
    print(msgspec.json.encode(info).decode())


def run(quick: bool) -> SectionResult:
    """One fresh child per size against one unlimited server."""
    result = SectionResult(TITLE)
    sizes = (2_000, 20_000) if quick else (20_000, 200_000)
    with fake_server() as server:
        for mode, label in MODES.items():
            peaks: dict[int, float] = {}
            for n in sizes:
                info = run_child(
                    "benchmarks.memory", ["--child", server.url, str(n), "--mode", mode],
                    timeout=600,
                )
                report = info["report"]
                if report["fetched"] + report["missing"] != n or not report["ok"]:
                    raise AssertionError(f"{mode} of {n} ids lost ids: {report}")
                peaks[n] = float(info["peak_rss_mib"])
                result.raw[f"{mode} {n}"] = info
                result.add(f"{label}, {n:,} ids: peak RSS", peaks[n], "MiB")
                result.add(
                    f"{label}, {n:,} ids: growth", peaks[n] - info["rss_before_mib"], "MiB",
                    note=f"peak minus {info['rss_before_mib']:.1f} MiB after imports and "
                    "client set-up",
                )
            small, large = sizes
            ratio = peaks[large] / peaks[small]
            if mode == "crawl":
                result.add(f"{label}: {large:,} / {small:,} peak RSS", ratio, "x",
                           target="<= 1.2x", ok=ratio <= 1.2)
            else:
                result.add(f"{label}: {large:,} / {small:,} peak RSS", ratio, "x")
    result.notes.append(
        f"ids from a generator; KeyAPIClient(qps=100000, max_concurrency={CONCURRENCY}); "
        "JsonlSink to a temp dir; server with no qps limit in its own process"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    """``--child URL N``: the measured process (internal)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--child", nargs=2, metavar=("URL", "N"), required=True)
    parser.add_argument("--mode", choices=("crawl", "stream"), default="crawl")
    args = parser.parse_args(argv)
    child(args.child[0], int(args.child[1]), args.mode)


if __name__ == "__main__":
    main()
