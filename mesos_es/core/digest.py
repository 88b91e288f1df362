"""The state's canonical form: protobuf for snapshots, and a hash tree for the digest.

Canonical means: repeated fields in a fixed order (logs by name), deterministic protobuf
encoding. Two replicas, or a replay, at the same position must have the same digest.

The digest is a function of the state alone (not of the events that built it, nor of the
process), defined as follows; docs/architecture.md says the same.

* Leaves. Each part of the state is one leaf, `sha256(tag || key || value)`: `tag` is one
  ASCII letter, `key` the part's identifiers, each as uvarint(length) || UTF-8 (block
  numbers in decimal), and `value` deterministic protobuf bytes (mesos_es/pb/state.proto):

  ====  ===================  ==========================================================
  tag   key                  value
  ====  ===================  ==========================================================
  C     (none)               `Cluster` with only its other fields: leader, leader_term,
                             leader_since_ms, removed_frameworks, removed_agents
  F     framework id         `Framework` without its `tasks`
  T     framework, task id   `Task`
  A     agent id             `Agent`
  O     offer id             `Offer`
  R     role name            `Role`
  I     framework, agent id  `Cluster` with only that pair's `filters`, in list order
  L     log name             `NamedLog` with only name, beginning and ending
  P     log name, block      `NamedLog` with only the `log_positions` of the readable
                             entries whose position p in the named log is in the block,
                             i.e. (p - 1) // 64 == block
  K     log name, block      `NamedLog` with only the `recent_keys` whose position is in
                             the block, oldest first
  ====  ===================  ==========================================================

  A part that does not exist has no leaf, nor does a block with nothing in it; C is always
  there.
* Groups. The leaves fall into 1,024 groups by their first 10 bits. A group's hash is the
  sha256 of its leaves sorted bytewise and concatenated, or 32 zero bytes when it is empty.
* Root. The digest is the hex sha256 of the position (8 bytes, big-endian) followed by the
  1,024 group hashes in group order.

The appliers name what they change in `state.changes`; `digest` hashes again only those
leaves, their groups and the root, so a digest after one event costs about what the event
changed. `full_digest` computes the same from scratch (the tests compare the two).
"""

from __future__ import annotations

import hashlib
import itertools
from array import array
from bisect import bisect_left, bisect_right

from mesos_es.core.cluster import ClusterIndex
from mesos_es.core.state import NamedLog, State
from mesos_es.pb import state_pb2

GROUP_BITS = 10
GROUPS = 1 << GROUP_BITS
BLOCK = 64  # named-log positions per P or K leaf
_EMPTY_GROUP = bytes(32)
# The fold drops changes it keeps for no use (no digest yet, or more than a rebuild costs)
# every so many positions (see `forget_useless_changes`).
CHANGES_CHECK_EVERY = 4096
# Fields of a framework and of the cluster that have leaves of their own.
_FRAMEWORK_PARTS = frozenset({"tasks"})
_CLUSTER_PARTS = frozenset({"frameworks", "agents", "offers", "roles", "filters"})


def to_proto(state: State) -> state_pb2.State:
    message = to_proto_without_cluster(state)
    message.cluster.CopyFrom(state.cluster)
    return message


def from_proto(message: state_pb2.State) -> State:
    state = State(position=message.position)
    for entry in message.logs:
        state.logs[entry.name] = NamedLog(
            name=entry.name,
            beginning=entry.beginning,
            log_positions=array("Q", entry.log_positions),
            recent_keys={k.key: k.position for k in entry.recent_keys},
        )
    state.cluster.CopyFrom(message.cluster)
    state.index = ClusterIndex.rebuild(state.cluster)
    return state


def canonical_bytes(state: State) -> bytes:
    """`to_proto(state).SerializeToString(deterministic=True)`, byte for byte, without copying
    the cluster into a new message first, and one framework, task, agent, offer and role at a
    time: fields serialize in number order, so the cluster (field 3) is the encoded rest
    followed by its own bytes, and a map is its entries sorted by key.

    Protobuf's serializer holds the GIL for a whole call. In one call, a large cluster (0.3 s
    at 5,000 agents and 50,000 tasks, seconds at 40,000 agents) kept pysyncobj's tick thread
    from sending heartbeats while a master wrote its snapshot, long enough at scale for an
    election; between the pieces that thread gets the GIL (0.38-0.48 s in all at that size)."""
    out = [to_proto_without_cluster(state).SerializeToString(deterministic=True)]
    cluster: list[bytes] = []
    _pieces(state.cluster, cluster, _SPLIT)
    length_delimited(out, state_pb2.State.CLUSTER_FIELD_NUMBER, b"".join(cluster))
    return b"".join(out)


# Map fields serialized an entry at a time, and the fields of their values to split again.
_SPLIT = {"frameworks": {"tasks": {}}, "agents": {}, "offers": {}, "roles": {}}


def _pieces(message, out: list[bytes], split: dict) -> None:
    """Append `message`'s deterministic encoding to `out`: its fields in number order, the map
    fields named in `split` one entry at a time (sorted by key)."""
    if not split:
        out.append(message.SerializeToString(deterministic=True))
        return
    for field in sorted(message.DESCRIPTOR.fields, key=lambda f: f.number):
        if field.name in split:
            container, inner = getattr(message, field.name), split[field.name]
            for key in sorted(container):
                value: list[bytes] = []
                _pieces(container[key], value, inner)
                entry: list[bytes] = []
                length_delimited(entry, 1, key.encode())
                length_delimited(entry, 2, b"".join(value))
                length_delimited(out, field.number, b"".join(entry))
            continue
        alone = type(message)()
        if field.is_repeated:
            getattr(alone, field.name).extend(getattr(message, field.name))
        elif field.message_type is not None:
            if message.HasField(field.name):
                getattr(alone, field.name).CopyFrom(getattr(message, field.name))
        else:
            setattr(alone, field.name, getattr(message, field.name))
        out.append(alone.SerializeToString(deterministic=True))


def length_delimited(out: list[bytes], number: int, data: bytes) -> None:
    """Append field `number` holding `data` (bytes, a string or a message) in wire format."""
    out.extend((_varint((number << 3) | 2), _varint(len(data)), data))


def _varint(n: int) -> bytes:
    if n < 128:
        return _SHORT_VARINTS[n]
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def to_proto_without_cluster(state: State) -> state_pb2.State:
    message = state_pb2.State(position=state.position)
    for name in sorted(state.logs):
        log = state.logs[name]
        entry = message.logs.add(name=name, beginning=log.beginning, ending=log.ending)
        entry.log_positions.extend(log.log_positions)
        for key, position in log.recent_keys.items():
            entry.recent_keys.add(key=key, position=position)
    return message


# -- the digest -------------------------------------------------------------------------------

def digest(state: State) -> str:
    """The hex digest defined above, hashing again only what changed since the last call."""
    tree = state.digest_tree
    if tree is None:
        tree = state.digest_tree = _Tree.of(state)
    else:
        tree.update(state, state.changes)
    state.changes.clear()
    return tree.root(state.position)


def full_digest(state: State) -> str:
    """The same digest computed from scratch, leaving the state's tree alone (for tests)."""
    return _Tree.of(state).root(state.position)


def forget_useless_changes(state: State) -> None:
    """Drop marks that no digest will use (none was asked yet), or the tree when more changed
    since the last digest than it holds (a rebuild then costs less): the marks would
    otherwise grow with every offer and task a long fold goes through."""
    tree = state.digest_tree
    if tree is None or state.changes.count() > len(tree.leaves) + CHANGES_CHECK_EVERY:
        state.digest_tree = None
        state.changes.clear()


def _key(tag: bytes, *parts: str) -> bytes:
    out = [tag]
    for part in parts:
        data = part.encode()
        out.append(_varint(len(data)))
        out.append(data)
    return b"".join(out)


_SHORT_VARINTS = [bytes([n]) for n in range(128)]


def _group(leaf: bytes) -> int:
    return (leaf[0] << 8 | leaf[1]) >> (16 - GROUP_BITS)


def _serialize(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def _without(message, excluded: frozenset[str]) -> bytes:
    """The message's bytes as if the `excluded` fields were empty (without copying them)."""
    copy = type(message)()
    for field, value in message.ListFields():
        if field.name in excluded:
            continue
        if field.is_repeated or field.message_type is not None:
            getattr(copy, field.name).MergeFrom(value)
        else:
            setattr(copy, field.name, value)
    return _serialize(copy)


def _filters_of(filters, framework_id: str, agent_id: str) -> list[state_pb2.Filter]:
    """The pair's run in the sorted filter list."""
    pair = (framework_id, agent_id)

    def key(f):
        return f.framework_id, f.agent_id
    return filters[bisect_left(filters, pair, key=key):bisect_right(filters, pair, key=key)]


def _blocks(first: int, last: int) -> range:
    """Blocks holding named-log positions first..last (none when last < first)."""
    if first < 1 or last < first:
        return range(0)
    return range((first - 1) // BLOCK, (last - 1) // BLOCK + 1)


def _runs(blocks: set[int]):
    """Sorted blocks as runs of consecutive numbers."""
    for _, run in itertools.groupby(enumerate(sorted(blocks)), key=lambda item: item[1] - item[0]):
        numbers = [block for _, block in run]
        yield numbers[0], numbers[-1]


def _keys_between(keys: dict[str, int], low: int, high: int) -> list[tuple[str, int]]:
    """Keys with positions in low..high, oldest first, read from the nearer end of `keys`
    (positions increase along the dict), so a block at either end costs its own size."""
    if not keys:
        return []
    first, last = next(iter(keys.values())), next(reversed(keys.values()))
    if low <= first and last <= high:  # all of them (a log hashed for the first time)
        return list(keys.items())
    out = []
    if low - first <= last - high:
        for key, position in keys.items():
            if position > high:
                break
            if position >= low:
                out.append((key, position))
        return out
    for key, position in reversed(keys.items()):
        if position < low:
            break
        if position <= high:
            out.append((key, position))
    out.reverse()
    return out


class _Tree:
    """The leaves by key, their groups and the groups' hashes: what `digest` keeps between
    calls so that it hashes again only what changed."""

    def __init__(self):
        self.leaves: dict[bytes, bytes] = {}  # key (tag || key) -> leaf
        self.groups: list[set[bytes]] = [set() for _ in range(GROUPS)]
        self.hashes = bytearray(GROUPS * 32)  # every group empty
        self.stale_groups: set[int] = set()
        # log -> (beginning, ending, position of its oldest key, of its newest; 0: no keys)
        # as last hashed: its changes since lie at its ends.
        self.log_windows: dict[str, tuple[int, int, int, int]] = {}

    @classmethod
    def of(cls, state: State) -> _Tree:
        """Every leaf, from scratch (the loops are the per-part cost at 100,000 tasks)."""
        tree = cls()
        leaves, sha256 = tree.leaves, hashlib.sha256
        cluster = state.cluster
        leaves[b"C"] = sha256(b"C" + _without(cluster, _CLUSTER_PARTS)).digest()
        for framework_id, framework in cluster.frameworks.items():
            key = _key(b"F", framework_id)
            leaves[key] = sha256(key + _without(framework, _FRAMEWORK_PARTS)).digest()
            prefix, tasks = _key(b"T", framework_id), framework.tasks
            for task_id in tasks:
                data = task_id.encode()
                key = prefix + _varint(len(data)) + data
                leaves[key] = sha256(key + tasks[task_id].SerializeToString(deterministic=True)).digest()
        for tag, entities in ((b"A", cluster.agents), (b"O", cluster.offers), (b"R", cluster.roles)):
            for entity_id in entities:
                key = _key(tag, entity_id)
                leaves[key] = sha256(key + entities[entity_id].SerializeToString(deterministic=True)).digest()
        for (framework_id, agent_id), run in itertools.groupby(cluster.filters,
                                                               key=lambda f: (f.framework_id, f.agent_id)):
            key = _key(b"I", framework_id, agent_id)
            leaves[key] = sha256(key + _serialize(state_pb2.Cluster(filters=run))).digest()
        groups = tree.groups
        for leaf in leaves.values():
            groups[_group(leaf)].add(leaf)
        tree.stale_groups.update(range(GROUPS))
        for name in state.logs:
            tree.update_log(state, name)
        return tree

    def put(self, key: bytes, value: bytes | None) -> None:
        """Set the part's leaf from its value (None: the part is gone)."""
        leaf = None if value is None else hashlib.sha256(key + value).digest()
        old = self.leaves.get(key)
        if old == leaf:
            return
        if old is not None:
            group = _group(old)
            self.groups[group].discard(old)
            self.stale_groups.add(group)
        if leaf is None:
            del self.leaves[key]
            return
        self.leaves[key] = leaf
        group = _group(leaf)
        self.groups[group].add(leaf)
        self.stale_groups.add(group)

    def root(self, position: int) -> str:
        sha256, groups, hashes = hashlib.sha256, self.groups, self.hashes
        for group in self.stale_groups:
            leaves = groups[group]
            hashes[group * 32:group * 32 + 32] = sha256(b"".join(sorted(leaves))).digest() if leaves else _EMPTY_GROUP
        self.stale_groups.clear()
        h = sha256(position.to_bytes(8, "big"))
        h.update(hashes)
        return h.hexdigest()

    def update(self, state: State, changes) -> None:
        cluster = state.cluster
        if changes.cluster:
            self.put(b"C", _without(cluster, _CLUSTER_PARTS))
        frameworks = cluster.frameworks
        for framework_id in changes.frameworks:
            framework = frameworks.get(framework_id)
            self.put(_key(b"F", framework_id), None if framework is None else _without(framework, _FRAMEWORK_PARTS))
        for framework_id, task_id in changes.tasks:
            framework = frameworks.get(framework_id)
            task = None if framework is None else framework.tasks.get(task_id)
            self.put(_key(b"T", framework_id, task_id), None if task is None else _serialize(task))
        for tag, entities, keys in ((b"A", cluster.agents, changes.agents), (b"O", cluster.offers, changes.offers),
                                    (b"R", cluster.roles, changes.roles)):
            for key in keys:
                entity = entities.get(key)
                self.put(_key(tag, key), None if entity is None else _serialize(entity))
        for framework_id, agent_id in changes.filters:
            run = _filters_of(cluster.filters, framework_id, agent_id)
            self.put(_key(b"I", framework_id, agent_id), _serialize(state_pb2.Cluster(filters=run)) if run else None)
        for name in changes.logs:
            self.update_log(state, name)

    def update_log(self, state: State, name: str) -> None:
        """The log's leaves: L, and the P and K blocks at its ends that changed since its
        window was recorded (all of them for a log not hashed before)."""
        log = state.logs.get(name)
        old = self.log_windows.get(name)
        if log is None:  # logs are never removed; for completeness
            if old is not None:
                beginning, ending, oldest, newest = self.log_windows.pop(name)
                self.put(_key(b"L", name), None)
                for block in _blocks(beginning, ending):
                    self.put(_key(b"P", name, str(block)), None)
                for block in _blocks(oldest, newest):
                    self.put(_key(b"K", name, str(block)), None)
            return
        keys = log.recent_keys
        beginning, ending = log.beginning, log.ending
        oldest = next(iter(keys.values())) if keys else 0
        newest = next(reversed(keys.values())) if keys else 0
        window = (beginning, ending, oldest, newest)
        if window == old:
            return
        self.log_windows[name] = window
        self.put(_key(b"L", name), _serialize(state_pb2.NamedLog(name=name, beginning=beginning, ending=ending)))
        if old is None:
            positions, key_blocks = set(_blocks(beginning, ending)), set(_blocks(oldest, newest))
        else:
            # Entries go at the end and leave at the front: what changed is what was
            # truncated or evicted since, and what was appended since.
            was_beginning, was_ending, was_oldest, was_newest = old
            positions = set(_blocks(was_beginning, min(was_ending, beginning - 1)))
            positions.update(_blocks(max(was_ending + 1, beginning), ending))
            key_blocks = set(_blocks(was_oldest, min(was_newest, oldest - 1) if keys else was_newest))
            key_blocks.update(_blocks(max(was_newest + 1, oldest), newest))
        for block in positions:
            first, last = max(block * BLOCK + 1, beginning), min(block * BLOCK + BLOCK, ending)
            value = None
            if first <= last:
                value = _serialize(state_pb2.NamedLog(
                    log_positions=log.log_positions[first - beginning:last - beginning + 1]))
            self.put(_key(b"P", name, str(block)), value)
        for low, high in _runs(key_blocks):
            found = _keys_between(keys, low * BLOCK + 1, high * BLOCK + BLOCK)
            starts = [position for _, position in found]  # increasing: split by bisection
            for block in range(low, high + 1):
                entries = found[bisect_left(starts, block * BLOCK + 1):bisect_right(starts, block * BLOCK + BLOCK)]
                value = None
                if entries:
                    # Added to the message one by one: twice as fast as building an
                    # IdempotencyKey each and handing the list over (a copy of each).
                    message = state_pb2.NamedLog()
                    add = message.recent_keys.add
                    for key, position in entries:
                        add(key=key, position=position)
                    value = _serialize(message)
                self.put(_key(b"K", name, str(block)), value)
