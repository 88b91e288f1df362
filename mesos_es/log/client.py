"""Clients for frameworks' named logs (`/api/v1/logs`), sync and asyncio.

    client = LogClient(["127.0.0.1:5050", "127.0.0.1:5051", "127.0.0.1:5052"])
    position = client.append("my-framework", b"state change")
    entries = client.read("my-framework", first=1)

Both clients follow redirects to the leader, move on to another master when one is down,
and retry until `retry_timeout_s`. Retrying is safe: every append carries an
`Idempotency-Key` (generated unless given), kept across its retries, so an append whose
outcome was unknown is never written twice; truncation and reads are idempotent.
A client is not thread-safe: use one per thread (or per event loop).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import orjson

RETRYABLE_STATUSES = {502, 503, 504}
MAX_BACKOFF_S = 1.0


@dataclass(frozen=True)
class Entry:
    position: int
    data: bytes


@dataclass(frozen=True)
class LogInfo:
    name: str
    beginning: int
    ending: int
    applied_position: int | None = None
    leader: str | None = None


class LogClientError(Exception):
    """The master refused the request (4xx), with its explanation."""

    def __init__(self, status: int, message: str, body: dict | None = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body or {}


class LogUnavailable(LogClientError):
    """No master answered usefully before the retry timeout."""


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


class _Route:
    """Where the next attempt of a request goes, and how long to wait first (sans I/O)."""

    def __init__(self, masters: list[str], preferred: str | None, retry_timeout_s: float):
        self.masters = masters
        self.address = preferred or masters[0]
        self.deadline = time.monotonic() + retry_timeout_s
        self.backoff = 0.05
        self.last_problem = "no attempt made"

    def _rotate(self) -> None:
        i = self.masters.index(self.address) if self.address in self.masters else -1
        self.address = self.masters[(i + 1) % len(self.masters)]

    def _wait(self, problem: str, retry_after: float | None = None) -> float:
        self.last_problem = problem
        if time.monotonic() >= self.deadline:
            raise LogUnavailable(503, f"gave up retrying: {problem}")
        delay = min(retry_after if retry_after is not None else self.backoff, MAX_BACKOFF_S)
        self.backoff = min(self.backoff * 2, MAX_BACKOFF_S)
        return max(0.0, min(delay, self.deadline - time.monotonic()))

    def connection_failed(self, error: Exception) -> float:
        problem = f"{self.address}: {type(error).__name__}: {error}"
        self._rotate()
        return self._wait(problem)

    def answered(self, status: int, headers, body: bytes) -> tuple[str, object]:
        """("done", parsed body) or ("retry", delay in seconds); raises LogClientError."""
        parsed = _parse_json(body)
        if 200 <= status < 300:
            return "done", parsed
        if status in (301, 302, 307, 308):
            location = headers.get("Location", "")
            self.address = urlsplit(location if "//" in location else f"//{location}").netloc or self.address
            return "retry", self._wait(f"redirected to {self.address}", retry_after=0.0)
        if status in RETRYABLE_STATUSES:
            leader = parsed.get("leader") if isinstance(parsed, dict) else None
            if leader:
                self.address = leader
            else:
                self._rotate()
            retry_after = headers.get("Retry-After")
            delay = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            return "retry", self._wait(f"{status}: {_message(parsed, body)}", retry_after=delay)
        raise LogClientError(status, _message(parsed, body), parsed if isinstance(parsed, dict) else None)


def _parse_json(body: bytes):
    try:
        return orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}


def _message(parsed, body: bytes) -> str:
    if isinstance(parsed, dict) and "error" in parsed:
        return str(parsed["error"])
    return body[:200].decode(errors="replace")


def _log_path(name: str, suffix: str = "") -> str:
    return f"/api/v1/logs/{quote(name, safe='')}{suffix}"


def _append_request(name: str, data: bytes, key: str | None) -> _Request:
    headers = (("Idempotency-Key", key or uuid.uuid4().hex), ("Content-Type", "application/octet-stream"))
    return _Request("POST", _log_path(name, "/entries"), bytes(data), headers)


def _read_request(name: str, first: int | None, last: int | None, consistency: str) -> _Request:
    query = {k: str(v) for k, v in (("from", first), ("to", last)) if v is not None}
    if consistency != "eventual":
        query["consistency"] = consistency
    return _Request("GET", _log_path(name, "/entries") + (f"?{urlencode(query)}" if query else ""))


def _truncate_request(name: str, to: int) -> _Request:
    return _Request("POST", _log_path(name, "/truncate"), orjson.dumps({"to": to}),
                    (("Content-Type", "application/json"),))


_DONE = -1


def _page(body: dict, last: int | None) -> tuple[list[Entry], int]:
    """One answer's entries, and where the next page starts (_DONE when there is none)."""
    page = [Entry(e["position"], base64.b64decode(e["data"])) for e in body["entries"]]
    end = body["ending"] if last is None else min(last, body["ending"])
    if not page or page[-1].position >= end:
        return page, _DONE
    return page, page[-1].position + 1


def _info(name: str, body: dict) -> LogInfo:
    return LogInfo(name, body["beginning"], body["ending"], body.get("applied_position"), body.get("leader"))


def _normalise(masters: list[str] | str) -> list[str]:
    items = masters.split(",") if isinstance(masters, str) else list(masters)
    addresses = [urlsplit(m if "//" in m else f"//{m}").netloc for m in (i.strip() for i in items) if m]
    if not addresses:
        raise ValueError("at least one master address is needed")
    return addresses


class LogClient:
    """Blocking client (standard library only)."""

    def __init__(self, masters: list[str] | str, timeout_s: float = 10.0, retry_timeout_s: float = 30.0):
        self.masters = _normalise(masters)
        self.timeout_s = timeout_s
        self.retry_timeout_s = retry_timeout_s
        self.leader: str | None = None
        self._connections: dict[str, http.client.HTTPConnection] = {}

    def append(self, name: str, data: bytes, idempotency_key: str | None = None) -> int:
        """Append an entry; returns its position once committed."""
        return self._call(_append_request(name, data, idempotency_key))["position"]

    def read(self, name: str, first: int | None = None, last: int | None = None,
             consistency: str = "eventual") -> list[Entry]:
        """Entries first..last (default: all readable), paging through large ranges."""
        entries: list[Entry] = []
        while first != _DONE:
            page, first = _page(self._call(_read_request(name, first, last, consistency)), last)
            entries += page
        return entries

    def truncate(self, name: str, to: int) -> LogInfo:
        body = self._call(_truncate_request(name, to))
        return LogInfo(name, body["beginning"], body["ending"], body.get("applied_position"))

    def info(self, name: str, consistency: str = "eventual") -> LogInfo:
        suffix = "" if consistency == "eventual" else f"?consistency={consistency}"
        return _info(name, self._call(_Request("GET", _log_path(name) + suffix)))

    def logs(self) -> list[LogInfo]:
        body = self._call(_Request("GET", "/api/v1/logs"))
        return [LogInfo(l["name"], l["beginning"], l["ending"]) for l in body["logs"]]

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def __enter__(self) -> LogClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, request: _Request) -> dict:
        route = _Route(self.masters, self.leader, self.retry_timeout_s)
        while True:
            try:
                status, headers, body = self._send(route.address, request)
            except (OSError, http.client.HTTPException) as e:
                self._drop(route.address)
                time.sleep(route.connection_failed(e))
                continue
            action, value = route.answered(status, headers, body)
            if action == "done":
                self.leader = route.address if request.method == "POST" else self.leader
                return value
            time.sleep(value)

    def _send(self, address: str, request: _Request):
        connection = self._connections.get(address)
        if connection is None:
            host, _, port = address.rpartition(":")
            connection = self._connections[address] = http.client.HTTPConnection(host, int(port), timeout=self.timeout_s)
        connection.request(request.method, request.path, body=request.body or None, headers=dict(request.headers))
        response = connection.getresponse()
        return response.status, response.headers, response.read()

    def _drop(self, address: str) -> None:
        connection = self._connections.pop(address, None)
        if connection is not None:
            connection.close()


class AsyncLogClient:
    """asyncio client (aiohttp); same behaviour as LogClient."""

    def __init__(self, masters: list[str] | str, timeout_s: float = 10.0, retry_timeout_s: float = 30.0,
                 session=None):
        import aiohttp

        self.masters = _normalise(masters)
        self.retry_timeout_s = retry_timeout_s
        self.leader: str | None = None
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def append(self, name: str, data: bytes, idempotency_key: str | None = None) -> int:
        return (await self._call(_append_request(name, data, idempotency_key)))["position"]

    async def read(self, name: str, first: int | None = None, last: int | None = None,
                   consistency: str = "eventual") -> list[Entry]:
        entries: list[Entry] = []
        while first != _DONE:
            page, first = _page(await self._call(_read_request(name, first, last, consistency)), last)
            entries += page
        return entries

    async def truncate(self, name: str, to: int) -> LogInfo:
        body = await self._call(_truncate_request(name, to))
        return LogInfo(name, body["beginning"], body["ending"], body.get("applied_position"))

    async def info(self, name: str, consistency: str = "eventual") -> LogInfo:
        suffix = "" if consistency == "eventual" else f"?consistency={consistency}"
        return _info(name, await self._call(_Request("GET", _log_path(name) + suffix)))

    async def logs(self) -> list[LogInfo]:
        body = await self._call(_Request("GET", "/api/v1/logs"))
        return [LogInfo(l["name"], l["beginning"], l["ending"]) for l in body["logs"]]

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    async def __aenter__(self) -> AsyncLogClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _call(self, request: _Request) -> dict:
        import aiohttp

        route = _Route(self.masters, self.leader, self.retry_timeout_s)
        while True:
            try:
                async with self._session.request(
                    request.method, f"http://{route.address}{request.path}", data=request.body or None,
                    headers=dict(request.headers), allow_redirects=False,
                ) as response:
                    status, headers, body = response.status, response.headers, await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                await asyncio.sleep(route.connection_failed(e))
                continue
            action, value = route.answered(status, headers, body)
            if action == "done":
                self.leader = route.address if request.method == "POST" else self.leader
                return value
            await asyncio.sleep(value)
