"""The error hierarchy: every failure the SDK raises is a :class:`KeyAPIError`.

Errors carry what the server told us (HTTP ``status``, envelope ``code``, ``message``,
``request_id``) and a hint saying what to do. They never carry the API key: messages are
built from the response, never from the request headers, and the transport removes the key
from everything a server sends. Every message and request id passes through
:func:`~keyapi_async.pipeline.redaction.clean_text`: no control character, a bounded length.
"""

from __future__ import annotations

from .redaction import clean_text

__all__ = [
    "APIConnectionError",
    "APIUnreachableError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "CreditBudgetExceededError",
    "DecodeError",
    "EndpointNotFoundError",
    "InvalidParameterError",
    "KeyAPIError",
    "MalformedAnswerError",
    "OutputError",
    "OutputLockedError",
    "OutputWriteError",
    "PermissionDeniedError",
    "ProxyAuthenticationError",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimiterUnavailableError",
    "RedirectError",
    "ResponseTooLargeError",
    "ServerError",
    "error_for_code",
    "error_for_status",
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
        # Server text: one line, bounded, whatever the server sent.
        self.message = clean_text(message)
        self.status = status
        self.code = code
        self.request_id = None if request_id is None else clean_text(request_id, 128)
        super().__init__(self.message)

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

    Without Retry-After it is a congestion signal: the client slows down and tries again,
    and raises this (``fatal``) only after ``rate_limit_patience`` seconds without any
    success. With Retry-After it is retried after exactly that wait, and raised when
    retries run out, or at once when the wait (``retry_after``, seconds) is longer than
    the client will wait.
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


class MalformedAnswerError(DecodeError):
    """A complete answer with code 0 whose ``data`` is not a list of records. Not retried.

    The answer was paid for and the same one would come back, so retrying only spends
    credits. (Single records that cannot be decoded do not raise: they are reported per id,
    see :attr:`DetailBatch.failed`.)
    """

    retryable = False
    hint = "the API answered in a shape this SDK does not know; report the request id"


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
    elif code == 403:
        cls = PermissionDeniedError
    elif code >= 500:
        cls = ServerError
    else:
        cls = KeyAPIError
    return cls(message, status=status, code=code, request_id=request_id)


class CreditBudgetExceededError(KeyAPIError):
    """The client's credit budget (``max_credits``) is spent: nothing more will be sent.

    Fatal: the call stops starting requests, and no request ever started that could have
    taken the total past the budget (retries included). ``max_credits`` is the budget,
    ``spent`` the credits it counts as used: charged ones, plus those whose answer was lost
    or damaged and may have been charged. A crawl counts the ids left as not attempted.
    """

    fatal = True
    hint = "raise max_credits= (the budget is per client), or resume the crawl with a new budget"

    def __init__(
        self,
        message: str,
        *,
        max_credits: int | None = None,
        spent: int | None = None,
        status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.max_credits = max_credits
        self.spent = spent


class PermissionDeniedError(KeyAPIError):
    """HTTP/code 403: the key may not use this endpoint, or its plan's quota is used up.

    Fatal like 401 and 402: every further request with this key would be refused too.
    """

    fatal = True
    hint = (
        "the key is not allowed on this endpoint, or its plan's quota is used up: "
        "check the key's plan on the KeyAPI dashboard"
    )


class RedirectError(KeyAPIError):
    """HTTP 3xx: the API never redirects, so ``base_url`` (or a proxy) is wrong. Fatal.

    The redirect is not followed (the key must not travel to another origin, and a loop
    must not cost more than one request); ``location`` says where it pointed.
    """

    fatal = True
    hint = "the API never redirects: fix base_url (or KEYAPI_BASE_URL); nothing was followed"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.location = None if location is None else clean_text(location, 300)


class ResponseTooLargeError(KeyAPIError):
    """The answer exceeded ``max_response_bytes`` (as sent, or once decompressed).

    Reading stopped at the limit and the connection was dropped, so memory stays bounded.
    Not retried: a 10-record answer is about 10 KB, so this is a broken server or proxy.
    """

    hint = (
        "an answer is normally about 10 KB: check base_url and any proxy, or raise "
        "KeyAPIClient(max_response_bytes=...) if answers really are this large"
    )

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.limit = limit


class APIUnreachableError(APIConnectionError):
    """Attempt after attempt got no answer at all: the API cannot be reached. Fatal.

    Raised instead of going on retrying every request when a run of attempts in a row
    failed to connect (see ``KeyAPIClient``); the message names the base URL.
    """

    retryable = False
    fatal = True
    hint = (
        "check base_url, the network and any proxy (HTTPS_PROXY, proxy=), then resume; "
        "no answer came back, so no credit was spent on these attempts"
    )


class EndpointNotFoundError(KeyAPIError):
    """HTTP 404 with a body that is not a KeyAPI envelope: ``base_url`` is wrong. Fatal.

    The API answers its own paths with an envelope, even for errors; a bare 404 comes
    from another server or path, typically a base_url that ends in ``/v1``.
    """

    fatal = True
    hint = (
        "base_url should be the API root, such as https://api.keyapi.ai, without a path "
        "such as /v1; check base_url (or KEYAPI_BASE_URL) and any proxy"
    )


def error_for_status(
    status: int,
    message: str,
    *,
    request_id: str | None,
    retry_after: float | None = None,
) -> KeyAPIError:
    """Map an answer whose body is not a KeyAPI envelope to its error, by HTTP status.

    Like :func:`error_for_code`, except that a bare 404 means the wrong server or path.
    """
    if status == 404:
        return EndpointNotFoundError(message, status=status, code=status, request_id=request_id)
    return error_for_code(
        status, message, status=status, request_id=request_id, retry_after=retry_after
    )
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


class ProxyAuthenticationError(KeyAPIError):
    """HTTP 407 from a proxy: it wants credentials, or refused the ones sent. Fatal.

    Raised for a 407 to the CONNECT of an https tunnel and for a plain-http 407 alike:
    every further request through that proxy would be refused too, so nothing is retried.
    The request never reached the API, so no credit was spent. ``proxy`` is the proxy's
    URL without credentials (None when no proxy was configured and one on the way
    answered); the password is never in the message.
    """

    fatal = True
    hint = (
        "check the proxy URL's credentials or HTTPS_PROXY (HTTP_PROXY for http URLs); "
        "the request never reached the API, so no credit was spent"
    )

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        proxy: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.proxy = proxy
