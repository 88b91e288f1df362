from mesos_es.pb import mesos_pb2 as _mesos_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class State(_message.Message):
    __slots__ = ("position", "logs", "cluster")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    position: int
    logs: _containers.RepeatedCompositeFieldContainer[NamedLog]
    cluster: Cluster
    def __init__(self, position: _Optional[int] = ..., logs: _Optional[_Iterable[_Union[NamedLog, _Mapping]]] = ..., cluster: _Optional[_Union[Cluster, _Mapping]] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("frameworks", "agents", "offers", "roles", "filters", "leader", "leader_term", "leader_since_ms", "removed_frameworks", "removed_agents")
    class FrameworksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Framework
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Framework, _Mapping]] = ...) -> None: ...
    class AgentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Agent
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...
    class OffersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _mesos_pb2.Offer
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_mesos_pb2.Offer, _Mapping]] = ...) -> None: ...
    class RolesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Role
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Role, _Mapping]] = ...) -> None: ...
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    frameworks: _containers.MessageMap[str, Framework]
    agents: _containers.MessageMap[str, Agent]
    offers: _containers.MessageMap[str, _mesos_pb2.Offer]
    roles: _containers.MessageMap[str, Role]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    leader: str
    leader_term: int
    leader_since_ms: int
    removed_frameworks: _containers.RepeatedScalarFieldContainer[str]
    removed_agents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, frameworks: _Optional[_Mapping[str, Framework]] = ..., agents: _Optional[_Mapping[str, Agent]] = ..., offers: _Optional[_Mapping[str, _mesos_pb2.Offer]] = ..., roles: _Optional[_Mapping[str, Role]] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., leader: _Optional[str] = ..., leader_term: _Optional[int] = ..., leader_since_ms: _Optional[int] = ..., removed_frameworks: _Optional[_Iterable[str]] = ..., removed_agents: _Optional[_Iterable[str]] = ...) -> None: ...

class Framework(_message.Message):
    __slots__ = ("id", "info", "connected", "registered_at_ms", "disconnected_at_ms", "suppressed_roles", "tasks", "completed_tasks")
    class TasksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Task
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_ROLES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_TASKS_FIELD_NUMBER: _ClassVar[int]
    id: str
    info: _mesos_pb2.FrameworkInfo
    connected: bool
    registered_at_ms: int
    disconnected_at_ms: int
    suppressed_roles: _containers.RepeatedScalarFieldContainer[str]
    tasks: _containers.MessageMap[str, Task]
    completed_tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, id: _Optional[str] = ..., info: _Optional[_Union[_mesos_pb2.FrameworkInfo, _Mapping]] = ..., connected: _Optional[bool] = ..., registered_at_ms: _Optional[int] = ..., disconnected_at_ms: _Optional[int] = ..., suppressed_roles: _Optional[_Iterable[str]] = ..., tasks: _Optional[_Mapping[str, Task]] = ..., completed_tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("id", "info", "reachable", "registered_at_ms", "unreachable_at_ms", "oversubscribed")
    ID_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    OVERSUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    id: str
    info: _mesos_pb2.AgentInfo
    reachable: bool
    registered_at_ms: int
    unreachable_at_ms: int
    oversubscribed: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    def __init__(self, id: _Optional[str] = ..., info: _Optional[_Union[_mesos_pb2.AgentInfo, _Mapping]] = ..., reachable: _Optional[bool] = ..., registered_at_ms: _Optional[int] = ..., unreachable_at_ms: _Optional[int] = ..., oversubscribed: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("info", "framework_id", "role", "state", "latest_status", "unacknowledged", "launched_at_ms", "revoked_at_ms")
    INFO_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LATEST_STATUS_FIELD_NUMBER: _ClassVar[int]
    UNACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    LAUNCHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    info: _mesos_pb2.TaskInfo
    framework_id: str
    role: str
    state: _mesos_pb2.TaskState
    latest_status: _mesos_pb2.TaskStatus
    unacknowledged: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.TaskStatus]
    launched_at_ms: int
    revoked_at_ms: int
    def __init__(self, info: _Optional[_Union[_mesos_pb2.TaskInfo, _Mapping]] = ..., framework_id: _Optional[str] = ..., role: _Optional[str] = ..., state: _Optional[_Union[_mesos_pb2.TaskState, str]] = ..., latest_status: _Optional[_Union[_mesos_pb2.TaskStatus, _Mapping]] = ..., unacknowledged: _Optional[_Iterable[_Union[_mesos_pb2.TaskStatus, _Mapping]]] = ..., launched_at_ms: _Optional[int] = ..., revoked_at_ms: _Optional[int] = ...) -> None: ...

class Role(_message.Message):
    __slots__ = ("name", "weight", "quota_guarantees", "quota_limits")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUOTA_GUARANTEES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_LIMITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    quota_guarantees: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    quota_limits: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ..., quota_guarantees: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ..., quota_limits: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("framework_id", "agent_id", "expires_ms", "resources")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    agent_id: str
    expires_ms: int
    resources: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    def __init__(self, framework_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., expires_ms: _Optional[int] = ..., resources: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ...) -> None: ...

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
