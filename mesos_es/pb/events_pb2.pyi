from mesos_es.pb import mesos_pb2 as _mesos_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("timestamp_ms", "log_entry_appended", "log_truncated", "master_elected", "framework_subscribed", "framework_disconnected", "framework_removed", "framework_suppressed", "framework_revived", "agent_registered", "agent_reregistered", "agent_marked_unreachable", "agent_removed", "offers_made", "offers_rescinded", "offers_declined", "offers_accepted", "task_status_updated", "status_update_acknowledged", "task_kill_requested", "framework_message_relayed", "quota_updated", "weights_updated", "resources_reserved", "resources_unreserved", "framework_updated", "oversubscribed_resources_updated", "resources_revoked")
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    LOG_ENTRY_APPENDED_FIELD_NUMBER: _ClassVar[int]
    LOG_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    MASTER_ELECTED_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_DISCONNECTED_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_REMOVED_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_REVIVED_FIELD_NUMBER: _ClassVar[int]
    AGENT_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    AGENT_REREGISTERED_FIELD_NUMBER: _ClassVar[int]
    AGENT_MARKED_UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    AGENT_REMOVED_FIELD_NUMBER: _ClassVar[int]
    OFFERS_MADE_FIELD_NUMBER: _ClassVar[int]
    OFFERS_RESCINDED_FIELD_NUMBER: _ClassVar[int]
    OFFERS_DECLINED_FIELD_NUMBER: _ClassVar[int]
    OFFERS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    TASK_STATUS_UPDATED_FIELD_NUMBER: _ClassVar[int]
    STATUS_UPDATE_ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    TASK_KILL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_MESSAGE_RELAYED_FIELD_NUMBER: _ClassVar[int]
    QUOTA_UPDATED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_UPDATED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_RESERVED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_UNRESERVED_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_UPDATED_FIELD_NUMBER: _ClassVar[int]
    OVERSUBSCRIBED_RESOURCES_UPDATED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_REVOKED_FIELD_NUMBER: _ClassVar[int]
    timestamp_ms: int
    log_entry_appended: LogEntryAppended
    log_truncated: LogTruncated
    master_elected: MasterElected
    framework_subscribed: FrameworkSubscribed
    framework_disconnected: FrameworkDisconnected
    framework_removed: FrameworkRemoved
    framework_suppressed: FrameworkSuppressed
    framework_revived: FrameworkRevived
    agent_registered: AgentRegistered
    agent_reregistered: AgentReregistered
    agent_marked_unreachable: AgentMarkedUnreachable
    agent_removed: AgentRemoved
    offers_made: OffersMade
    offers_rescinded: OffersRescinded
    offers_declined: OffersDeclined
    offers_accepted: OffersAccepted
    task_status_updated: TaskStatusUpdated
    status_update_acknowledged: StatusUpdateAcknowledged
    task_kill_requested: TaskKillRequested
    framework_message_relayed: FrameworkMessageRelayed
    quota_updated: QuotaUpdated
    weights_updated: WeightsUpdated
    resources_reserved: ResourcesReserved
    resources_unreserved: ResourcesUnreserved
    framework_updated: FrameworkUpdated
    oversubscribed_resources_updated: OversubscribedResourcesUpdated
    resources_revoked: ResourcesRevoked
    def __init__(self, timestamp_ms: _Optional[int] = ..., log_entry_appended: _Optional[_Union[LogEntryAppended, _Mapping]] = ..., log_truncated: _Optional[_Union[LogTruncated, _Mapping]] = ..., master_elected: _Optional[_Union[MasterElected, _Mapping]] = ..., framework_subscribed: _Optional[_Union[FrameworkSubscribed, _Mapping]] = ..., framework_disconnected: _Optional[_Union[FrameworkDisconnected, _Mapping]] = ..., framework_removed: _Optional[_Union[FrameworkRemoved, _Mapping]] = ..., framework_suppressed: _Optional[_Union[FrameworkSuppressed, _Mapping]] = ..., framework_revived: _Optional[_Union[FrameworkRevived, _Mapping]] = ..., agent_registered: _Optional[_Union[AgentRegistered, _Mapping]] = ..., agent_reregistered: _Optional[_Union[AgentReregistered, _Mapping]] = ..., agent_marked_unreachable: _Optional[_Union[AgentMarkedUnreachable, _Mapping]] = ..., agent_removed: _Optional[_Union[AgentRemoved, _Mapping]] = ..., offers_made: _Optional[_Union[OffersMade, _Mapping]] = ..., offers_rescinded: _Optional[_Union[OffersRescinded, _Mapping]] = ..., offers_declined: _Optional[_Union[OffersDeclined, _Mapping]] = ..., offers_accepted: _Optional[_Union[OffersAccepted, _Mapping]] = ..., task_status_updated: _Optional[_Union[TaskStatusUpdated, _Mapping]] = ..., status_update_acknowledged: _Optional[_Union[StatusUpdateAcknowledged, _Mapping]] = ..., task_kill_requested: _Optional[_Union[TaskKillRequested, _Mapping]] = ..., framework_message_relayed: _Optional[_Union[FrameworkMessageRelayed, _Mapping]] = ..., quota_updated: _Optional[_Union[QuotaUpdated, _Mapping]] = ..., weights_updated: _Optional[_Union[WeightsUpdated, _Mapping]] = ..., resources_reserved: _Optional[_Union[ResourcesReserved, _Mapping]] = ..., resources_unreserved: _Optional[_Union[ResourcesUnreserved, _Mapping]] = ..., framework_updated: _Optional[_Union[FrameworkUpdated, _Mapping]] = ..., oversubscribed_resources_updated: _Optional[_Union[OversubscribedResourcesUpdated, _Mapping]] = ..., resources_revoked: _Optional[_Union[ResourcesRevoked, _Mapping]] = ...) -> None: ...

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

class MasterElected(_message.Message):
    __slots__ = ("leader", "term")
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader: str
    term: int
    def __init__(self, leader: _Optional[str] = ..., term: _Optional[int] = ...) -> None: ...

class FrameworkSubscribed(_message.Message):
    __slots__ = ("framework_id", "framework_info", "resubscribed")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_INFO_FIELD_NUMBER: _ClassVar[int]
    RESUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    framework_info: _mesos_pb2.FrameworkInfo
    resubscribed: bool
    def __init__(self, framework_id: _Optional[str] = ..., framework_info: _Optional[_Union[_mesos_pb2.FrameworkInfo, _Mapping]] = ..., resubscribed: _Optional[bool] = ...) -> None: ...

class FrameworkDisconnected(_message.Message):
    __slots__ = ("framework_id",)
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    def __init__(self, framework_id: _Optional[str] = ...) -> None: ...

class FrameworkRemoved(_message.Message):
    __slots__ = ("framework_id", "reason")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    reason: str
    def __init__(self, framework_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FrameworkSuppressed(_message.Message):
    __slots__ = ("framework_id", "roles")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, framework_id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class FrameworkRevived(_message.Message):
    __slots__ = ("framework_id", "roles")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, framework_id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentRegistered(_message.Message):
    __slots__ = ("agent_id", "agent_info")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_INFO_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent_info: _mesos_pb2.AgentInfo
    def __init__(self, agent_id: _Optional[str] = ..., agent_info: _Optional[_Union[_mesos_pb2.AgentInfo, _Mapping]] = ...) -> None: ...

class TaskReport(_message.Message):
    __slots__ = ("framework_id", "task_id", "state")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    task_id: str
    state: _mesos_pb2.TaskState
    def __init__(self, framework_id: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[_Union[_mesos_pb2.TaskState, str]] = ...) -> None: ...

class AgentReregistered(_message.Message):
    __slots__ = ("agent_id", "agent_info", "tasks", "tasks_unchanged")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_INFO_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent_info: _mesos_pb2.AgentInfo
    tasks: _containers.RepeatedCompositeFieldContainer[TaskReport]
    tasks_unchanged: bool
    def __init__(self, agent_id: _Optional[str] = ..., agent_info: _Optional[_Union[_mesos_pb2.AgentInfo, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskReport, _Mapping]]] = ..., tasks_unchanged: _Optional[bool] = ...) -> None: ...

class AgentMarkedUnreachable(_message.Message):
    __slots__ = ("agent_id", "reason")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    reason: str
    def __init__(self, agent_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentRemoved(_message.Message):
    __slots__ = ("agent_id", "reason")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    reason: str
    def __init__(self, agent_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class OffersMade(_message.Message):
    __slots__ = ("offers",)
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Offer]
    def __init__(self, offers: _Optional[_Iterable[_Union[_mesos_pb2.Offer, _Mapping]]] = ...) -> None: ...

class OffersRescinded(_message.Message):
    __slots__ = ("offer_ids", "reason")
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, offer_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class OffersDeclined(_message.Message):
    __slots__ = ("framework_id", "offer_ids", "refuse_seconds")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    REFUSE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    refuse_seconds: float
    def __init__(self, framework_id: _Optional[str] = ..., offer_ids: _Optional[_Iterable[str]] = ..., refuse_seconds: _Optional[float] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("type", "task_infos", "executor_json", "resources", "error")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TASK_INFOS_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_JSON_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    type: str
    task_infos: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.TaskInfo]
    executor_json: bytes
    resources: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    error: str
    def __init__(self, type: _Optional[str] = ..., task_infos: _Optional[_Iterable[_Union[_mesos_pb2.TaskInfo, _Mapping]]] = ..., executor_json: _Optional[bytes] = ..., resources: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class OffersAccepted(_message.Message):
    __slots__ = ("framework_id", "offer_ids", "operations", "refuse_seconds")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    REFUSE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    refuse_seconds: float
    def __init__(self, framework_id: _Optional[str] = ..., offer_ids: _Optional[_Iterable[str]] = ..., operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., refuse_seconds: _Optional[float] = ...) -> None: ...

class TaskStatusUpdated(_message.Message):
    __slots__ = ("framework_id", "status")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    status: _mesos_pb2.TaskStatus
    def __init__(self, framework_id: _Optional[str] = ..., status: _Optional[_Union[_mesos_pb2.TaskStatus, _Mapping]] = ...) -> None: ...

class StatusUpdateAcknowledged(_message.Message):
    __slots__ = ("framework_id", "agent_id", "task_id", "uuid")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    agent_id: str
    task_id: str
    uuid: bytes
    def __init__(self, framework_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., task_id: _Optional[str] = ..., uuid: _Optional[bytes] = ...) -> None: ...

class TaskKillRequested(_message.Message):
    __slots__ = ("framework_id", "task_id", "agent_id", "kill_policy_json")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    KILL_POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    task_id: str
    agent_id: str
    kill_policy_json: bytes
    def __init__(self, framework_id: _Optional[str] = ..., task_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., kill_policy_json: _Optional[bytes] = ...) -> None: ...

class FrameworkMessageRelayed(_message.Message):
    __slots__ = ("framework_id", "agent_id", "executor_id", "data", "to_executor")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TO_EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    agent_id: str
    executor_id: str
    data: bytes
    to_executor: bool
    def __init__(self, framework_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., executor_id: _Optional[str] = ..., data: _Optional[bytes] = ..., to_executor: _Optional[bool] = ...) -> None: ...

class QuotaConfig(_message.Message):
    __slots__ = ("role", "guarantees", "limits")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    GUARANTEES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    role: str
    guarantees: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    limits: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    def __init__(self, role: _Optional[str] = ..., guarantees: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ..., limits: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ...) -> None: ...

class QuotaUpdated(_message.Message):
    __slots__ = ("configs",)
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    configs: _containers.RepeatedCompositeFieldContainer[QuotaConfig]
    def __init__(self, configs: _Optional[_Iterable[_Union[QuotaConfig, _Mapping]]] = ...) -> None: ...

class WeightInfo(_message.Message):
    __slots__ = ("role", "weight")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    role: str
    weight: float
    def __init__(self, role: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class WeightsUpdated(_message.Message):
    __slots__ = ("weights",)
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.RepeatedCompositeFieldContainer[WeightInfo]
    def __init__(self, weights: _Optional[_Iterable[_Union[WeightInfo, _Mapping]]] = ...) -> None: ...

class ResourcesReserved(_message.Message):
    __slots__ = ("agent_id", "resources")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    resources: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    def __init__(self, agent_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ...) -> None: ...

class ResourcesUnreserved(_message.Message):
    __slots__ = ("agent_id", "resources")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    resources: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    def __init__(self, agent_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ...) -> None: ...

class FrameworkUpdated(_message.Message):
    __slots__ = ("framework_id", "framework_info")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_INFO_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    framework_info: _mesos_pb2.FrameworkInfo
    def __init__(self, framework_id: _Optional[str] = ..., framework_info: _Optional[_Union[_mesos_pb2.FrameworkInfo, _Mapping]] = ...) -> None: ...

class OversubscribedResourcesUpdated(_message.Message):
    __slots__ = ("agent_id", "resources")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    resources: _containers.RepeatedCompositeFieldContainer[_mesos_pb2.Resource]
    def __init__(self, agent_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[_mesos_pb2.Resource, _Mapping]]] = ...) -> None: ...

class RevokedTask(_message.Message):
    __slots__ = ("framework_id", "task_id")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    task_id: str
    def __init__(self, framework_id: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class ResourcesRevoked(_message.Message):
    __slots__ = ("offer_ids", "tasks", "for_roles", "grace_period_ms")
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    FOR_ROLES_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    tasks: _containers.RepeatedCompositeFieldContainer[RevokedTask]
    for_roles: _containers.RepeatedScalarFieldContainer[str]
    grace_period_ms: int
    def __init__(self, offer_ids: _Optional[_Iterable[str]] = ..., tasks: _Optional[_Iterable[_Union[RevokedTask, _Mapping]]] = ..., for_roles: _Optional[_Iterable[str]] = ..., grace_period_ms: _Optional[int] = ...) -> None: ...
