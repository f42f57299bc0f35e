"""The ``keyapi-async`` command (also ``python -m keyapi_async``): bulk crawls from a shell.

Exit codes: 0 every id fetched or found missing (ranking: the pages asked for stored);
1 some ids or a page failed after their retries (re-run to retry just those); 2 aborted:
bad input (ids file, output path, an output another crawl holds), no key, key refused
(401) or credits exhausted (402); 3 the output could not be written mid-crawl (disk
full): free space and re-run to resume; 130 stopped by Ctrl-C (SIGINT) or SIGTERM, with
the output valid and resumable (the shell convention for SIGINT, so scripts can tell
"stopped by the user" from "cannot go on").

The key is read from ``KEYAPI_API_KEY``; it is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import signal
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

import msgspec

from ._version import __version__
from .bulk.backfill import RangeReport, crawl_ranking_range
from .bulk.detail_crawl import crawl_video_details
from .bulk.estimating import estimate_details, estimate_ranking
from .bulk.idsfile import IdsFile, check_ids_file, format_problems
from .bulk.outputs import FORMATS, describe_output, is_database, open_output
from .bulk.progress import ScanProgress, make_progress, summary_table
from .bulk.ranking_crawl import crawl_video_ranking
from .bulk.report import CrawlReport
from .bulk.sinks.base import FileSink, MissingExtraError, Sink
from .bulk.state import MissingLog, load_state
from .client.client import DEFAULT_MAX_RETRIES, DEFAULT_QPS, DEFAULT_TIMEOUT, KeyAPIClient
from .pipeline.errors import InvalidParameterError, KeyAPIError, OutputWriteError
from .pipeline.models import RankedVideo, RankType, VideoDetail, VideoRankField
from .pipeline.validation import MAX_PAGE_SIZE, check_max_pages, check_region, ranking_query

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_ABORTED, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


_EPILOG_VIDEOS = """\
IDS_FILE holds one video id a line, or is a CSV with a video_id column; '-' reads
standard input, and a pipe such as <(cut -d, -f1 export.csv) works too. UTF-8 (with or
without a BOM) and UTF-16 with a BOM (PowerShell's '>') are read. Blank lines and lines
starting with '#' are skipped. Every id is checked before the first request: a file with
bad ids is refused with their line numbers.

Re-running the same command resumes: ids already in OUT (or recorded as unknown to the
API in OUT.missing.txt) are skipped, so no credit is spent twice. Ctrl-C stops cleanly.

examples:
  export KEYAPI_API_KEY=...            # the key; prefer the environment to --api-key
  keyapi-async videos ids.txt -o videos.jsonl
  keyapi-async videos ids.csv -o videos.parquet --format parquet --qps 20
  cut -d, -f1 export.csv | keyapi-async videos - -o videos.csv
  keyapi-async videos ids.txt -o out.jsonl --mock      # against a local fake API
  # four workers (processes or hosts) sharing the key's 20 qps through Redis:
  keyapi-async videos ids.txt --shard 1/4 -o part1.jsonl --qps 20 --redis-url redis://host:6379/0

OUT is locked while the crawl runs: a second crawl on the same OUT is refused at once.

exit codes: 0 all fetched or missing, 1 some ids failed, 2 aborted (bad input or OUT,
401, 402, a proxy's 407), 3 OUT could not be written (disk full; free space and re-run),
130 interrupted (resumable)."""

_EPILOG_RANKING = """\
Stores a ranking list page by page, in rank order. Re-running the same command resumes
after the last page stored; a different query with the same OUT is refused.

examples:
  keyapi-async ranking --date 2024-05-01 --region US --rank-field views --rank-type day \\
      -o ranking.jsonl
  keyapi-async ranking --date 2024-04-29 --region GB --rank-field sales --rank-type week \\
      --category 601450 --ai false --max-pages 50 -o weekly.csv

exit codes: 0 done, 1 a page failed after its retries (re-run to continue), 2 aborted
(bad input or OUT, 401, 402, a proxy's 407), 3 OUT could not be written (disk full; free
space and re-run), 130 interrupted (resumable)."""

_EPILOG_DEMO = """\
With no key configured (KEYAPI_API_KEY), or with --mock: starts the embedded fake KeyAPI
server (with latency, a QPS limit it enforces and a few injected faults: 5xx, resets,
429s, truncated answers) and crawls a few thousand ids against it into a JSONL file,
showing progress and the summary. Needs no key and no network; takes a few seconds.

With a key configured: the same pipeline against the real API, small on purpose: last
week's US ranking by views (3 pages), then the details of those videos. It spends at most
6 credits, and says so before it starts.

examples:
  keyapi-async demo
  keyapi-async demo --mock --ids 10000 --qps 100 --out-dir ./demo-out"""

_EPILOG_MOCK = """\
Runs the fake KeyAPI server until Ctrl-C; it prints 'listening on URL'. Point a crawl at
it with --base-url URL and KEYAPI_API_KEY=test-key.

examples:
  keyapi-async mock-server --port 8080 --qps 10 --latency 0.1
  keyapi-async mock-server --fault http_5xx=0.05 --fault reset=0.01 --credits 1000"""


def _qps(text: str) -> float | str:
    """``--qps``: a number, or ``auto`` to discover the key's limit."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _add_client_options(parser: argparse.ArgumentParser, default_qps: float) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--base-url", help="API root (default: KEYAPI_BASE_URL or production)")
    group.add_argument(
        "--proxy", metavar="URL",
        help="HTTP(S) proxy, http://[user:password@]host:port (default: HTTPS_PROXY / "
        "HTTP_PROXY, honouring NO_PROXY)",
    )
    group.add_argument(
        "--api-key",
        help="API key (default: the KEYAPI_API_KEY environment variable, preferred: a key "
        "given here lands in your shell history and the process list)",
    )
    group.add_argument(
        "--mock", action="store_true",
        help="start the embedded fake KeyAPI server and crawl against it (no key needed)",
    )
    group.add_argument(
        "--qps", type=_qps, default=default_qps,
        help=f"request starts per second, retries included (default {default_qps:g}); "
        "'auto' discovers the key's limit from its 429s",
    )
    group.add_argument(
        "--max-qps", type=float, metavar="QPS",
        help="with --qps auto: never faster than this (default 1000)",
    )
    group.add_argument("--max-concurrency", type=int, help="cap on requests in flight")
    group.add_argument(
        "--redis-url", metavar="URL",
        help="share --qps with every worker that uses this Redis and budget name, across "
        "processes and hosts (needs keyapi-async[redis])",
    )
    group.add_argument(
        "--redis-name", metavar="NAME",
        help="shared budget name (default: derived from the API key, one budget per key)",
    )
    group.add_argument(
        "--max-retries", type=int, default=DEFAULT_MAX_RETRIES,
        help=f"retries per request (default {DEFAULT_MAX_RETRIES})",
    )
    group.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT,
        help=f"seconds per attempt (default {DEFAULT_TIMEOUT:g})",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o", "--output", required=True, metavar="OUT",
        help="output file; {date} in it becomes the UTC day (ranking: the list's date), "
        "one partition a day; '-' writes JSONL to standard output (logs, progress and the "
        "summary go to stderr; nothing is kept to resume from); or a postgresql:// DSN "
        "(with --table)",
    )
    out.add_argument(
        "--table", metavar="NAME",
        help="with a postgresql:// OUT: the table (created if missing; needs "
        "keyapi-async[postgres])",
    )
    out.add_argument(
        "--snapshot", action="store_true",
        help="with a postgresql:// OUT: one row per video and day (the UTC day; ranking: "
        "the list's date) instead of one per video",
    )
    out.add_argument(
        "--format", choices=sorted(FORMATS),
        help="output format (default: from OUT's extension, else jsonl); parquet writes a "
        "directory of part files and needs keyapi-async[parquet]",
    )
    out.add_argument(
        "--no-resume", action="store_true",
        help="start over: overwrite OUT instead of resuming the crawl stored there",
    )
    out.add_argument(
        "--no-lineage", action="store_true",
        help="leave out the fetched_at and request_id of each record (columns absent)",
    )
    out.add_argument(
        "--progress-interval", type=float, default=5.0, metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default 5)",
    )
    out.add_argument(
        "--json", action="store_true",
        help="print the final summary as one JSON object (on stdout; on stderr with -o -)",
    )
    out.add_argument("-v", "--verbose", action="store_true", help="log retries and errors")


def _shard(text: str) -> tuple[int, int]:
    from .limiting.redis import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _iso_date(text: str) -> datetime.date:
    """``--date``: YYYY-MM-DD (argparse says which option and value when it is not)."""
    try:
        if len(text) == 10:
            return datetime.date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}")


def _region(text: str) -> str:
    """``--region``: an ISO 3166-1 alpha-2 code, upper-cased (``usa`` is refused here)."""
    try:
        return check_region(text)
    except InvalidParameterError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands videos, ranking, mock-server, demo)."""
    parser = argparse.ArgumentParser(
        prog="keyapi-async",
        description="Bulk crawls of KeyAPI's TikTok video analytics into JSONL, CSV or "
        "Parquet: resumable, at the key's full QPS, each credit paid once.",
        epilog="Run 'keyapi-async COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    videos = commands.add_parser(
        "videos", help="fetch the details of every id in a file",
        description="Fetch the details of every video id in IDS_FILE into OUT.",
        epilog=_EPILOG_VIDEOS, formatter_class=formatter,
    )
    videos.add_argument("ids_file", metavar="IDS_FILE", help="ids file, or - for stdin")
    videos.add_argument(
        "--shard", type=_shard, metavar="I/N",
        help="crawl only shard I of N (1..N) of IDS_FILE, split by a stable hash of each id; "
        "give each shard its own -o OUT, and share the budget with --redis-url",
    )
    _add_client_options(videos, DEFAULT_QPS)

    ranking = commands.add_parser(
        "ranking", help="store a ranking list",
        description="Store a ranking list (all its pages, or --max-pages) into OUT.",
        epilog=_EPILOG_RANKING, formatter_class=formatter,
    )
    dates = ranking.add_argument_group(
        "dates", "one list (--date) or a backfill (--from/--to, or --dates): one output per "
        "list, named with {date} in OUT; lists already complete are skipped"
    )
    dates.add_argument("--date", type=_iso_date, help="YYYY-MM-DD (a Monday for week, the 1st "
                       "for month)")
    dates.add_argument("--from", dest="from_date", type=_iso_date, metavar="DATE",
                       help="backfill from this day (with --to): every day's list, each "
                       "Monday's for week, each 1st's for month")
    dates.add_argument("--to", dest="to_date", type=_iso_date, metavar="DATE",
                       help="backfill to this day")
    dates.add_argument("--dates", metavar="D1,D2,...",
                       help="backfill these lists (each must fit --rank-type)")
    ranking.add_argument("--region", required=True, type=_region,
                         help="ISO 3166-1 alpha-2 country code, e.g. US or GB (any case)")
    ranking.add_argument("--rank-field", required=True, choices=["views", "sales"],
                         help="rank by views or by sales (GMV)")
    ranking.add_argument("--rank-type", required=True, choices=["day", "week", "month"],
                         help="a daily, weekly or monthly list")
    ranking.add_argument("--category", metavar="ID", help="product category id")
    ranking.add_argument("--ai", type=_bool, metavar="true|false",
                         help="only videos (not) created by AI")
    ranking.add_argument("--max-pages", type=int, metavar="N", help="stop after N pages")
    _add_client_options(ranking, DEFAULT_QPS)
    _add_credit_options(videos, ranking, commands)

    mock = commands.add_parser(
        "mock-server", help="run the fake KeyAPI server",
        description="Run a local fake KeyAPI server for tests and trials.",
        epilog=_EPILOG_MOCK, formatter_class=formatter,
    )
    from .testing.cli import add_arguments

    add_arguments(mock)

    demo = commands.add_parser(
        "demo", help="crawl a few thousand ids against the embedded fake server",
        description="The main job, end to end, offline: a bulk crawl against a local fake API.",
        epilog=_EPILOG_DEMO, formatter_class=formatter,
    )
    demo.add_argument("--ids", type=int, default=3000, help="ids to crawl (default 3000)")
    demo.add_argument("--qps", type=float, default=50.0,
                      help="QPS the fake server enforces and the client keeps (default 50)")
    demo.add_argument("--out-dir", help="where to write demo.jsonl (default: a temp dir)")
    demo.add_argument("--format", choices=sorted(FORMATS), default="jsonl")
    demo.add_argument("--mock", action="store_true",
                      help="use the embedded fake server even when a key is configured")
    demo.add_argument("--base-url", help="API root for the live demo (default: "
                      "KEYAPI_BASE_URL or production)")
    return parser


def _sink(args: argparse.Namespace) -> Sink:
    ranking = args.command == "ranking"
    return open_output(
        args.output, format=args.format, table=args.table, snapshot=args.snapshot,
        day=args.date if ranking else None,
        record_type=RankedVideo if ranking else VideoDetail, lineage=not args.no_lineage,
    )


class _StdoutSink:
    """``-o -``: JSONL records on standard output, one write and flush a batch.

    No state, lock or missing-ids file: a stream cannot be resumed. A closed pipe
    (``| head``) is an OSError, so the crawl stops as it does on a full disk."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._out = sys.stdout.buffer

    async def write(self, records: Sequence[Any]) -> None:
        if records:
            self._out.write(self._encoder.encode_lines(records))
            self._out.flush()

    async def close(self) -> None:
        self._out.flush()


def _to_stdout(args: argparse.Namespace) -> bool:
    return getattr(args, "output", None) == "-"


def _summary_stream(args: argparse.Namespace) -> TextIO:
    """Where the summary goes: stdout, unless stdout carries the records."""
    return sys.stderr if _to_stdout(args) else sys.stdout


def _file_sink(args: argparse.Namespace, output: Path) -> FileSink:
    name = args.format
    if name is None:
        suffix = output.suffix.lower()
        name = {".csv": "csv", ".parquet": "parquet"}.get(suffix, "jsonl")
    day = getattr(args, "date", None) if args.command == "ranking" else None
    sink: FileSink = FORMATS[name](output, date=day)
    return sink


def _error_code(exc: KeyAPIError) -> int:
    return EXIT_OUTPUT if isinstance(exc, OutputWriteError) else EXIT_ABORTED


def _exit_code(report: CrawlReport) -> int:
    if report.ok:
        return EXIT_OK
    if report.aborted == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED


@contextlib.asynccontextmanager
async def _api(args: argparse.Namespace, **server_options: Any) -> AsyncIterator[KeyAPIClient]:
    """A client for the real API, or for an embedded fake server with ``--mock``."""
    options: dict[str, Any] = {
        "qps": args.qps, "max_qps": args.max_qps, "max_concurrency": args.max_concurrency,
        "max_retries": args.max_retries, "timeout": args.timeout,
        "proxy": getattr(args, "proxy", None), "max_credits": getattr(args, "max_credits", None),
    }
    mock = getattr(args, "mock", False)
    async with contextlib.AsyncExitStack() as stack:
        if getattr(args, "redis_url", None):
            from .limiting.redis import RedisRateLimiter, budget_name

            key = "mock" if mock else args.api_key or os.environ.get("KEYAPI_API_KEY") or ""
            options["rate_limiter"] = await stack.enter_async_context(RedisRateLimiter(
                args.redis_url, name=args.redis_name or budget_name(key), qps=args.qps,
                max_qps=args.max_qps))
        if not mock:
            async with KeyAPIClient(args.api_key, base_url=args.base_url, **options) as client:
                yield client
            return
        from .testing import DEFAULT_API_KEY, FakeKeyAPI

        # With --qps auto the embedded server enforces a limit for the client to find.
        server_options.setdefault("qps", 20.0 if args.qps == "auto" else args.qps)
        server_options.setdefault("latency", 0.05)
        server_options.setdefault("jitter", 0.03)
        async with FakeKeyAPI(**server_options) as server:
            print(f"mock: fake KeyAPI server at {server.url}", file=sys.stderr)
            async with KeyAPIClient(DEFAULT_API_KEY, base_url=server.url, **options) as client:
                yield client


async def _with_signals(run: Callable[[asyncio.Event], Awaitable[_R]]) -> _R:
    """Run a crawl; the first SIGINT/SIGTERM stops it cleanly, a second one at once.

    Stopped at once, the crawl is cancelled: its partial report (``aborted="interrupted"``,
    requests cancelled on the wire in ``in_flight``) is returned all the same (for a
    backfill: the report of the list being crawled)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    partial: list[CrawlReport] = []  # a backfill's too: the list being crawled

    async def guarded() -> _R:
        try:
            return await run(stop)
        except asyncio.CancelledError as exc:
            report = getattr(exc, "report", None)  # see crawl_video_details
            if report is not None:
                partial.append(report)
            raise

    def on_signal() -> None:
        if not stop.is_set():
            print("\nstopping: finishing requests in flight (Ctrl-C again to stop now)",
                  file=sys.stderr, flush=True)
            stop.set()
        else:
            print("\nstopping now: requests in flight are cancelled (the server may still "
                  "charge them)", file=sys.stderr, flush=True)
            task.cancel()

    task = asyncio.ensure_future(guarded())
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal)
            installed.append(signum)
    try:
        return await task
    except asyncio.CancelledError:
        if partial and task.cancelled():  # our cancel, not one of the caller's
            return cast(_R, partial[0])
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _finish(
    report: CrawlReport, progress: Any, ranking: bool, args: argparse.Namespace,
    code: int | None = None, error: str | None = None,
) -> int:
    progress.finish(report)
    code = _exit_code(report) if code is None else code
    stream = _summary_stream(args)
    if getattr(args, "json", False):
        stream.write(_json_summary(report, code, error) + "\n")
    else:
        stream.write(summary_table(report, ranking=ranking))
    stream.flush()
    return code


def _json_summary(report: CrawlReport | None, code: int, error: str | None = None) -> str:
    """``--json``: the report as one JSON object, with the exit code and the error."""
    data: dict[str, Any] = {} if report is None else report.to_dict()
    if report is not None:
        data["failed_ids"] = dict(list(report.failed.items())[:_JSON_FAILED_IDS])
    data.update(ok=code == EXIT_OK, exit_code=code, error=error)
    return json.dumps(data, ensure_ascii=False)


#: ``--json`` lists this many failed ids with their reasons (``failed`` has the count).
_JSON_FAILED_IDS = 1000


def _refuse(args: argparse.Namespace, message: str, code: int = 2) -> int:
    """An error before (or instead of) a crawl: on stderr, and as JSON with ``--json``."""
    print(f"error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        stream = _summary_stream(args)
        stream.write(_json_summary(None, code, message) + "\n")
        stream.flush()
    return code


async def _videos(
    args: argparse.Namespace, sink: Sink, ids: Iterable[str], total: int
) -> int:
    progress = make_progress(total, interval=args.progress_interval)
    try:
        async with _api(args) as client:
            report = await _with_signals(
                lambda stop: crawl_video_details(
                    client, ids, sink, resume=not args.no_resume, on_progress=progress,
                    stop=stop, stop_grace=min(5.0, args.timeout),
                    lineage=not args.no_lineage,
                )
            )
    except KeyAPIError as exc:
        return _failed(args, exc, progress, ranking=False, code=_error_code(exc))
    return _finish(report, progress, ranking=False, args=args)


def _failed(
    args: argparse.Namespace, exc: KeyAPIError, progress: Any, ranking: bool, code: int
) -> int:
    """A crawl that raised: the partial report's summary, then the error."""
    partial = getattr(exc, "report", None)
    if partial is None:
        return _refuse(args, str(exc), code)
    _finish(partial, progress, ranking=ranking, args=args, code=code, error=str(exc))
    print(f"error: {exc}", file=sys.stderr)
    return code


async def _ranking(args: argparse.Namespace, sink: Sink) -> int:
    total = None if args.max_pages is None else args.max_pages * 10
    progress = make_progress(total, interval=args.progress_interval, unit="records")
    try:
        async with _api(args) as client:
            report = await _with_signals(
                lambda stop: crawl_video_ranking(
                    client, sink, date=args.date, region=args.region,
                    video_rank_field=VideoRankField[args.rank_field.upper()],
                    rank_type=RankType[args.rank_type.upper()], max_pages=args.max_pages,
                    product_category_id=args.category, created_by_ai=args.ai,
                    resume=not args.no_resume, on_progress=progress, stop=stop,
                    stop_grace=min(5.0, args.timeout), lineage=not args.no_lineage,
                )
            )
    except KeyAPIError as exc:
        partial = getattr(exc, "report", None)
        code = _error_code(exc) if exc.fatal or partial is None else EXIT_FAILED
        return _failed(args, exc, progress, ranking=True, code=code)
    return _finish(report, progress, ranking=True, args=args)


_R = TypeVar("_R")


def _backfilling(args: argparse.Namespace) -> bool:
    """Whether a ranking command is a backfill; InvalidParameterError for a bad mix."""
    ranged = args.from_date is not None or args.to_date is not None
    given = [args.date is not None, ranged, args.dates is not None]
    if sum(given) != 1:
        raise InvalidParameterError(
            "give one of --date, --from and --to, or --dates"
        )
    if ranged and (args.from_date is None or args.to_date is None):
        raise InvalidParameterError("--from and --to go together")
    return not given[0]


async def _backfill(args: argparse.Namespace) -> int:
    if _to_stdout(args):
        return _refuse(args, "a backfill writes one output per list: name -o with {date}")

    def on_list(day: datetime.date, report: CrawlReport) -> None:
        if report.pages == 0 and report.requests == 0 and report.aborted is None:
            line = f"{day}  already done ({report.skipped_resumed:,} records)"
        else:
            state = "complete" if report.complete else (report.aborted or "partial")
            line = f"{day}  {report.fetched:,} records, {report.pages} pages, {state}"
        print(line, file=_summary_stream(args), flush=True)

    dates = None if args.dates is None else [d.strip() for d in args.dates.split(",")]
    failure: KeyAPIError | None = None
    try:
        async with _api(args) as client:
            result: RangeReport | CrawlReport = await _with_signals(
                lambda stop: crawl_ranking_range(
                    client, args.output, dates=dates, start=args.from_date,
                    end=args.to_date, region=args.region,
                    video_rank_field=VideoRankField[args.rank_field.upper()],
                    rank_type=RankType[args.rank_type.upper()], max_pages=args.max_pages,
                    product_category_id=args.category, created_by_ai=args.ai,
                    format=args.format, table=args.table, resume=not args.no_resume,
                    lineage=not args.no_lineage, on_list=on_list, stop=stop,
                    stop_grace=min(5.0, args.timeout),
                )
            )
    except KeyAPIError as exc:
        partial = getattr(exc, "report", None)
        if not isinstance(partial, RangeReport):
            raise  # refused before any request
        result, failure = partial, exc
    # Stopped at once (a second Ctrl-C): the report of the list being crawled.
    total = result.total if isinstance(result, RangeReport) else result
    code = _exit_code(total) if failure is None else _error_code(failure)
    error = None if failure is None else str(failure)
    stream = _summary_stream(args)
    if getattr(args, "json", False):
        data = json.loads(_json_summary(total, code, error))
        if isinstance(result, RangeReport):
            data["lists"] = result.to_dict()["lists"]
        stream.write(json.dumps(data, ensure_ascii=False) + "\n")
    else:
        stream.write(summary_table(total, ranking=True))
    stream.flush()
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
    return code


#: The live demo's size: ranking pages, and so also detail requests (10 ids a page).
DEMO_LIVE_PAGES = 3


class _RememberIds:
    """A sink that passes records on and remembers their video ids."""

    def __init__(self, sink: FileSink) -> None:
        self.sink = sink
        self.ids: list[str] = []

    async def write(self, records: Sequence[RankedVideo]) -> None:
        self.ids.extend(r.video_id for r in records if r.video_id)
        await self.sink.write(records)

    async def close(self) -> None:
        await self.sink.close()


async def _demo_live(args: argparse.Namespace, out_dir: Path) -> int:
    """The demo against the real API: a small ranking crawl, then its videos' details."""
    today = datetime.datetime.now(datetime.timezone.utc).date()
    monday = today - datetime.timedelta(days=today.weekday() + 7)  # last complete week
    print(f"demo: KEYAPI_API_KEY is set, so this runs against the real API and spends at most "
          f"{2 * DEMO_LIVE_PAGES} credits (use --mock to stay offline)", file=sys.stderr)
    ranking = _RememberIds(FORMATS[args.format](out_dir / f"ranking.{args.format}"))
    async with KeyAPIClient(base_url=args.base_url, qps=min(args.qps, DEFAULT_QPS)) as client:
        listed = await crawl_video_ranking(
            client, ranking, date=monday, region="US", video_rank_field=VideoRankField.VIEWS,
            rank_type=RankType.WEEK, max_pages=DEMO_LIVE_PAGES, resume=False,
        )
        sys.stdout.write(summary_table(listed, ranking=True))
        progress = make_progress(len(ranking.ids), interval=2.0)
        report = await _with_signals(
            lambda stop: crawl_video_details(
                client, ranking.ids, FORMATS[args.format](out_dir / f"demo.{args.format}"),
                resume=False, on_progress=progress, stop=stop,
            )
        )
    return _finish(report, progress, ranking=False, args=args)


async def _demo(args: argparse.Namespace) -> int:
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        return await _demo_in(args, Path(args.out_dir))
    # No --out-dir: a temp dir, removed at the end (say so, and how to keep the output).
    with tempfile.TemporaryDirectory(prefix="keyapi-demo-") as temp:
        code = await _demo_in(args, Path(temp))
    print(f"demo: removed the temp dir {temp} (use --out-dir DIR to keep the output)",
          file=sys.stderr)
    return code


async def _demo_in(args: argparse.Namespace, out_dir: Path) -> int:
    from .testing import DEFAULT_API_KEY, FakeKeyAPI, Faults

    if not args.mock and os.environ.get("KEYAPI_API_KEY"):
        return await _demo_live(args, out_dir)
    output = out_dir / f"demo.{args.format}"
    sink = FORMATS[args.format](output)
    faults = Faults(http_5xx=0.03, reset=0.01, body_429=0.01, truncated=0.01)
    async with FakeKeyAPI(qps=args.qps, latency=0.08, jitter=0.04, faults=faults) as server:
        ids = server.make_ids(args.ids)
        print(
            f"demo: crawling {len(ids):,} ids from a fake KeyAPI at {server.url} "
            f"({args.qps:g} qps enforced, ~80 ms latency, ~6% injected faults) into {output}",
            file=sys.stderr,
        )
        progress = make_progress(len(ids), interval=2.0)
        async with KeyAPIClient(DEFAULT_API_KEY, base_url=server.url, qps=args.qps) as client:
            report = await _with_signals(
                lambda stop: crawl_video_details(
                    client, ids, sink, resume=False, on_progress=progress, stop=stop
                )
            )
        stats = server.stats()
    code = _finish(report, progress, ranking=False, args=args)
    print(
        f"server saw {stats.requests:,} requests, charged {stats.credits_spent:,} credits, "
        f"injected {sum(stats.faults_injected.values()):,} faults; busiest second: "
        f"{stats.busiest_window} requests (limit {args.qps:g})"
    )
    print(_charged_note(report.credits_spent, stats.credits_spent))
    return code


def _charged_note(spent: int, charged: int) -> str:
    """Why the server's credit count differs from the crawl's, in words."""
    extra = charged - spent
    if extra == 0:
        return f"credits: the server charged exactly the {spent:,} answers the crawl used"
    if extra > 0:
        return (
            f"credits: the server charged {extra:,} more than the {spent:,} answers the crawl "
            "used:\n  answers charged but cut short on the way (an injected fault) or "
            "cancelled in flight\n  never reach the client, which asks again"
        )
    return (
        f"credits: the server charged {-extra:,} fewer than the crawl counted "
        f"({charged:,} against {spent:,})"
    )


_EPILOG_ESTIMATE = """\
Counts what 'keyapi-async videos IDS_FILE' would cost, without sending anything (no key
needed): unique ids, ids already done in OUT (a resume skips them), requests, credits
and the wall time of the request starts at --qps. A run without failures spends exactly
the credits estimated; each retry costs one more (and counts against --max-credits).

examples:
  keyapi-async estimate ids.txt
  keyapi-async estimate ids.txt -o videos.jsonl --qps 20   # what resuming into OUT costs
  keyapi-async ranking --date 2024-05-01 --region US --rank-field views --rank-type day \\
      --max-pages 50 -o ranking.jsonl --estimate"""


def _add_credit_options(
    videos: argparse.ArgumentParser, ranking: argparse.ArgumentParser, commands: Any
) -> None:
    """--max-credits on the crawls, ``ranking --estimate`` and the ``estimate`` command."""
    for parser in (videos, ranking):
        parser.add_argument(
            "--max-credits", type=int, metavar="N",
            help="never start a request that could take this run past N credits (retries "
            "included); the ids left are not attempted, and a re-run resumes",
        )
    ranking.add_argument(
        "--estimate", action="store_true",
        help="print what the crawl would cost (pages, credits, time at --qps) and exit, "
        "sending nothing",
    )
    estimate = commands.add_parser(
        "estimate", help="count what a videos crawl would cost, sending nothing",
        description="Count the requests, credits and time a videos crawl of IDS_FILE takes.",
        epilog=_EPILOG_ESTIMATE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    estimate.add_argument("ids_file", metavar="IDS_FILE", help="ids file, or - for stdin")
    estimate.add_argument(
        "-o", "--output", metavar="OUT",
        help="the crawl's output: ids stored there (or recorded missing) are not counted",
    )
    estimate.add_argument("--format", choices=sorted(FORMATS), help="OUT's format "
                          "(default: from its extension, else jsonl)")
    estimate.add_argument("--qps", type=float, default=DEFAULT_QPS,
                          help=f"request starts per second (default {DEFAULT_QPS:g})")
    estimate.set_defaults(progress_interval=5.0)  # of the ids file's check, as for videos


def _resumed(args: argparse.Namespace, kind: str, params: dict[str, Any]) -> list[str | None]:
    """What a resumed crawl into ``args.output`` skips: stored ids, then ids recorded
    missing. Read as the crawl reads them, holding the output's lock (a crawl running into
    it is refused, and a torn last record is dropped, as the crawl would drop it)."""
    if not args.output or is_database(args.output):
        return []  # a database output: counted in full (an estimate reads no database)
    sink = _file_sink(args, Path(args.output))
    missing = MissingLog(sink.path.with_name(sink.path.name + ".missing.txt"))
    if not sink.exists() and not missing.path.exists():
        return []
    sink.acquire(resume=True)
    try:
        state = load_state(sink.state_path)
        params = {**params, "format": type(sink).__name__}
        if state is not None and (state.kind, state.params) != (kind, params):
            raise InvalidParameterError(
                f"{sink.path} holds another crawl ({state.kind} {state.params}); a crawl "
                "into it would be refused"
            )
        done: list[str | None] = list(sink.recover()) if sink.exists() else []
        if kind == "videos":
            done += missing.recover()
        return done
    finally:
        sink.release()


def _estimate(args: argparse.Namespace) -> int:
    """``keyapi-async estimate``: a videos crawl's cost, sending nothing."""
    checked = _check_ids(args)
    if isinstance(checked, int):
        return checked
    ids, _ = checked
    with ids:
        done = {i for i in _resumed(args, "videos", {}) if i is not None}
        est = estimate_details(ids, qps=args.qps, done=done)
    print(f"ids read      {est.ids:>12,}\n"
          f"unique ids    {est.unique:>12,}\n"
          f"already done  {est.done:>12,}" + (f"  (in {args.output})" if args.output else "")
          + f"\nto fetch      {est.todo:>12,}\n"
          f"requests      {est.requests:>12,}\n"
          f"credits       {est.credits:>12,}  (each retry costs one more)\n"
          f"wall time     {est.seconds:>12,.1f} s at {args.qps:g} qps (request starts only)")
    return EXIT_OK


def _estimate_ranking(args: argparse.Namespace) -> int:
    """``ranking --estimate``: at most how many pages (and credits) the crawl takes."""
    query = ranking_query(
        date=args.date, region=args.region,
        video_rank_field=VideoRankField[args.rank_field.upper()],
        rank_type=RankType[args.rank_type.upper()],
        product_category_id=args.category, created_by_ai=args.ai,
    )
    check_max_pages(args.max_pages)
    params = {k: v for k, v in query.params(1, MAX_PAGE_SIZE).items() if k != "page_num"}
    stored = len(_resumed(args, "ranking", params)) if not args.no_resume else 0
    pages_done = stored // MAX_PAGE_SIZE
    qps = DEFAULT_QPS if args.qps == "auto" else args.qps
    print(f"pages stored  {pages_done:>12,}  (in {args.output})")
    if stored % MAX_PAGE_SIZE:
        print("the list is complete in OUT: nothing to fetch")
        return EXIT_OK
    if args.max_pages is None:
        print("pages to go   unknown: the list ends at its first short page; pass "
              "--max-pages N for a bound (1 request, 1 credit a page)")
        return EXIT_OK
    est = estimate_ranking(args.max_pages, qps=qps, pages_done=pages_done)
    when = "auto: at least" if args.qps == "auto" else "at"
    print(f"requests      {est.requests:>12,}  (at most: a shorter list costs less)\n"
          f"credits       {est.credits:>12,}\n"
          f"wall time     {est.seconds:>12,.1f} s {when} {qps:g} qps (request starts only)")
    return EXIT_OK


def _mock_server(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .testing.cli import run

    return run(args, parser)


def _check_ids(args: argparse.Namespace) -> tuple[IdsFile, int] | int:
    try:
        ids = IdsFile(args.ids_file)
    except InvalidParameterError as exc:
        return _refuse(args, exc.message)
    scan = ScanProgress(ids.name, interval=args.progress_interval)
    try:
        check = check_ids_file(ids, on_progress=scan)
    except (InvalidParameterError, UnicodeDecodeError, OSError) as exc:
        ids.close()
        message = getattr(exc, "message", None) or f"{ids.name}: {exc}"
        return _refuse(args, message)
    finally:
        scan.finish()
    if not check.ok:
        ids.close()
        sys.stderr.write(format_problems(check, ids.name))
        return _refuse(args, f"{ids.name} holds invalid ids (listed above)")
    return ids, check.unique


def _videos_command(args: argparse.Namespace, sink: Sink) -> int:
    checked = _check_ids(args)
    if isinstance(checked, int):
        return checked
    ids, total = checked
    if total == 0:
        ids.close()
        return _refuse(args, f"{ids.name} holds no video ids (blank lines and '#' comments "
                       "are skipped): nothing to crawl")
    with ids:
        if args.shard is None:
            return asyncio.run(_videos(args, sink, ids, total))
        from .limiting.redis import shard_filter

        # One more pass over the ids for the shard's size.
        total = sum(1 for _ in shard_filter(ids, *args.shard))
        return asyncio.run(_videos(args, sink, shard_filter(ids, *args.shard), total))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "mock-server":
        return _mock_server(args, parser)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # The library both logs and warns about a plain-http base URL (for programs that show
    # only one of the two); the log line above already shows it here.
    warnings.filterwarnings("ignore", message="base_url .* is plain http", category=UserWarning)
    try:
        if args.command == "demo":
            return asyncio.run(_demo(args))
        if args.command == "ranking" and not args.estimate and _backfilling(args):
            return asyncio.run(_backfill(args))
        if args.command == "estimate":
            return _estimate(args)
        if args.command == "ranking" and args.estimate:
            return _estimate_ranking(args)
        if not args.mock and not (args.api_key or os.environ.get("KEYAPI_API_KEY")):
            return _refuse(args, "no API key: set the KEYAPI_API_KEY environment variable "
                           "(or use --mock to try against a local fake server)")
        if _to_stdout(args):
            if args.format not in (None, "jsonl"):
                return _refuse(args, f"-o - writes JSONL; --format {args.format} needs a file")
            stream = _StdoutSink()
            if args.command == "ranking":
                return asyncio.run(_ranking(args, stream))
            return _videos_command(args, stream)
        # The output is checked and locked first: a bad or busy -o is refused at once,
        # not after a long check of the ids file.
        sink = _sink(args)
        if isinstance(sink, FileSink):
            sink.acquire(resume=not args.no_resume)
        try:
            if args.command == "ranking":
                return asyncio.run(_ranking(args, sink))
            return _videos_command(args, sink)
        finally:
            if isinstance(sink, FileSink):
                sink.release()
    except (MissingExtraError, ValueError) as exc:
        return _refuse(args, str(exc))
    except KeyAPIError as exc:  # configuration or validation, before any request
        return _refuse(args, str(exc))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        output = getattr(args, "output", None)
        if not isinstance(output, str) or not is_database(output):
            raise
        # A database that cannot be reached or refuses us: one line, never the password.
        print(f"error: database output {describe_output(output)}: {type(exc).__name__}: "
              f"{describe_output(str(exc))}", file=sys.stderr)
        return EXIT_ABORTED


if __name__ == "__main__":
    sys.exit(main())
