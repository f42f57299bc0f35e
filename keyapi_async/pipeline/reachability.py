"""When to stop trying: the API cannot be reached at all.

Retrying each request on its own rides out a blip, and is wrong when nothing can succeed
(an unreachable ``base_url``, a dead network, a proxy that refuses): 2,000 ids made 1,000
requests and 800 retries over 7 minutes before this. :class:`Reachability` counts attempts
in a row that got no HTTP answer at all (any status, even a 500 or a redirect, proves the
server is there) and says when the whole call should stop.

Guarantee: it gives up after ``attempts`` unanswered attempts in a row when no attempt of
the client was ever answered (typically the first ``attempts`` requests: a few seconds), and,
once one was, only when the run has also lasted ``patience`` seconds, the longest a single
request's own retries can wait. So an outage shorter than one request's retry schedule is
ridden out by those retries as before, and a longer one ends the call (a resumed crawl
picks up the ids). At most ``attempts`` plus the requests already in flight are made
against a server that never answers.
"""

from __future__ import annotations

__all__ = ["UNREACHABLE_AFTER", "Reachability"]

#: Unanswered attempts in a row after which the API is taken to be unreachable.
UNREACHABLE_AFTER = 10


class Reachability:
    """Counts unanswered attempts in a row; see the module docstring."""

    __slots__ = ("_answered_once", "_since", "attempts", "patience", "streak")

    def __init__(self, attempts: int = UNREACHABLE_AFTER, patience: float = 0.0) -> None:
        self.attempts = attempts
        self.patience = patience
        self.streak = 0
        self._since = 0.0
        self._answered_once = False

    def answered(self) -> None:
        """An attempt got an HTTP answer, whatever its status."""
        self.streak = 0
        self._answered_once = True

    def unanswered(self, now: float) -> bool:
        """An attempt got no answer at ``now`` (monotonic seconds); True means give up."""
        if self.streak == 0:
            self._since = now
        self.streak += 1
        if self.streak < self.attempts:
            return False
        return not self._answered_once or now - self._since >= self.patience
