from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RaftBatch(_message.Message):
    __slots__ = ("nonce", "events")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    events: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, nonce: _Optional[bytes] = ..., events: _Optional[_Iterable[bytes]] = ...) -> None: ...

class RaftDump(_message.Message):
    __slots__ = ("last", "previous", "cluster", "archive_position", "archive_hash")
    LAST_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_POSITION_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_HASH_FIELD_NUMBER: _ClassVar[int]
    last: RaftJournalEntry
    previous: RaftJournalEntry
    cluster: _containers.RepeatedScalarFieldContainer[str]
    archive_position: int
    archive_hash: bytes
    def __init__(self, last: _Optional[_Union[RaftJournalEntry, _Mapping]] = ..., previous: _Optional[_Union[RaftJournalEntry, _Mapping]] = ..., cluster: _Optional[_Iterable[str]] = ..., archive_position: _Optional[int] = ..., archive_hash: _Optional[bytes] = ...) -> None: ...

class RaftJournalEntry(_message.Message):
    __slots__ = ("index", "term", "command")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    command: bytes
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., command: _Optional[bytes] = ...) -> None: ...

class ArchivedEntry(_message.Message):
    __slots__ = ("position", "raft_index", "hash", "payload")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RAFT_INDEX_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    position: int
    raft_index: int
    hash: bytes
    payload: bytes
    def __init__(self, position: _Optional[int] = ..., raft_index: _Optional[int] = ..., hash: _Optional[bytes] = ..., payload: _Optional[bytes] = ...) -> None: ...
