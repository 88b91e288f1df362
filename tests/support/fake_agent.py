"""A scripted agent speaking docs/api/agent-protocol.md, for master tests (no processes)."""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp
import orjson

from mesos_es.recordio import Decoder


class RegisterRefused(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(f"REGISTER answered {status}: {text}")
        self.status = status


class FakeAgent:
    def __init__(self, master: str, resources: list[dict], hostname: str = "agent.test",
                 registration_key: str | None = None):
        self.master = master
        self.resources = resources
        self.hostname = hostname
        self.agent_id: str | None = None
        self.registration_key = registration_key  # sent while it has no id (None: not sent)
        self.stream_id: str | None = None
        self.events: asyncio.Queue = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task | None = None

    async def register(self, tasks: list[dict] | None = None, tasks_digest: str | None = None) -> str:
        """REGISTER (again, once it has an id) with `tasks`, or with only their digest."""
        self._session = self._session or aiohttp.ClientSession()
        body = {"type": "REGISTER", "register": {"protocol": 1, "agent_info": {
            "hostname": self.hostname, "port": 5051, "resources": self.resources}}}
        if tasks_digest is None:
            body["register"]["tasks"] = tasks or []
        else:
            body["register"]["tasks_digest"] = tasks_digest
        if self.agent_id:
            body["register"]["agent_id"] = {"value": self.agent_id}
        elif self.registration_key:
            body["register"]["registration_key"] = self.registration_key
        async with asyncio.timeout(10):
            while True:  # a master that has just been elected answers 503 until it leads
                response = await self._session.post(f"http://{self.master}/api/v1/agent", data=orjson.dumps(body),
                                                    headers={"Content-Type": "application/json"})
                if response.status != 503:
                    break
                response.release()
                await asyncio.sleep(0.05)
        if response.status != 200:
            raise RegisterRefused(response.status, await response.text())
        self.stream_id = response.headers["Mesos-Stream-Id"]
        self._reader = asyncio.get_running_loop().create_task(self._read(response))
        registered = await self.next("REGISTERED")
        self.agent_id = registered["registered"]["agent_id"]["value"]
        return self.agent_id

    async def _read(self, response) -> None:
        decoder = Decoder()
        try:
            async for chunk in response.content.iter_any():
                for record in decoder.feed(chunk):
                    event = orjson.loads(record)
                    if event["type"] == "PING":
                        asyncio.get_running_loop().create_task(self.call("PONG"))
                        continue
                    await self.events.put(event)
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            response.release()

    async def next(self, kind: str, timeout: float = 10) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event["type"] == kind:
                    return event

    async def call(self, kind: str, **body) -> int:
        call = {"type": kind, "agent_id": {"value": self.agent_id}, **body}
        async with self._session.post(f"http://{self.master}/api/v1/agent", data=orjson.dumps(call),
                                      headers={"Content-Type": "application/json",
                                               "Mesos-Stream-Id": self.stream_id}) as response:
            return response.status

    async def update(self, framework_id: str, task_id: str, state: str, uuid: bytes | None = None, **extra) -> bytes:
        uuid = uuid or os.urandom(16)
        status = {"task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
                  "uuid": base64.b64encode(uuid).decode(), "timestamp": 1.0, **extra}
        code = await self.call("UPDATE", update={"framework_id": {"value": framework_id}, "status": status})
        assert code == 202, code
        return uuid

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session:
            await self._session.close()
