"""The error hierarchy: every failure the SDK raises is a :class:`KeyAPIError`.

Errors carry what the server told us (HTTP ``status``, envelope ``code``, ``message``,
``request_id``) and a hint saying what to do. They never carry the API key: messages are
built from the response, never from the request headers.
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DecodeError",
    "InvalidParameterError",
    "KeyAPIError",
    "OutputError",
    "OutputLockedError",
    "OutputWriteError",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimiterUnavailableError",
    "ServerError",
    "error_for_code",
]


class KeyAPIError(Exception):
    """Base class of every error raised by keyapi-async.

    Attributes are ``None`` where unknown: a network error has no status, a client-side
    validation error has neither status nor request id.
    """

    #: Whether the request pipeline retries this error (with backoff, up to max_retries).
    retryable: bool = False
    #: Whether this error ends a multi-request call at once (no new request is started).
    fatal: bool = False
    #: What the caller should do about it; appended to the message.
    hint: str = ""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.code is not None and self.code != self.status:
            details.append(f"code {self.code}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        if details:
            parts.append(f"({', '.join(details)})")
        if self.hint:
            parts.append(f"- {self.hint}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"code={self.code!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor arguments do not survive the default pickling.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[KeyAPIError], message: str, state: dict[str, object]) -> KeyAPIError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ConfigurationError(KeyAPIError):
    """The client is misconfigured (for example no API key); nothing was sent."""


class InvalidParameterError(KeyAPIError, ValueError):
    """An argument failed validation before any request was sent (no credit spent)."""

    hint = "fix the argument; no request was sent and no credit spent"


class BadRequestError(KeyAPIError):
    """HTTP/code 400: the API rejected the parameters. Never retried."""

    hint = "check the parameters against the API documentation; retrying will not help"


class AuthenticationError(KeyAPIError):
    """HTTP/code 401: the API key is missing, invalid or revoked. Never retried."""

    fatal = True
    hint = "check the key in KEYAPI_API_KEY (or api_key=) on the KeyAPI dashboard"


class QuotaExceededError(KeyAPIError):
    """HTTP/code 402: the key's credits are exhausted; every further call is wasted."""

    fatal = True
    hint = "top up the account's credits; further requests cannot succeed until then"


class RateLimitError(KeyAPIError):
    """HTTP/code 429: the key's QPS limit was exceeded.

    Retried with backoff. Raised when retries run out, or at once when the server's
    ``Retry-After`` (in ``retry_after``, seconds) is longer than the client will wait.
    """

    retryable = True
    hint = "lower qps= to the key's real limit, or wait retry_after seconds"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.retry_after = retry_after


class RateLimiterUnavailableError(KeyAPIError):
    """The shared rate limiter (Redis) cannot be reached or refused the request.

    Fatal: the call stops starting requests, because going on without the shared budget
    would overspend the key. Nothing was sent for the request that hit it, so a resumed
    crawl simply retries those ids once Redis is back.
    """

    fatal = True
    hint = "check that Redis is up and redis_url is right, then resume the crawl"


class ServerError(KeyAPIError):
    """HTTP/code 5xx, including a proxy's HTML error page. Retried with backoff."""

    retryable = True
    hint = "the API had a problem; retried with backoff, try again later if it persists"


class APIConnectionError(KeyAPIError):
    """The request did not get an answer: connection failure, reset or timeout. Retried."""

    retryable = True
    hint = "check the network and base_url; raise timeout= if answers are just slow"


class DecodeError(KeyAPIError):
    """The body is not the documented JSON (truncated, wrong types). Retried.

    A truncated body is usually a transient network fault, so the pipeline retries it.
    """

    retryable = True
    hint = "the answer was not the documented JSON; retried, report the request id if it persists"


def error_for_code(
    code: int,
    message: str,
    *,
    status: int | None,
    request_id: str | None,
    retry_after: float | None = None,
) -> KeyAPIError:
    """Map an API error code (body code, or HTTP status when the body has none) to its error."""
    if code == 429:
        return RateLimitError(
            message, status=status, code=code, request_id=request_id, retry_after=retry_after
        )
    cls: type[KeyAPIError]
    if code == 400:
        cls = BadRequestError
    elif code == 401:
        cls = AuthenticationError
    elif code == 402:
        cls = QuotaExceededError
    elif code >= 500:
        cls = ServerError
    else:
        cls = KeyAPIError
    return cls(message, status=status, code=code, request_id=request_id)


class OutputError(KeyAPIError):
    """The crawl's output cannot be used: checked before the first request, so no credit
    was spent (a missing or read-only directory, a directory where a file is expected, a
    file a crawl did not write). ``path`` is the output; ``errno`` the OS error, if any.
    """

    fatal = True
    hint = "fix the output path (-o); no request was sent and no credit spent"

    def __init__(
        self, message: str, *, path: str | None = None, errno: int | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno


class OutputLockedError(OutputError):
    """Another crawl (another process, or another task of this one) is writing the same
    output; refused before any request. The lock dies with its holder, even on kill -9."""

    hint = "wait for the other crawl to finish, or give this one another output"


class OutputWriteError(OutputError):
    """Writing the output failed mid-crawl (disk full, quota, I/O error). The crawl stopped
    at once; what is stored and the state file are consistent, and the error carries the
    partial report as ``err.report``. The batch that could not be written is in
    ``report.failed`` (its credit was spent; a resume fetches it again)."""

    hint = "free space (or fix the disk) and re-run the same crawl: it resumes where it stopped"
