from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class State(_message.Message):
    __slots__ = ("position", "logs")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    position: int
    logs: _containers.RepeatedCompositeFieldContainer[NamedLog]
    def __init__(self, position: _Optional[int] = ..., logs: _Optional[_Iterable[_Union[NamedLog, _Mapping]]] = ...) -> None: ...

class NamedLog(_message.Message):
    __slots__ = ("name", "beginning", "ending", "log_positions", "recent_keys")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BEGINNING_FIELD_NUMBER: _ClassVar[int]
    ENDING_FIELD_NUMBER: _ClassVar[int]
    LOG_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    RECENT_KEYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    beginning: int
    ending: int
    log_positions: _containers.RepeatedScalarFieldContainer[int]
    recent_keys: _containers.RepeatedCompositeFieldContainer[IdempotencyKey]
    def __init__(self, name: _Optional[str] = ..., beginning: _Optional[int] = ..., ending: _Optional[int] = ..., log_positions: _Optional[_Iterable[int]] = ..., recent_keys: _Optional[_Iterable[_Union[IdempotencyKey, _Mapping]]] = ...) -> None: ...

class IdempotencyKey(_message.Message):
    __slots__ = ("key", "position")
    KEY_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    key: str
    position: int
    def __init__(self, key: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class StateSnapshot(_message.Message):
    __slots__ = ("state", "chain_hash")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_HASH_FIELD_NUMBER: _ClassVar[int]
    state: State
    chain_hash: bytes
    def __init__(self, state: _Optional[_Union[State, _Mapping]] = ..., chain_hash: _Optional[bytes] = ...) -> None: ...
