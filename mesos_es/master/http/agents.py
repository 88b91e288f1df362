"""The master's end of the master-agent protocol, `POST /api/v1/agent`.

See docs/api/agent-protocol.md: REGISTER opens a RecordIO stream of events to the agent;
UPDATE, MESSAGE, PONG and UNREGISTER are calls on it (header `Mesos-Stream-Id`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import structlog
from aiohttp import web

from mesos_es.core.agent_digest import tasks_digest
from mesos_es.core.convert import (
    TERMINAL_STATES,
    InvalidObject,
    agent_info_from_json,
    id_value,
    ident,
    resources_json_to_proto,
    task_status_from_json,
    task_status_to_json,
)
from mesos_es.core.outcomes import Rejected
from mesos_es.master.http.common import MASTER, hold_for_leader, http_error, propose, to_leader
from mesos_es.master.http.scheduler import (
    accepted,
    bad_request,
    base64_field,
    read_call,
    section,
)
from mesos_es.master.leader import new_id
from mesos_es.master.streams import EventStream
from mesos_es.pb import events_pb2, mesos_pb2

log = structlog.get_logger(__name__)

PATH = "/api/v1/agent"
PROTOCOL = 1


async def agent_api(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER]
    call = await read_call(request)
    leader = master.leader_shell
    await hold_for_leader(request)
    if not leader.is_leading():
        raise to_leader(request, PATH)
    try:
        if call["type"] == "REGISTER":
            return await register(request, call)
        agent_id = id_value(call, "agent_id")
        stream = leader.agents.get(agent_id)
        if stream is None or request.headers.get("Mesos-Stream-Id") != stream.stream_id:
            raise http_error(web.HTTPForbidden, "unknown or stale Mesos-Stream-Id: register again")
        leader.agent_seen[agent_id] = time.monotonic()
        handler = CALLS.get(call["type"])
        if handler is None:
            raise bad_request(f"unsupported call type {call['type']!r}")
        return await handler(request, agent_id, call)
    except InvalidObject as e:
        raise bad_request(str(e)) from None


async def register(request: web.Request, call: dict) -> web.StreamResponse:
    master = request.app[MASTER]
    leader = master.leader_shell
    agent_id, event, reports = registration(master, section(call, "register"), lambda: new_id("S0"))
    stream = EventStream(request, "agent", agent_id)
    previous = leader.agents.get(agent_id)
    leader.agents[agent_id] = stream
    if previous is not None:
        previous.close()
    try:
        proposed = await propose(request, event)
        if isinstance(proposed.result, Rejected):
            raise bad_request(proposed.result.reason)
    except BaseException:
        if leader.agents.get(agent_id) is stream:
            del leader.agents[agent_id]
        raise
    leader.agent_seen[agent_id] = time.monotonic()
    await stream.open({"type": "REGISTERED", "registered": {
        "agent_id": ident(agent_id), "ping_interval_seconds": master.config.agent_ping_timeout_s}})
    info = (event.agent_reregistered if event.HasField("agent_reregistered") else event.agent_registered).agent_info
    log.info("agent_registered", agent_id=agent_id, hostname=info.hostname,
             reregistered=event.HasField("agent_reregistered"),
             tasks_unchanged=event.agent_reregistered.tasks_unchanged)
    for framework_id, task_id in unsent_launches(master, agent_id, reports):
        leader.send_run_task(agent_id, framework_id, task_id)
    try:
        await stream.run()
    finally:
        if leader.agents.get(agent_id) is stream:
            del leader.agents[agent_id]
    return stream.response


def registration(master, body: dict, new_agent_id: Callable[[], str]) -> tuple[str, events_pb2.Event, list]:
    """What a REGISTER commits: (agent id, AgentRegistered or AgentReregistered, the tasks it
    reported). Raises the HTTP error that refuses it: 400 malformed, 409 a removed agent, 412
    a task digest that differs from this master's view (the simulator, chaos/sim, runs this too)."""
    info = agent_info_from_json(body.get("agent_info"))
    agent_id = id_value(body, "agent_id", required=False)
    cluster = master.replica.state.cluster
    retried = False  # a first REGISTER again: its REGISTERED was lost
    if not agent_id and "registration_key" in body:
        agent_id = _agent_id_for(body["registration_key"])
        retried = agent_id in cluster.agents or agent_id in cluster.removed_agents
        if not retried:
            agent_id = None
    if agent_id and agent_id in cluster.removed_agents:
        raise http_error(web.HTTPConflict, f"agent {agent_id} was removed: discard its state and register anew")
    reports = []
    for task in body.get("tasks") or []:
        state = task.get("state") if isinstance(task, dict) else None
        if state not in mesos_pb2.TaskState.keys():
            raise bad_request(f"bad task report {task!r}")
        reports.append(events_pb2.TaskReport(framework_id=id_value(task, "framework_id"),
                                             task_id=id_value(task, "task_id"),
                                             state=mesos_pb2.TaskState.Value(state)))
    if retried:
        # It runs nothing the master does not know under the id it never learnt (its launches
        # are sent again, see unsent_launches), so its tasks are left as they are; and a late
        # copy of its first REGISTER, arriving after it learnt its id and runs tasks, must not
        # report them lost. Once it is unreachable, its (empty) report is reconciled as any other.
        known = cluster.agents.get(agent_id)
        event = events_pb2.Event(agent_reregistered=events_pb2.AgentReregistered(
            agent_id=agent_id, agent_info=info, tasks_unchanged=known is not None and known.reachable))
    elif agent_id:
        unchanged = "tasks" not in body and isinstance(body.get("tasks_digest"), str)
        if unchanged and not digest_matches(master, agent_id, body["tasks_digest"]):
            raise http_error(web.HTTPPreconditionFailed, "the task digest differs from this master's view: "
                             "register again with the tasks", tasks_required=True)
        event = events_pb2.Event(agent_reregistered=events_pb2.AgentReregistered(
            agent_id=agent_id, agent_info=info, tasks=reports, tasks_unchanged=unchanged))
    else:
        key = body.get("registration_key")
        agent_id = _agent_id_for(key) if key is not None else new_agent_id()
        event = events_pb2.Event(agent_registered=events_pb2.AgentRegistered(agent_id=agent_id, agent_info=info))
    return agent_id, event, reports


def unsent_launches(master, agent_id: str, reports: list) -> list[tuple[str, str]]:
    """(framework id, task id) of the agent's launches that may never have reached it (sent to
    a stream that died, or by a previous leader), to send again once it registered: its
    STAGING tasks it did not report. The agent ignores task ids it already runs."""
    state = master.replica.state
    reported = {(r.framework_id, r.task_id) for r in reports}
    out = []
    for framework_id, task_id in sorted(state.index.agent_tasks.get(agent_id, ())):
        task = state.cluster.frameworks[framework_id].tasks.get(task_id)
        if task is not None and task.state == mesos_pb2.TASK_STAGING and (framework_id, task_id) not in reported:
            out.append((framework_id, task_id))
    return out


def _agent_id_for(key) -> str:
    """The id of the agent that first registers with `registration_key` (a UUID the agent
    draws for its first REGISTER and keeps until it gets REGISTERED). A REGISTER sent again
    because the answer was lost (a reset connection, a timeout while the commit waited, a
    duplicated request) carries the same key, so it finds the agent it already made instead
    of making a second one (Mesos recognises such an agent by its pid)."""
    try:
        return f"{uuid.UUID(key)}-S0"
    except (TypeError, ValueError, AttributeError):
        raise bad_request("register.registration_key must be a UUID") from None


def digest_matches(master, agent_id: str, digest: str) -> bool:
    """Whether a re-registering agent runs exactly the tasks this master knows it runs."""
    agent = master.replica.state.cluster.agents.get(agent_id)
    if agent is None or not agent.reachable:
        return False
    return tasks_digest(master.replica.state.index.agent_tasks.get(agent_id, ())) == digest


MAX_UPDATES_PER_CALL = 1000


def _parse_update(body, agent_id: str) -> tuple[str, mesos_pb2.TaskStatus]:
    """(framework id, status) of one `{"framework_id", "status"}`; 400 when malformed."""
    if not isinstance(body, dict):
        raise bad_request("an update must be {\"framework_id\", \"status\"}")
    framework_id = id_value(body, "framework_id")
    status = task_status_from_json(body.get("status"))
    status.agent_id = agent_id
    if not status.uuid or len(status.uuid) != 16:
        raise bad_request("status.uuid must be 16 bytes, base64")
    return framework_id, status


def _new_update_event(leader, agent_id: str, framework_id: str, status) -> events_pb2.Event | None:
    """The event an agent's update makes, or None when it is a resend the state already holds
    (forwarded to the framework again, or acknowledged to the agent again, without an event)."""
    framework = leader.state.frameworks.get(framework_id)
    task = framework.tasks.get(status.task_id) if framework is not None else None
    if task is not None:
        if any(u.uuid == status.uuid for u in task.unacknowledged):
            leader.send_update(framework_id, task_status_to_json(status))
            return None
        if task.latest_status.uuid == status.uuid:
            leader.send_ack(agent_id, framework_id, status.task_id, status.uuid)  # acknowledged already
            return None
    elif framework is not None and any(t.info.task_id == status.task_id and t.latest_status.uuid == status.uuid
                                       for t in framework.completed_tasks):
        leader.send_ack(agent_id, framework_id, status.task_id, status.uuid)
        return None
    return events_pb2.Event(task_status_updated=events_pb2.TaskStatusUpdated(framework_id=framework_id,
                                                                             status=status))


async def update(request, agent_id, call):
    framework_id, status = _parse_update(section(call, "update"), agent_id)
    event = _new_update_event(request.app[MASTER].leader_shell, agent_id, framework_id, status)
    if event is not None:
        await propose(request, event)
    return accepted()


async def updates(request, agent_id, call):
    """Many updates in one call (of different tasks: one task's updates go one at a time, in
    order). All are checked before any is proposed; 202 once all are committed."""
    items = section(call, "updates").get("updates")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_UPDATES_PER_CALL:
        raise bad_request(f"updates.updates must be a list of 1 to {MAX_UPDATES_PER_CALL} updates")
    parsed = [_parse_update(item, agent_id) for item in items]
    if len({(f, s.task_id) for f, s in parsed}) != len(parsed):
        raise bad_request("one update per task in a call: a task's updates go in order, one at a time")
    leader = request.app[MASTER].leader_shell
    events = [e for f, s in parsed if (e := _new_update_event(leader, agent_id, f, s)) is not None]
    # Proposed together: group commit puts them in few log entries.
    await asyncio.gather(*(propose(request, event) for event in events))
    return accepted()


async def message(request, agent_id, call):
    body = section(call, "message")
    data = base64_field(body, "data", "message")
    await propose(request, events_pb2.Event(framework_message_relayed=events_pb2.FrameworkMessageRelayed(
        framework_id=id_value(body, "framework_id"), agent_id=agent_id,
        executor_id=id_value(body, "executor_id"), data=data, to_executor=False)))
    return accepted()


async def update_oversubscribed_resources(request, agent_id, call):
    body = section(call, "update_oversubscribed_resources")
    resources = resources_json_to_proto(body.get("oversubscribed_resources") or [])
    if any(not r.HasField("revocable") for r in resources):
        raise bad_request("oversubscribed resources must all be marked revocable")
    proposed = await propose(request, events_pb2.Event(
        oversubscribed_resources_updated=events_pb2.OversubscribedResourcesUpdated(
            agent_id=agent_id, resources=resources)))
    if isinstance(proposed.result, Rejected):
        raise bad_request(proposed.result.reason)
    return accepted()


async def pong(request, agent_id, call):
    return accepted()


async def unregister(request, agent_id, call):
    await propose(request, events_pb2.Event(agent_removed=events_pb2.AgentRemoved(
        agent_id=agent_id, reason="the agent unregistered")))
    stream = request.app[MASTER].leader_shell.agents.pop(agent_id, None)
    if stream:
        stream.close()
    return accepted()


CALLS = {"UPDATE": update, "UPDATES": updates, "MESSAGE": message, "PONG": pong, "UNREGISTER": unregister,
         "UPDATE_OVERSUBSCRIBED_RESOURCES": update_oversubscribed_resources}

__all__ = ["TERMINAL_STATES", "add_routes"]


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, agent_api)
