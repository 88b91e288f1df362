"""Mesos v1 protobuf on the scheduler API: Call bytes -> the dict a JSON body gives, and an
event dict -> Event bytes (schemas: mesos_es/pb/mesos_v1.proto, scheduler_v1.proto).

The handlers speak Mesos' v1 JSON, so a protobuf Call becomes exactly the dict a JSON client
sends for the same call, and one code path decides what it means. That dict follows Mesos'
own JSON rendering (and what pymesos sends): enums by name, bytes in base64, and 64-bit
integers as numbers (protobuf's canonical JSON mapping, `MessageToDict`, would make them
strings; the handlers and the agent take both, but task infos are stored and shown as sent).
Events go the other way through `dict_to_message`, which reads the schema as ParseDict does
but is about ten times faster (it runs inside the fold, for every event of a protobuf stream).

Fields outside our subset of Mesos' schema are unknown to the parser: they are dropped, and
each kind is logged once, so an operator sees what a framework sent that this master ignores.
"""

from __future__ import annotations

import base64
import re

import structlog
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, EncodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from mesos_es.pb import scheduler_v1_pb2

log = structlog.get_logger(__name__)

_reported: set[str] = set()  # dropped-field paths already logged
_MAX_REPORTED = 1000


class ProtobufError(ValueError):
    """A body that is not a valid Call, or an event that does not fit an Event."""


def call_from_protobuf(body: bytes) -> dict:
    """A serialized `mesos.v1.scheduler.Call` -> the dict its JSON form would parse to."""
    call = scheduler_v1_pb2.Call()
    try:
        call.ParseFromString(body)
    except DecodeError as e:
        raise ProtobufError(f"failed to parse the body as a mesos.v1.scheduler.Call: {e}") from None
    # Mesos (C++) refuses a message without its required fields while parsing; so do we.
    missing = call.FindInitializationErrors()
    if missing:
        raise ProtobufError(f"the Call lacks required fields: {', '.join(missing)}")
    dropped: list[str] = []
    obj = message_to_dict(call, "", dropped)
    _report(dropped)
    return obj


def message_to_dict(message: Message, path: str = "", dropped: list[str] | None = None) -> dict:
    """The fields that are set, by their proto names, in Mesos' JSON form. The paths of
    unknown fields go to `dropped` (as `path#number`)."""
    if dropped is not None:
        unknown = UnknownFieldSet(message)
        if len(unknown):
            dropped.extend(f"{path or 'call'}#{f.field_number}" for f in unknown)
    out = {}
    for field, value in message.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _value(value_field, v, f"{where}[{k}]", dropped) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, v, f"{where}[{i}]", dropped) for i, v in enumerate(value)]
        else:
            out[field.name] = _value(field, value, where, dropped)
    return out


def _value(field: FieldDescriptor, value, path: str, dropped: list[str] | None):
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict(value, path, dropped)
    if field.type == FieldDescriptor.TYPE_ENUM:
        # proto2 enums are closed: a number we do not know was kept as an unknown field.
        return field.enum_type.values_by_number[value].name
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if isinstance(value, bytes):  # a proto2 string that is not UTF-8 comes out as bytes
        raise ProtobufError(f"{path} is not valid UTF-8")
    return value  # str, bool, float, and int of any width


def _report(dropped: list[str]) -> None:
    for path in dict.fromkeys(re.sub(r"\[[^]]*\]", "", p) for p in dropped):
        if path not in _reported and len(_reported) < _MAX_REPORTED:
            _reported.add(path)
            log.warning("scheduler_call_field_dropped", field=path,
                        detail="not in mesos_es/pb/scheduler_v1.proto or mesos_v1.proto; ignored")


def event_to_protobuf(event: dict) -> bytes:
    """An event dict (Mesos v1 JSON) -> a serialized `mesos.v1.scheduler.Event`. Keys the
    schema lacks and enum names Mesos does not define (a reason of our own) are left out;
    a missing required field or a value of the wrong type raises ProtobufError."""
    try:
        return dict_to_message(event, scheduler_v1_pb2.Event()).SerializeToString()
    except (EncodeError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise ProtobufError(f"{event.get('type')} event does not fit mesos.v1.scheduler.Event: {e}") from None


# What dict_to_message does with each field, decided once per message type.
_SCALAR, _INT64, _BYTES, _ENUM, _MESSAGE, _MAP, _REPEATED, _REPEATED_ENUM, _REPEATED_MESSAGE = range(9)
_INT64_TYPES = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64})
_plans: dict = {}


def _plan(descriptor) -> dict[str, tuple[int, FieldDescriptor]]:
    plan = _plans.get(descriptor)
    if plan is None:
        plan = {}
        for field in descriptor.fields:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                kind = _MAP
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                kind = _REPEATED_MESSAGE if field.is_repeated else _MESSAGE
            elif field.type == FieldDescriptor.TYPE_ENUM:
                kind = _REPEATED_ENUM if field.is_repeated else _ENUM
            elif field.is_repeated:
                kind = _REPEATED
            elif field.type == FieldDescriptor.TYPE_BYTES:
                kind = _BYTES
            else:
                kind = _INT64 if field.type in _INT64_TYPES else _SCALAR
            plan[field.name] = (kind, field)
        _plans[descriptor] = plan
    return plan


def dict_to_message(obj: dict, message: Message) -> Message:
    """Fill `message` from Mesos v1 JSON, as `json_format.ParseDict(obj, message,
    ignore_unknown_fields=True)` does for what our events contain (a test holds them to the
    same bytes), about ten times faster: it runs for every event of a protobuf stream, inside
    the fold. Unknown keys and unknown enum names are skipped; a value of the wrong type raises."""
    plan = _plan(message.DESCRIPTOR)
    for key, value in obj.items():
        entry = plan.get(key)
        if entry is None or value is None:
            continue
        kind, field = entry
        if kind == _SCALAR:
            setattr(message, key, value)
        elif kind == _MESSAGE:
            sub = getattr(message, key)
            sub.SetInParent()  # `{}` (a revocable marker) is a present, empty message
            dict_to_message(value, sub)
        elif kind == _REPEATED_MESSAGE:
            items = getattr(message, key)
            for item in value:
                dict_to_message(item, items.add())
        elif kind == _ENUM:
            known = field.enum_type.values_by_name.get(value)
            if known is not None:
                setattr(message, key, known.number)
        elif kind == _BYTES:
            setattr(message, key, base64.b64decode(value, validate=True))
        elif kind == _INT64:
            setattr(message, key, int(value))  # JSON may spell 64-bit integers as strings
        elif kind == _REPEATED:
            getattr(message, key).extend(value)
        elif kind == _REPEATED_ENUM:
            names = field.enum_type.values_by_name
            getattr(message, key).extend(names[v].number for v in value if v in names)
        else:  # _MAP
            entries = getattr(message, key)
            if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for k, v in value.items():
                    dict_to_message(v, entries[k])
            else:
                entries.update(value)
    return message
