from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("timestamp_ms", "log_entry_appended", "log_truncated")
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    LOG_ENTRY_APPENDED_FIELD_NUMBER: _ClassVar[int]
    LOG_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    timestamp_ms: int
    log_entry_appended: LogEntryAppended
    log_truncated: LogTruncated
    def __init__(self, timestamp_ms: _Optional[int] = ..., log_entry_appended: _Optional[_Union[LogEntryAppended, _Mapping]] = ..., log_truncated: _Optional[_Union[LogTruncated, _Mapping]] = ...) -> None: ...

class LogEntryAppended(_message.Message):
    __slots__ = ("log", "data", "idempotency_key")
    LOG_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    log: str
    data: bytes
    idempotency_key: str
    def __init__(self, log: _Optional[str] = ..., data: _Optional[bytes] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class LogTruncated(_message.Message):
    __slots__ = ("log", "to")
    LOG_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    log: str
    to: int
    def __init__(self, log: _Optional[str] = ..., to: _Optional[int] = ...) -> None: ...
