"""The v1 scheduler API, `POST /api/v1/scheduler`, as pymesos and Mesos frameworks use it.

SUBSCRIBE answers 200 with a chunked RecordIO stream (first SUBSCRIBED, then OFFERS, RESCIND,
UPDATE, MESSAGE, ERROR, HEARTBEAT) and a `Mesos-Stream-Id`; every other call must carry that
header and answers 202 once the event it caused is committed. Calls turn into events; a call
that is malformed answers 400 and writes nothing. Like Mesos, semantic problems with offers
or tasks are reported as TASK_DROPPED / TASK_ERROR updates rather than HTTP errors.

Bodies are JSON (`Content-Type: application/json`) or protobuf (`application/x-protobuf`, a
`mesos.v1.scheduler.Call`); a protobuf call is turned into the dict its JSON form gives
(mesos_es/master/http/protobuf.py), so both run the same handlers below. The stream is JSON
unless SUBSCRIBE's `Accept` allows only protobuf; then its records are serialized
`mesos.v1.scheduler.Event`s. Negotiation follows Mesos: 415 for another Content-Type, 406
for an Accept that allows neither.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping

import orjson
import structlog
from aiohttp import web

from mesos_es.core.convert import (
    STATE_NAMES,
    TERMINAL_STATES,
    InvalidObject,
    canonical_json,
    framework_info_from_json,
    id_value,
    ident,
    resources_json_to_proto,
    task_info_from_json,
    task_status_to_json,
)
from mesos_es.core.outcomes import Rejected
from mesos_es.log.interface import LogError
from mesos_es.master.http.common import MASTER, hold_for_leader, http_error, now_ms, propose, to_leader
from mesos_es.master.http.protobuf import ProtobufError, call_from_protobuf, event_to_protobuf
from mesos_es.master.leader import new_id
from mesos_es.master.streams import EventStream
from mesos_es.pb import events_pb2, mesos_pb2

log = structlog.get_logger(__name__)

PATH = "/api/v1/scheduler"
DEFAULT_REFUSE_SECONDS = 5.0
JSON = "application/json"
PROTOBUF = "application/x-protobuf"


def bad_request(message: str) -> web.HTTPException:
    return http_error(web.HTTPBadRequest, message)


def base64_field(body: Mapping, name: str, what: str) -> bytes:
    try:
        return base64.b64decode(body.get(name) or "", validate=True)
    except ValueError:
        raise bad_request(f"{what}.{name} must be base64") from None


async def read_call(request: web.Request) -> dict:
    """A call in JSON. The operator API reads its calls with this too: it takes any
    Content-Type but protobuf as JSON (the scheduler API reads with `read_scheduler_call`)."""
    if request.content_type == PROTOBUF:
        raise http_error(web.HTTPUnsupportedMediaType,
                         "protobuf calls are not supported yet; send Content-Type: application/json")
    return _json_call(await request.read())


async def read_scheduler_call(request: web.Request) -> dict:
    """A scheduler call as Mesos v1 JSON, from a JSON or a protobuf body; the Content-Type
    must be one of the two, as Mesos requires."""
    if "Content-Type" not in request.headers:
        raise bad_request(f"expecting a Content-Type of {JSON} or {PROTOBUF}")
    if request.content_type == JSON:
        return _json_call(await request.read())
    if request.content_type != PROTOBUF:
        raise http_error(web.HTTPUnsupportedMediaType, f"expecting a Content-Type of {JSON} or {PROTOBUF}")
    try:
        call = call_from_protobuf(await request.read())
    except ProtobufError as e:
        raise bad_request(str(e)) from None
    if "type" not in call:
        raise bad_request("the Call has no type")
    return call


def _json_call(body: bytes) -> dict:
    try:
        call = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"malformed JSON: {e}") from None
    if not isinstance(call, dict) or not isinstance(call.get("type"), str):
        raise bad_request("a call is a JSON object with a 'type'")
    return call


def accepts(header: str | None, media_type: str) -> bool:
    """Whether an Accept header allows `media_type`, decided as libprocess does: no header
    allows all; the first of `type/subtype`, `type/*`, `*/*` that is listed decides, and a
    q of 0 refuses. (q values do not rank: JSON wins whenever it is allowed.)"""
    if header is None:
        return True
    header = header.replace(" ", "").replace("\t", "").replace("\n", "").lower()
    for candidate in (media_type, media_type.split("/")[0] + "/*", "*/*"):
        for item in header.split(","):
            tokens = [t for t in item.split(";") if t]
            if not tokens or tokens[0] != candidate:
                continue
            q = [t[2:] for t in tokens[1:] if t.startswith("q=")]
            if len(q) != 1:
                return True
            try:
                return float(q[0]) > 0
            except ValueError:
                return False
    return False


def stream_encoding(request: web.Request) -> tuple[str, Callable[[dict], bytes]]:
    """The content type and encoder of a SUBSCRIBE's stream, from its Accept header."""
    accept = request.headers.get("Accept")
    if accepts(accept, JSON):
        return JSON, orjson.dumps
    if accepts(accept, PROTOBUF):
        return PROTOBUF, event_to_protobuf
    raise http_error(web.HTTPNotAcceptable, f"expecting Accept to allow {PROTOBUF} or {JSON}")


def section(call: Mapping, name: str, required: bool = True) -> dict:
    value = call.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{call['type']} needs a '{name}' object")
    return value


def ids(values, what: str) -> list[str]:
    if not isinstance(values, list):
        raise bad_request(f"{what} must be a list")
    out = []
    for v in values:
        if not isinstance(v, dict) or not isinstance(v.get("value"), str) or not v["value"]:
            raise bad_request(f"{what}: each id is {{\"value\": \"...\"}}")
        out.append(v["value"])
    return out


def refuse_seconds(body: Mapping) -> float:
    filters = body.get("filters") or {}
    try:
        return float(filters.get("refuse_seconds", DEFAULT_REFUSE_SECONDS))
    except (TypeError, ValueError, AttributeError):
        raise bad_request("filters.refuse_seconds must be a number") from None


def accepted() -> web.Response:
    return web.Response(status=202)


def rejected(outcome) -> None:
    if isinstance(outcome, Rejected):
        raise bad_request(outcome.reason)


# Taken even with the id of a subscription that has ended (most often the old leader's, in
# the moment between its death and the framework's SUBSCRIBE to the new one), where Mesos
# answers 400: they are the framework's own decisions about updates it received and offers
# it was made, and harmless when late (a second acknowledgement changes nothing; the offers
# were rescinded when the leader changed or the framework subscribed again). pymesos
# acknowledges every update in its event thread, and an error there stops the driver.
# Every other call from an old stream gets 403: it would act on the cluster.
TAKEN_FROM_AN_OLD_STREAM = frozenset({"ACKNOWLEDGE", "DECLINE"})


async def scheduler(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER]
    call = await read_scheduler_call(request)
    leader = master.leader_shell
    await hold_for_leader(request)
    if not leader.is_leading():
        raise to_leader(request, PATH)
    if call["type"] == "SUBSCRIBE":
        return await subscribe(request, call)
    try:
        framework_id = id_value(call, "framework_id")
    except InvalidObject as e:
        raise bad_request(str(e)) from None
    if framework_id not in leader.state.frameworks:
        raise http_error(web.HTTPNotFound, f"framework {framework_id} is not subscribed")
    stream = leader.frameworks.get(framework_id)
    stream_id = request.headers.get("Mesos-Stream-Id")
    if stream is None or stream_id != stream.stream_id:
        if not (stream_id and call["type"] in TAKEN_FROM_AN_OLD_STREAM):
            raise http_error(
                web.HTTPForbidden, "the Mesos-Stream-Id header does not match the framework's subscription")
        log.info("old_stream_call_taken", framework_id=framework_id, call=call["type"])
    handler = CALLS.get(call["type"])
    if handler is None:
        raise bad_request(f"unsupported call type {call['type']!r}")
    try:
        return await handler(request, framework_id, call)
    except InvalidObject as e:
        raise bad_request(str(e)) from None


async def subscribe(request: web.Request, call: dict) -> web.StreamResponse:
    master = request.app[MASTER]
    leader = master.leader_shell
    content_type, encoder = stream_encoding(request)
    body = section(call, "subscribe")
    raw_info = body.get("framework_info")
    try:
        info = framework_info_from_json(raw_info)
        framework_id = (id_value(call, "framework_id", required=False)
                        or id_value(raw_info, "id", required=False))
    except InvalidObject as e:
        raise bad_request(str(e)) from None
    cluster = leader.state
    if framework_id and framework_id in cluster.removed_frameworks:
        raise http_error(web.HTTPForbidden, f"framework {framework_id} was removed; subscribe without an id")
    resubscribed = bool(framework_id) and framework_id in cluster.frameworks
    framework_id = framework_id or new_id("0000")
    stream = EventStream(request, "framework", framework_id, content_type, encoder)
    previous = leader.frameworks.get(framework_id)
    leader.frameworks[framework_id] = stream  # effects from here on queue behind SUBSCRIBED
    if previous is not None:
        previous.send({"type": "ERROR", "error": {"message": "framework failed over"}})
        previous.close()
    try:
        proposed = await propose(request, events_pb2.Event(framework_subscribed=events_pb2.FrameworkSubscribed(
            framework_id=framework_id, framework_info=info, resubscribed=resubscribed)))
        rejected(proposed.result)
    except BaseException:
        if leader.frameworks.get(framework_id) is stream:
            del leader.frameworks[framework_id]
        raise
    await stream.open({"type": "SUBSCRIBED", "subscribed": {
        "framework_id": ident(framework_id),
        "heartbeat_interval_seconds": master.config.heartbeat_interval_s,
        "master_info": leader.master_info(),
    }})
    log.info("framework_subscribed", framework_id=framework_id, name=info.name, resubscribed=resubscribed)
    leader.resend_unacknowledged(framework_id)
    leader.trigger_allocation()
    try:
        await stream.run(master.config.heartbeat_interval_s, {"type": "HEARTBEAT"})
    finally:
        if leader.frameworks.get(framework_id) is stream:
            del leader.frameworks[framework_id]
            if leader.is_leading():
                asyncio.get_running_loop().create_task(_disconnected(leader, framework_id))
    return stream.response


async def _disconnected(leader, framework_id: str) -> None:
    try:
        await leader.propose(events_pb2.Event(framework_disconnected=events_pb2.FrameworkDisconnected(
            framework_id=framework_id)))
        log.info("framework_disconnected", framework_id=framework_id)
    except LogError as e:
        log.warning("framework_disconnect_not_recorded", framework_id=framework_id, error=str(e))


# -- calls ---------------------------------------------------------------------------------------

async def teardown(request, framework_id, call):
    await propose(request, events_pb2.Event(framework_removed=events_pb2.FrameworkRemoved(
        framework_id=framework_id, reason="TEARDOWN")))
    return accepted()


def parse_operation(op: Mapping) -> events_pb2.Operation:
    if not isinstance(op, Mapping) or not isinstance(op.get("type"), str):
        raise bad_request("each operation is an object with a 'type'")
    kind = op["type"]
    if kind == "LAUNCH":
        infos = section(op, "launch").get("task_infos") or []
        return _launch_operation("LAUNCH", infos)
    if kind == "LAUNCH_GROUP":
        body = section(op, "launch_group")
        infos = (body.get("task_group") or {}).get("tasks") or []
        operation = _launch_operation("LAUNCH_GROUP", infos)
        executor = body.get("executor")
        if not isinstance(executor, Mapping) or not id_value(executor, "executor_id", required=False):
            operation.error = operation.error or "LAUNCH_GROUP needs an executor with an executor_id"
        else:
            operation.executor_json = canonical_json(executor)
            for t in operation.task_infos:
                t.executor_id = executor["executor_id"]["value"]
        return operation
    if kind in ("RESERVE", "UNRESERVE"):
        body = section(op, kind.lower())
        return events_pb2.Operation(type=kind, resources=resources_json_to_proto(body.get("resources") or []))
    raise bad_request(f"unsupported operation {kind!r}")


def _launch_operation(kind: str, infos) -> events_pb2.Operation:
    if not isinstance(infos, list):
        raise bad_request("task_infos must be a list")
    operation = events_pb2.Operation(type=kind)
    for raw in infos:
        try:
            operation.task_infos.append(task_info_from_json(raw))
        except InvalidObject as e:
            task_id = id_value(raw, "task_id", required=False) if isinstance(raw, Mapping) else ""
            if not task_id:
                raise bad_request(str(e)) from None
            # Still named, so the framework hears about it as TASK_ERROR.
            operation.task_infos.append(mesos_pb2.TaskInfo(task_id=task_id, name=str(raw.get("name", ""))))
            operation.error = operation.error or str(e)
    return operation


async def accept(request, framework_id, call):
    body = section(call, "accept")
    offer_ids = ids(body.get("offer_ids") or [], "accept.offer_ids")
    operations = body.get("operations") or []
    if not isinstance(operations, list):
        raise bad_request("accept.operations must be a list")
    event = events_pb2.OffersAccepted(framework_id=framework_id, offer_ids=offer_ids,
                                      operations=[parse_operation(op) for op in operations],
                                      refuse_seconds=refuse_seconds(body))
    await propose(request, events_pb2.Event(offers_accepted=event))
    return accepted()


async def decline(request, framework_id, call):
    body = section(call, "decline")
    await propose(request, events_pb2.Event(offers_declined=events_pb2.OffersDeclined(
        framework_id=framework_id, offer_ids=ids(body.get("offer_ids") or [], "decline.offer_ids"),
        refuse_seconds=refuse_seconds(body))))
    return accepted()


def _roles(body: Mapping) -> list[str]:
    roles = body.get("roles")
    if roles is None:
        roles = [body["role"]] if isinstance(body.get("role"), str) else []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise bad_request("roles must be a list of role names")
    return roles


async def revive(request, framework_id, call):
    roles = _roles(section(call, "revive", required=False))
    await propose(request, events_pb2.Event(framework_revived=events_pb2.FrameworkRevived(
        framework_id=framework_id, roles=roles)))
    return accepted()


async def suppress(request, framework_id, call):
    roles = _roles(section(call, "suppress", required=False))
    await propose(request, events_pb2.Event(framework_suppressed=events_pb2.FrameworkSuppressed(
        framework_id=framework_id, roles=roles)))
    return accepted()


async def kill(request, framework_id, call):
    body = section(call, "kill")
    task_id = id_value(body, "task_id")
    policy = body.get("kill_policy")
    await propose(request, events_pb2.Event(task_kill_requested=events_pb2.TaskKillRequested(
        framework_id=framework_id, task_id=task_id, agent_id=id_value(body, "agent_id", required=False),
        kill_policy_json=canonical_json(policy) if isinstance(policy, Mapping) else b"")))
    return accepted()


async def shutdown(request, framework_id, call):
    """SHUTDOWN of an executor: its tasks are killed (the agent then ends the executor)."""
    body = section(call, "shutdown")
    executor_id, agent_id = id_value(body, "executor_id"), id_value(body, "agent_id")
    framework = request.app[MASTER].leader_shell.state.frameworks[framework_id]
    for task_id in sorted(framework.tasks):
        task = framework.tasks[task_id]
        if task.info.executor_id == executor_id and task.info.agent_id == agent_id and \
                task.state not in TERMINAL_STATES:
            await propose(request, events_pb2.Event(task_kill_requested=events_pb2.TaskKillRequested(
                framework_id=framework_id, task_id=task_id, agent_id=agent_id)))
    return accepted()


async def acknowledge(request, framework_id, call):
    body = section(call, "acknowledge")
    task_id = id_value(body, "task_id")
    uuid = base64_field(body, "uuid", "acknowledge")
    framework = request.app[MASTER].leader_shell.state.frameworks[framework_id]
    task = framework.tasks.get(task_id)
    # An acknowledgement of something already acknowledged (or unknown) changes nothing;
    # Mesos answers it with 202 too, and pymesos would fail on anything else.
    if task is not None and any(u.uuid == uuid for u in task.unacknowledged):
        await propose(request, events_pb2.Event(status_update_acknowledged=events_pb2.StatusUpdateAcknowledged(
            framework_id=framework_id, agent_id=id_value(body, "agent_id", required=False) or task.info.agent_id,
            task_id=task_id, uuid=uuid)))
    return accepted()


async def reconcile(request, framework_id, call):
    """Answer with the latest state of the named tasks (all active ones when none are named).
    A read of committed state: no event."""
    body = section(call, "reconcile", required=False)
    wanted = body.get("tasks") or []
    if not isinstance(wanted, list):
        raise bad_request("reconcile.tasks must be a list")
    leader = request.app[MASTER].leader_shell
    framework = leader.state.frameworks[framework_id]
    ts = now_ms() / 1000
    statuses = []
    if not wanted:
        for task_id in sorted(framework.tasks):
            task = framework.tasks[task_id]
            if task.state not in TERMINAL_STATES:
                statuses.append(_reconciled(task.latest_status, ts))
    for item in wanted:
        task_id = id_value(item, "task_id")
        task = framework.tasks.get(task_id)
        if task is not None:
            statuses.append(_reconciled(task.latest_status, ts))
            continue
        done = next((t for t in framework.completed_tasks if t.info.task_id == task_id), None)
        if done is not None:
            statuses.append(_reconciled(done.latest_status, ts))
            continue
        partition_aware = "PARTITION_AWARE" in framework.info.capabilities
        statuses.append({"task_id": ident(task_id), "state": "TASK_UNKNOWN" if partition_aware else "TASK_LOST",
                         "source": "SOURCE_MASTER", "reason": "REASON_RECONCILIATION",
                         "message": "task unknown to the master", "timestamp": ts,
                         **({"agent_id": item["agent_id"]} if isinstance(item.get("agent_id"), dict) else {})})
    for status in statuses:
        leader.send_update(framework_id, status)
    return accepted()


def _reconciled(status: mesos_pb2.TaskStatus, ts: float) -> dict:
    obj = task_status_to_json(status)
    obj.pop("uuid", None)  # reconciliation answers are not acknowledged
    obj.update(reason="REASON_RECONCILIATION", source="SOURCE_MASTER", timestamp=ts)
    obj["state"] = STATE_NAMES[status.state]
    return obj


async def message(request, framework_id, call):
    body = section(call, "message")
    data = base64_field(body, "data", "message")
    proposed = await propose(request, events_pb2.Event(framework_message_relayed=events_pb2.FrameworkMessageRelayed(
        framework_id=framework_id, agent_id=id_value(body, "agent_id"), executor_id=id_value(body, "executor_id"),
        data=data, to_executor=True)))
    rejected(proposed.result)
    return accepted()


async def request_resources(request, framework_id, call):
    return accepted()  # REQUEST: a hint the allocator does not use (as in Mesos' default allocator)


async def update_framework(request, framework_id, call):
    body = section(call, "update_framework")
    info = framework_info_from_json(body.get("framework_info"))
    await propose(request, events_pb2.Event(framework_updated=events_pb2.FrameworkUpdated(
        framework_id=framework_id, framework_info=info)))
    return accepted()


CALLS = {
    "TEARDOWN": teardown, "ACCEPT": accept, "DECLINE": decline, "REVIVE": revive, "SUPPRESS": suppress,
    "KILL": kill, "SHUTDOWN": shutdown, "ACKNOWLEDGE": acknowledge, "RECONCILE": reconcile,
    "MESSAGE": message, "REQUEST": request_resources, "UPDATE_FRAMEWORK": update_framework,
}


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, scheduler)
