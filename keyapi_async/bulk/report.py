"""What a crawl did: :class:`CrawlReport`, and how an error reads in it.

Accounting (details): every unique id of the input ends in exactly one of
``skipped_resumed`` (done by an earlier run), ``fetched``, ``missing`` (unknown to the
API), ``failed`` (id -> reason) or ``not_attempted``, so
``requested == skipped_resumed + fetched + missing + len(failed) + not_attempted``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..pipeline.errors import KeyAPIError

__all__ = ["CrawlReport", "ProgressCallback", "ended_by", "reason"]


@dataclass
class CrawlReport:
    """What a crawl did. Live during the crawl (``on_progress`` gets it), final after.

    ``credits_spent`` counts the successful answers the client saw. An answer the server
    charged but that arrived damaged (truncated, say) and was retried looks like a failure
    from the client's side, so the server's own count can be higher.
    ``requests``, ``retries`` and ``rate_limited`` are the client's counters over the crawl
    (they include any other call made concurrently on the same client).
    A crawl stopped by cancellation (a second Ctrl-C) raises the CancelledError with the
    partial report as ``exc.report``, ``aborted="interrupted"``.
    """

    #: unique ids in the input (details) or records stored (ranking)
    requested: int = 0
    fetched: int = 0
    missing: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: int = 0
    skipped_resumed: int = 0
    requests: int = 0
    credits_spent: int = 0
    retries: int = 0
    rate_limited: int = 0
    elapsed: float = 0.0
    #: ranking crawls: pages stored by this run, and whether the list is complete
    pages: int = 0
    complete: bool = False
    #: why the crawl ended early: "interrupted", or the error that aborted it
    aborted: str | None = None
    #: the output path (built-in sinks)
    output: str | None = None
    #: requests cancelled on the wire when the crawl was stopped: the server may have
    #: answered and charged them (their ids are counted not attempted, a resume asks again)
    in_flight: int = 0
    #: "videos" or "ranking": which fields of :meth:`to_dict` apply
    kind: str = "videos"

    @property
    def ok(self) -> bool:
        """True when every id was fetched or found missing (nothing failed or left over)."""
        return not self.failed and not self.not_attempted and self.aborted is None

    @property
    def accounted(self) -> int:
        """Ids with an outcome; equals ``requested`` once a details crawl has returned."""
        return (
            self.skipped_resumed + self.fetched + self.missing + len(self.failed)
            + self.not_attempted
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with ``failed`` as a count (the ids are in :attr:`failed`)."""
        data = asdict(self)
        data["failed"] = len(self.failed)
        data["ok"] = self.ok
        # `complete` is about a ranking list: named so a details crawl's summary cannot read
        # "complete: false" beside a state whose status is "complete".
        complete = data.pop("complete")
        pages = data.pop("pages")
        if self.kind == "ranking":
            data["list_complete"] = complete
            data["pages"] = pages
        return data


ProgressCallback = Callable[[CrawlReport], None]


def reason(exc: KeyAPIError) -> str:
    reason = f"{type(exc).__name__}: {exc.message}"
    if exc.status is not None:
        reason += f" (HTTP {exc.status})"
    if exc.request_id:
        reason += f" [request id {exc.request_id}]"
    return reason


def ended_by(exc: BaseException, aborted: str | None) -> tuple[str, str]:
    """The state status and ``report.aborted`` for a crawl ended by an unexpected exception:
    an error (a custom sink's own, say) aborts it; a cancellation interrupts it. Only the
    exception's type is recorded: its text is not ours to put in a state file."""
    if isinstance(exc, Exception):
        return "aborted", aborted or f"aborted by {type(exc).__name__}"
    return "interrupted", aborted or "interrupted"
