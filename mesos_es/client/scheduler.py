"""Our own asyncio client of the v1 scheduler API (the pymesos driver is the other one).

    async with SchedulerClient(["127.0.0.1:5050", ...], {"user": "me", "name": "demo"}) as s:
        async for event in s.events():
            if event["type"] == "OFFERS": ...
                await s.accept([offer["id"]["value"]], [launch(...)])

`events()` subscribes (following 307 redirects to the leader, retrying other masters on
errors), yields every event, and re-subscribes with the framework id when the stream ends,
so a master failover is invisible apart from a SUBSCRIBED event.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator

import aiohttp
import orjson

from mesos_es.recordio import Decoder

PATH = "/api/v1/scheduler"


class SchedulerError(Exception):
    pass


class SchedulerClient:
    def __init__(self, masters: list[str], framework_info: dict, retry_s: float = 0.5):
        self.masters = list(masters)
        self.framework_info = dict(framework_info)
        self.framework_id: str | None = None
        self.stream_id: str | None = None
        self.leader: str | None = None
        self.retry_s = retry_s
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def __aenter__(self) -> SchedulerClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    # -- the stream --------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[dict]:
        candidates = itertools.cycle(self.masters)
        target = next(candidates)
        while not self._closed:
            call = {"type": "SUBSCRIBE", "subscribe": {"framework_info": self.framework_info}}
            if self.framework_id:
                call["framework_id"] = {"value": self.framework_id}
                call["subscribe"]["framework_info"] = {**self.framework_info, "id": {"value": self.framework_id}}
            try:
                async with self._session.post(f"http://{target}{PATH}", data=orjson.dumps(call), allow_redirects=False,
                                              headers={"Content-Type": "application/json"}) as response:
                    if response.status == 307:
                        target = response.headers["Location"].lstrip("/").split("/", 1)[0]
                        continue
                    if response.status in (403, 400):
                        raise SchedulerError(f"SUBSCRIBE refused ({response.status}): {await response.text()}")
                    if response.status != 200:
                        raise aiohttp.ClientError(f"status {response.status}")
                    self.leader, self.stream_id = target, response.headers["Mesos-Stream-Id"]
                    decoder = Decoder()
                    async for chunk in response.content.iter_any():
                        for record in decoder.feed(chunk):
                            event = orjson.loads(record)
                            if event.get("type") == "SUBSCRIBED":
                                self.framework_id = event["subscribed"]["framework_id"]["value"]
                            yield event
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
            self.stream_id = None
            if self._closed:
                return
            await asyncio.sleep(self.retry_s)
            target = next(candidates)

    # -- calls -------------------------------------------------------------------------------
    async def call(self, call_type: str, **body) -> None:
        if not self.framework_id or not self.stream_id:
            raise SchedulerError("not subscribed")
        call = {"type": call_type, "framework_id": {"value": self.framework_id}, **body}
        async with self._session.post(
            f"http://{self.leader}{PATH}", data=orjson.dumps(call),
            headers={"Content-Type": "application/json", "Mesos-Stream-Id": self.stream_id},
        ) as response:
            if response.status != 202:
                raise SchedulerError(f"{call_type} failed ({response.status}): {await response.text()}")

    async def accept(self, offer_ids: list[str], operations: list[dict], refuse_seconds: float | None = None):
        body = {"offer_ids": [{"value": o} for o in offer_ids], "operations": operations}
        if refuse_seconds is not None:
            body["filters"] = {"refuse_seconds": refuse_seconds}
        await self.call("ACCEPT", accept=body)

    async def decline(self, offer_ids: list[str], refuse_seconds: float | None = None):
        body = {"offer_ids": [{"value": o} for o in offer_ids]}
        if refuse_seconds is not None:
            body["filters"] = {"refuse_seconds": refuse_seconds}
        await self.call("DECLINE", decline=body)

    async def acknowledge(self, status: dict) -> None:
        if "uuid" in status:
            await self.call("ACKNOWLEDGE", acknowledge={
                "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]})

    async def kill(self, task_id: str, agent_id: str | None = None) -> None:
        body = {"task_id": {"value": task_id}}
        if agent_id:
            body["agent_id"] = {"value": agent_id}
        await self.call("KILL", kill=body)

    async def revive(self, roles: list[str] | None = None):
        await self.call("REVIVE", revive={"roles": roles or []})

    async def suppress(self, roles: list[str] | None = None):
        await self.call("SUPPRESS", suppress={"roles": roles or []})

    async def reconcile(self, tasks: list[dict] | None = None):
        await self.call("RECONCILE", reconcile={"tasks": tasks or []})

    async def message(self, agent_id: str, executor_id: str, data: bytes):
        await self.call("MESSAGE", message={"agent_id": {"value": agent_id}, "executor_id": {"value": executor_id},
                                            "data": base64.b64encode(data).decode()})

    async def teardown(self):
        await self.call("TEARDOWN")


def launch(task_id: str, agent_id: str, command: str, resources: list[dict], name: str | None = None,
           **extra) -> dict:
    """A LAUNCH operation for one command task."""
    return {"type": "LAUNCH", "launch": {"task_infos": [{
        "name": name or task_id, "task_id": {"value": task_id}, "agent_id": {"value": agent_id},
        "resources": resources, "command": {"shell": True, "value": command}, **extra}]}}


def scalar(name: str, value: float, role: str = "*") -> dict:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}, "role": role}
