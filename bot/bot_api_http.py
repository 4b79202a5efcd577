"""The bot's HTTP client for the Bot API: python-telegram-bot's `BaseRequest` on aiohttp.

PTB's own `HTTPXRequest` (httpx on httpcore) cost the bot more CPU per Bot API call than anything
else it does for a text answer: every request walks httpcore's whole connection pool, asking each
kept-alive connection whether it has expired or become readable (a system call or two per
connection), and writes its headers and body in separate system calls; with a hundred answers in
flight, a hundred connections are walked for each call. aiohttp (which the bot already depends
on) keeps idle connections per host and takes one at once, and parses HTTP in C. PTB documents
`BaseRequest` as the place for another HTTP library; this is that, and nothing more: PTB still
builds every request and reads every answer.

It behaves as PTB's httpx client did where a deployment would notice: proxies from the environment
(HTTPS_PROXY, NO_PROXY and the like) are used, read once when the client starts as httpx reads
them (aiohttp's own `trust_env` looks them up, and reads ~/.netrc, in a thread for every request:
two thread hand-offs per answer), certificates are checked against certifi's bundle, redirects are
not followed. Parameters go form-encoded, as PTB's client sends them, encoded once here rather than
through aiohttp's general form builder. The errors are PTB's, as `HTTPXRequest` raises them: a timeout (of the pool, the connection or a
read) is `TimedOut`, any other failure of the connection `NetworkError`, so `bot.delivery` judges
them as before. aiohttp has no timeout for writing a request alone, so each call as a whole is
also bounded by the sum of its timeouts.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.logging_setup import REDACTED, TOKEN_SHAPE

# PTB's defaults for HTTPXRequest, kept (seconds; the pool's size as ApplicationBuilder gives it).
CONNECTION_POOL_SIZE = 256
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
POOL_TIMEOUT_S = 1.0
MEDIA_WRITE_TIMEOUT_S = 20.0
FORM_ENCODED = {"Content-Type": "application/x-www-form-urlencoded"}


class AiohttpRequest(BaseRequest):
    """PTB's Bot API requests made with one aiohttp session (see the module docstring)."""

    __slots__ = ("_pool_size", "_timeouts", "_media_write_timeout", "_session", "_proxies", "_proxy_of_host")

    def __init__(
        self,
        *,
        connection_pool_size: int = CONNECTION_POOL_SIZE,
        read_timeout: float | None = READ_TIMEOUT_S,
        write_timeout: float | None = WRITE_TIMEOUT_S,
        connect_timeout: float | None = CONNECT_TIMEOUT_S,
        pool_timeout: float | None = POOL_TIMEOUT_S,
        media_write_timeout: float | None = MEDIA_WRITE_TIMEOUT_S,
    ) -> None:
        self._pool_size = connection_pool_size
        self._timeouts = {"read": read_timeout, "write": write_timeout, "connect": connect_timeout,
                          "pool": pool_timeout}  # fmt: skip
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str] = {}  # scheme → proxy URL, from the environment at the start
        self._proxy_of_host: dict[tuple[str, str], str | None] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._timeouts["read"]

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._pool_size, ssl=ssl.create_default_context(cafile=certifi.where())
                ),
                headers={"User-Agent": self.USER_AGENT},
            )
            self._proxies = urllib.request.getproxies()
            self._proxy_of_host = {}

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        uploads = bool(request_data and request_data.contains_files)
        read = self._chosen(read_timeout, "read")
        write = self._media_write_timeout if uploads and _unset(write_timeout) else self._chosen(write_timeout, "write")
        connect, pool = self._chosen(connect_timeout, "connect"), self._chosen(pool_timeout, "pool")
        timeout = aiohttp.ClientTimeout(
            total=None, connect=_sum(pool, connect), sock_connect=connect, sock_read=read
        )
        try:
            async with asyncio.timeout(_sum(pool, connect, write, read)):
                async with self._session.request(
                    method, url, **_body(request_data), proxy=self._proxy_for(url), timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    return response.status, await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(_without_token(f"aiohttp.{type(error).__name__}: {error}", url)) from error

    def _chosen(self, given: Any, kind: str) -> float | None:
        return self._timeouts[kind] if _unset(given) else given

    def _proxy_for(self, url: str) -> str | None:
        """The environment's proxy for the URL's scheme, unless NO_PROXY names the URL's host."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return None  # aiohttp refuses the URL too, and says why
        host = (parts.scheme, parts.hostname or "")
        if host not in self._proxy_of_host:
            proxy = self._proxies.get(parts.scheme)
            bypassed = proxy is not None and urllib.request.proxy_bypass_environment(host[1], self._proxies)
            self._proxy_of_host[host] = None if bypassed else proxy  # aiohttp sends its credentials
        return self._proxy_of_host[host]


def _without_token(text: str, url: str) -> str:
    """`text` without the call's URL, whose path holds the bot token (aiohttp quotes a URL it can't use)."""
    return TOKEN_SHAPE.sub(REDACTED, text.replace(url, "<the Bot API URL>"))


def _unset(value: Any) -> bool:
    return isinstance(value, DefaultValue)


def _sum(*timeouts: float | None) -> float | None:
    """The timeouts added up; None (no limit) if any of them is None."""
    return None if any(timeout is None for timeout in timeouts) else sum(timeouts)  # type: ignore[arg-type]


def _body(request_data: RequestData | None) -> dict[str, Any]:
    """The request's body arguments: the parameters form-encoded, as PTB sends them; multipart
    when files are uploaded."""
    if request_data is None:
        return {}
    if not request_data.contains_files:
        return {"data": request_data.url_encoded_parameters().encode(), "headers": FORM_ENCODED}
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mime_type) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mime_type)
    return {"data": form}
