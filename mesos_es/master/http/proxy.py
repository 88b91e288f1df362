"""Passing a request through to the leader, so a standby answers instead of redirecting.

Used for strong reads of the operator API (`consistency=strong`) and, with
`--scheduler_api=proxy`, for the whole v1 scheduler API: calls and the SUBSCRIBE stream,
byte for byte (the RecordIO stream is relayed as the leader writes it). A framework that
reconnects to the address it last used, as the pymesos driver does, then keeps working
through a leader change: the standby's relayed stream ends when the old leader dies, and
the framework's next SUBSCRIBE reaches the new leader through the same standby.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import structlog
from aiohttp import web

from mesos_es.master.http.common import MASTER, unavailable

log = structlog.get_logger(__name__)

SESSION = web.AppKey("proxy_session", aiohttp.ClientSession)
# Set on a forwarded request: a master that does not lead either answers 503 rather than
# forwarding it again (the two disagree on who leads; one of them will soon know better).
FORWARDED_BY = "Mesos-ES-Forwarded-By"
# Not relayed: they describe one connection, not the message.
_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Content-Length", "Host"))
CONNECT_TIMEOUT_S = 5.0
# Between attempts to reach a leader that did not answer (see `forward`).
RETRY_INTERVAL_S = 0.1


def _relayed(headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}


async def forward(request: web.Request, serve=None, held_since: float | None = None) -> web.StreamResponse:
    """The leader's answer to this request. A chunked answer (a SUBSCRIBE stream) is relayed
    as it arrives, until either side closes. 503 while no leader is reachable. `serve`: the
    local handler, for when this master is elected while the request waits. `held_since`:
    when the caller started holding the request for a leader (`hold_for_leader`), so that it
    is held `--leader-hold-timeout-s` in all, not twice."""
    master = request.app[MASTER]
    if FORWARDED_BY in request.headers:
        raise unavailable("no leading master is reachable from this one yet; retry shortly", leader=master.leader())
    body = await request.read()
    headers = _relayed(request.headers)
    headers[FORWARDED_BY] = master.config.address
    answer_within = master.config.commit_timeout_s + 5
    hold_until = (held_since if held_since is not None else time.monotonic()) + master.config.leader_hold_timeout_s
    while True:
        shell = master.leader_shell
        if serve is not None and shell is not None and shell.is_leading():
            return await serve(request)
        leader = master.leader()
        if leader is not None and leader != master.config.address:
            try:
                async with asyncio.timeout(answer_within):
                    upstream = await request.app[SESSION].request(
                        request.method, f"http://{leader}{request.path_qs}", data=body, headers=headers,
                        allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S))
                if upstream.status != 307:
                    break
                upstream.release()  # it no longer leads: held like a dead leader, below
                failure = f"{leader} no longer leads"
            except TimeoutError:
                raise unavailable(f"the leader {leader} did not answer within {answer_within:.0f} s; retry shortly",
                                  leader=leader) from None
            except (aiohttp.ClientConnectionError, OSError) as e:
                # Refused, or dropped before any answer: most likely a leader that just died
                # and that this master names until the election ends (a fraction of a
                # second). Held and sent again (to its successor once known), the caller
                # sees the election as a slow answer rather than a 503, which pymesos fails
                # on. A call the dead leader had already handled arrives twice, as the
                # caller's own retry would.
                log.info("proxy_leader_unreachable", leader=leader, path=request.path, reason=type(e).__name__)
                failure = f"the leader {leader} did not answer ({type(e).__name__})"
            except aiohttp.ClientError as e:
                raise unavailable(f"the leader {leader} did not answer ({type(e).__name__}); retry shortly",
                                  leader=leader) from None
        else:
            failure = "no leading master is reachable from this one yet"
        if time.monotonic() >= hold_until:
            raise unavailable(f"{failure}; retry shortly", leader=leader)
        await asyncio.sleep(RETRY_INTERVAL_S)
    try:
        if upstream.status != 200 or upstream.headers.get("Transfer-Encoding", "").lower() != "chunked":
            try:
                async with asyncio.timeout(answer_within):
                    answer = await upstream.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise unavailable(f"the leader {leader} did not finish its answer ({type(e).__name__})",
                                  leader=leader) from None
            return web.Response(status=upstream.status, body=answer, headers=_relayed(upstream.headers))
        response = web.StreamResponse(status=upstream.status, headers=_relayed(upstream.headers))
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, ConnectionError, OSError) as e:
            log.info("proxied_stream_ended", leader=leader, path=request.path, reason=type(e).__name__)
        return response
    finally:
        upstream.release()


def add_session(app: web.Application) -> None:
    async def open_session(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await app[SESSION].close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
