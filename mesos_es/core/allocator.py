"""The allocator: which framework is offered which agent's resources in one allocation cycle.

A pure function of its arguments, as Mesos' hierarchical allocator would decide it: no clock
(`now_ms` is an argument), no randomness, no I/O, and no dependence on the order of the
inputs or on hash order (agents, frameworks and roles are visited in id order; ties in shares
are broken by id). The same arguments always give the same list of allocations, so the
leader can record the result as an `OffersMade` event and a replay or an auditor can
recompute it.

One cycle (`allocate`), agents in `agent_id` order:

1. **Quota stage.** Roles below their quota guarantee, lowest weighted dominant share first,
   are offered the resources they are guaranteed, up to the unmet guarantee (fine-grained),
   plus their reservations and, beyond headroom, resources they have no guarantee for.
2. **Fair-share stage.** Every role, lowest weighted dominant share first (weighted DRF),
   and within a role every framework, lowest dominant share first (DRF), is offered all
   that is left of the agent that it may use (coarse-grained, one offer per framework and
   agent), except what the quota limit of the role or the headroom held for other roles'
   unmet guarantees keep back.

Shares are dominant shares over the cluster total (the sum of the agents' `total`), counting
everything a role or framework holds (tasks and outstanding offers, reserved and revocable).
Quota counts non-revocable scalars only: a role's consumption is its unreserved allocation
plus every reservation made to it, allocated or not. Hierarchical roles are flat here, except
that resources reserved to `a` may be offered to `a/b`; quota and weights are per role name.

`revocations` is the companion policy: when roles with unmet guarantees want more than the
cluster has free, it names outstanding offers to rescind, then tasks to kill (with a grace
period, by the master), of roles above their guarantees. docs/allocation.md explains both.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import add, attrgetter, mul
from typing import NamedTuple

from mesos_es.core.resources import EMPTY, Kind, Resources, parse_text

__all__ = [
    "DEFAULT_MIN_ALLOCATABLE", "AgentSlot", "Allocation", "Filter", "FrameworkDemand", "Revocation",
    "RolePolicy", "RunningTask", "allocate", "quota_consumption", "revocations",
]


# -- inputs and outputs -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AgentSlot:
    """One agent. `available` is neither used by tasks nor offered; `total` is all it has."""

    agent_id: str
    available: Resources
    total: Resources


@dataclass(frozen=True, slots=True)
class FrameworkDemand:
    """One framework, as the allocator sees it.

    `allocated` maps a role to what the framework holds in it: its tasks' resources plus its
    outstanding offers. An inactive framework (disconnected, in failover) is offered nothing,
    but what it holds still counts toward its roles' shares and quota.
    """

    framework_id: str
    roles: tuple[str, ...]
    suppressed_roles: frozenset[str] = frozenset()
    revocable_ok: bool = False  # the REVOCABLE_RESOURCES capability
    allocated: Mapping[str, Resources] = field(default_factory=dict)
    active: bool = True


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """Weight and quota of one role. Roles absent from the policy map get the defaults.

    `guarantee` and `limit` are scalar quantities compared by resource name (cpus, mem, ...),
    whatever the reservations or revocability of their entries.
    """

    weight: float = 1.0
    guarantee: Resources = EMPTY
    limit: Resources | None = None  # None: unlimited; a name absent from it is unlimited

    def __post_init__(self):
        if not self.weight > 0:
            raise ValueError(f"role weight must be positive, not {self.weight!r}")


@dataclass(frozen=True, slots=True)
class Filter:
    """A refusal from DECLINE or ACCEPT (`refuse_seconds`), active while `now_ms < expires_ms`.

    It filters an offer to `framework_id` on `agent_id` (in `role`, or any role if None) that
    is contained in `resources` (any offer if None).
    """

    framework_id: str
    agent_id: str
    expires_ms: int
    resources: Resources | None = None
    role: str | None = None


class Allocation(NamedTuple):
    """Resources of one agent to offer to one framework, allocated to one of its roles.

    Immutable like the other types, but a NamedTuple: a cycle makes one per agent, and a
    tuple is made in less than half the time of a frozen dataclass."""

    framework_id: str
    agent_id: str
    role: str
    resources: Resources


# Mesos' default --min_allocatable_resources: an offer is worth making when it has at least
# 0.01 cpus or at least 32 MB of memory.
DEFAULT_MIN_ALLOCATABLE: tuple[Resources, ...] = (parse_text("cpus:0.01"), parse_text("mem:32"))

_DEFAULT_POLICY = RolePolicy()
_NEVER = float("inf")
_FAST_PATH = True  # tests turn it off to check that the general path decides the same
_new_tuple = tuple.__new__


# -- helpers ----------------------------------------------------------------------------------

def _add_scalars(into: dict[str, int], resources: Resources) -> None:
    for kind, value in resources.items():
        if value.__class__ is int:
            into[kind.name] = into.get(kind.name, 0) + value


def _quantities(resources: Resources | None) -> dict[str, int] | None:
    """Scalar quantities by name, in milli-units (None stays None)."""
    if resources is None:
        return None
    out: dict[str, int] = {}
    _add_scalars(out, resources)
    return out


def _may_use(reservation_role: str, role: str) -> bool:
    return reservation_role == role or role.startswith(reservation_role + "/")


def _share(alloc: dict[str, int], inverse_total: dict[str, float]) -> float:
    """Dominant share: the largest fraction of the cluster total held of any resource."""
    best = 0.0
    for name, amount in alloc.items():
        s = amount * inverse_total.get(name, 0.0)
        if s > best:
            best = s
    return best


def _big_enough(minimums: list[tuple[tuple[str, int], ...]], sums: dict[str, int]) -> bool:
    """Whether scalars `sums` reach one of the `minimums` (or, with none, are not empty)."""
    if not minimums:
        return bool(sums)
    for minimum in minimums:
        for name, amount in minimum:
            if sums.get(name, 0) < amount:
                break
        else:
            return True
    return False


def _dominant_share(inverse: list[float]):
    """A function of an allocation vector: its dominant share, the largest fraction of the
    cluster total it holds of any resource (`inverse[i]` is 1 / the total of resource i).
    Spelled out for the usual few resources: twice as fast as max(map(mul, ...))."""
    if len(inverse) == 3:
        i0, i1, i2 = inverse
        return lambda a: max(a[0] * i0, a[1] * i1, a[2] * i2)
    if len(inverse) == 4:
        i0, i1, i2, i3 = inverse
        return lambda a: max(a[0] * i0, a[1] * i1, a[2] * i2, a[3] * i3)
    if len(inverse) == 2:
        i0, i1 = inverse
        return lambda a: max(a[0] * i0, a[1] * i1)
    if len(inverse) == 1:
        i0 = inverse[0]
        return lambda a: a[0] * i0
    if not inverse:
        return lambda a: 0.0
    return lambda a: max(map(mul, a, inverse))


def _move(order: list, old, new) -> None:
    """Replace `old` by `new` (not smaller) in the sorted list `order`, keeping it sorted."""
    i = bisect_left(order, old)
    if i + 1 == len(order) or new <= order[i + 1]:
        order[i] = new
    else:
        del order[i]
        insort(order, new)


def _by_id(items: Iterable, key: str, what: str) -> list:
    """`items` sorted by their `key` attribute; ValueError if two have the same."""
    get = attrgetter(key)
    out = sorted(items, key=get)
    ids = list(map(get, out))
    if len(set(ids)) != len(ids):
        duplicate = next(a for a, b in zip(ids, ids[1:]) if a == b)
        raise ValueError(f"duplicate {what} {duplicate!r}")
    return out


def quota_consumption(agents: Sequence[AgentSlot], frameworks: Sequence[FrameworkDemand]) -> dict[str, dict[str, int]]:
    """What counts toward each role's quota, in milli-units by resource name: the role's
    unreserved non-revocable allocation plus every non-revocable reservation made to it
    (allocated to any role, or unallocated on an agent). Revocable resources never count."""
    consumed: dict[str, dict[str, int]] = {}

    def add(role: str, name: str, value: int) -> None:
        d = consumed.setdefault(role, {})
        d[name] = d.get(name, 0) + value

    for fw in frameworks:
        for role, held in fw.allocated.items():
            for kind, value in held.items():
                if value.__class__ is int and not kind.revocable:
                    add(kind.role if kind.reservations else role, kind.name, value)
    for agent in agents:
        for kind, value in agent.available.items():
            if kind.reservations and value.__class__ is int and not kind.revocable:
                add(kind.role, kind.name, value)
    return consumed


class _Agent:
    """An agent's available resources, split by how they may be offered, and consumed as
    offers are made. Built only for agents the fast path cannot handle in one whole offer."""

    __slots__ = ("id", "available", "scalars", "scalars_left", "others", "reserved", "revocable", "whole", "offers")

    def __init__(self, slot: AgentSlot):
        self.id = slot.agent_id
        self.available = slot.available
        scalars: list[list] = []  # [name, kind, amount]: unreserved, non-revocable
        others: list[tuple[Kind, object]] = []  # unreserved non-revocable ranges and sets
        reserved: list[tuple[Kind, object, str]] = []  # non-revocable, with the reservation's role
        revocable: list[tuple[Kind, object, str | None]] = []  # with the reservation's role
        for kind, value in slot.available.items():
            if kind.revocable:
                revocable.append((kind, value, kind.role if kind.reservations else None))
            elif kind.reservations:
                reserved.append((kind, value, kind.role))
            elif value.__class__ is int:
                scalars.append([kind.name, kind, value])
            else:
                others.append((kind, value))
        self.scalars = scalars
        self.scalars_left = bool(scalars)
        self.others = others
        self.reserved = reserved
        self.revocable = revocable
        self.whole = True  # nothing offered yet: an offer of everything reuses `available`
        self.offers: dict[str, list] | None = None  # framework id -> [role, output record, stage]

    def exhausted(self) -> bool:
        return not (self.scalars_left or self.reserved or self.revocable)


class _Role:
    __slots__ = ("name", "weight", "alloc", "share", "key", "guaranteed", "unmet", "limit_room", "limited",
                 "frameworks", "order")

    def __init__(self, name: str, policy: RolePolicy, names: int):
        self.name = name
        self.weight = policy.weight
        self.alloc = [0] * names  # everything its frameworks hold, by resource index (shares)
        self.share = 0.0  # weighted dominant share
        self.key = (0.0, name, self)  # its place in the DRF order of roles
        self.guaranteed = _quantities(policy.guarantee) or {}
        self.unmet: dict[str, int] = {}  # guarantee not yet consumed, by name (positive entries)
        self.limit_room: dict[str, int] | None = None  # limit minus consumption, by name
        self.limited: list[tuple[int, str]] = []  # (resource index, name) of limit_room's names
        self.frameworks: dict[str, _Framework] = {}  # those that may be offered resources in it
        self.order: list[tuple] = []  # the DRF order: (share, framework id, _Framework)


class _Framework:
    __slots__ = ("id", "revocable_ok", "alloc", "share", "key")

    def __init__(self, framework_id: str, revocable_ok: bool, names: int):
        self.id = framework_id
        self.revocable_ok = revocable_ok
        self.alloc = [0] * names  # what it holds in one role, by resource index
        self.share = 0.0
        self.key = (0.0, framework_id, self)  # its place in the DRF order of its role's frameworks


# -- the allocation cycle ---------------------------------------------------------------------

def allocate(
    agents: Iterable[AgentSlot],
    frameworks: Iterable[FrameworkDemand],
    roles: Mapping[str, RolePolicy],
    filters: Iterable[Filter],
    outstanding: frozenset[tuple[str, str]] | set[tuple[str, str]],
    now_ms: int,
    *,
    min_allocatable: Sequence[Resources] = DEFAULT_MIN_ALLOCATABLE,
) -> list[Allocation]:
    """One allocation cycle. Returns the offers to make, at most one per (framework, agent)
    and none for a pair in `outstanding`, in the order they were decided (quota stage first,
    then agents in id order). See the module docstring and docs/allocation.md.

    `min_allocatable`: an offer is made only if its scalars reach one of these quantities
    (Mesos' --min_allocatable_resources); with an empty sequence, any offer with resources
    is. Raises ValueError on duplicate agent or framework ids.
    """
    agent_slots = _by_id(agents, "agent_id", "agent")
    demands = _by_id(frameworks, "framework_id", "framework")
    minimums = [tuple(sorted(_quantities(m).items())) for m in min_allocatable]
    # The usual minimums each name one resource (cpus or mem): then a dict checks them.
    single_minimum = {m[0][0]: m[0][1] for m in minimums} if all(len(m) == 1 for m in minimums) else None

    # The cluster total, for shares, which are computed on vectors: resource i is names[i].
    total: dict[str, int] = {}
    for slot in agent_slots:
        for kind, value in slot.total.items():
            if value.__class__ is int:
                name = kind.name
                total[name] = total.get(name, 0) + value
    names = sorted(name for name, amount in total.items() if amount > 0)
    index = {name: i for i, name in enumerate(names)}
    inverse = [1.0 / total[name] for name in names]
    width = len(names)

    # One pass over what the agents have available. For each agent k, `flat[k * width:]`
    # holds its unreserved non-revocable scalars by resource index (one flat list of ints:
    # no object per agent, so no garbage to collect), and `shapes[k]` says what the
    # fair-share stage does with it: 0 nothing (nothing worth offering), 1 the fast path
    # (only unreserved non-revocable resources), 2 the split or general path. If some role
    # has quota, the unallocated reservations (they count toward quota) are summed too.
    quota = any(p.guarantee or p.limit is not None for p in roles.values())
    reserved_free: dict[str, dict[str, int]] = {}  # by role
    free: dict[str, int] = {}
    shapes: list[int] = []
    flat: list[int] = []
    zeros = [0] * width
    check_minimum = bool(single_minimum)  # the usual minimums, checked in the loop
    for slot in agent_slots:
        base = len(flat)
        flat += zeros
        shape = 1
        big = not check_minimum
        scalars = False
        for kind, value in slot.available.items():
            if value.__class__ is int:
                scalars = True
                name = kind.name
                if kind.reservations or kind.revocable:
                    shape = 2
                    if quota and not kind.revocable:
                        d = reserved_free.setdefault(kind.role, {})
                        d[name] = d.get(name, 0) + value
                else:
                    i = index.get(name)
                    if i is None:  # not in the cluster's total: let the general path see
                        shape = 2
                    else:
                        flat[base + i] = value
                if not big and value >= single_minimum.get(name, _NEVER):
                    big = True
            elif kind.reservations or kind.revocable:
                shape = 2
        if not scalars:
            shape = 0
        elif single_minimum is None:
            sums: dict[str, int] = {}
            _add_scalars(sums, slot.available)
            big = _big_enough(minimums, sums)
        if not big:  # then no part of it is either
            shape = 0
        shapes.append(shape)

    share_of = _dominant_share(inverse)

    # Roles and frameworks, and what they hold.
    role_state: dict[str, _Role] = {}

    def role_of(name: str) -> _Role:
        r = role_state.get(name)
        if r is None:
            r = role_state[name] = _Role(name, roles.get(name, _DEFAULT_POLICY), width)
        return r

    for name in sorted(roles):
        role_of(name)
    consumed: dict[str, dict[str, int]] = {name: dict(amounts) for name, amounts in reserved_free.items()}
    for demand in demands:
        fid = demand.framework_id
        held_by_role: dict[str, _Framework] = {}
        for role_name in sorted(demand.allocated):
            r = role_of(role_name)
            fw = held_by_role[role_name] = _Framework(fid, demand.revocable_ok, width)
            for kind, value in demand.allocated[role_name].items():
                if value.__class__ is not int:
                    continue
                name = kind.name
                i = index.get(name)
                if i is not None:
                    r.alloc[i] += value
                    fw.alloc[i] += value
                if not kind.revocable:
                    c = consumed.setdefault(kind.role if kind.reservations else role_name, {})
                    c[name] = c.get(name, 0) + value
        if not demand.active:
            continue
        for role_name in sorted(set(demand.roles) - demand.suppressed_roles):
            fw = held_by_role.get(role_name) or _Framework(fid, demand.revocable_ok, width)
            role_of(role_name).frameworks[fid] = fw

    # Quota: unmet guarantees, the headroom they need, and the room left under limits.
    required: dict[str, int] = {}
    for r in role_state.values():
        mine = consumed.get(r.name, {})
        for name, amount in r.guaranteed.items():
            missing = amount - mine.get(name, 0)
            if missing > 0:
                r.unmet[name] = missing
                required[name] = required.get(name, 0) + missing
        limit = _quantities(roles.get(r.name, _DEFAULT_POLICY).limit)
        if limit is not None:
            r.limit_room = {name: amount - mine.get(name, 0) for name, amount in limit.items()}
            r.limited = [(index[name], name) for name in sorted(limit) if name in index]
    # surplus[name]: free unreserved resources beyond the headroom still required, for the
    # names that need headroom. A name leaves it when no guarantee misses it any more. (The
    # free unreserved resources are the columns of `flat`.)
    if required:
        free = {name: sum(flat[i::width]) for i, name in enumerate(names)}
    surplus = {name: free.get(name, 0) - need for name, need in required.items()}

    for r in role_state.values():
        r.share = share_of(r.alloc) / r.weight
        r.key = (r.share, r.name, r)
        for fw in r.frameworks.values():
            fw.share = share_of(fw.alloc)
            fw.key = (fw.share, fw.id, fw)
        r.order = sorted(fw.key for fw in r.frameworks.values())
    # The DRF orders hold (share, id, object) keys: ids are unique, so the objects are never
    # compared, and the loops get them without a lookup.
    role_order = sorted(r.key for r in role_state.values() if r.frameworks)
    quota_order = sorted(r.key for r in role_state.values() if r.frameworks and r.unmet)

    filtered: dict[str, list[Filter]] = {}  # filters in force, by agent
    for f in filters:
        if f.expires_ms > now_ms:
            filtered.setdefault(f.agent_id, []).append(f)
    blocked = outstanding
    touched: dict[str, _Agent] = {}  # agents the general path has looked at
    out: list = []  # the result: Allocations, and placeholders for the general path's offers
    records: list[list] = []  # [position in out, framework id, agent id, role, Resources or None, items]

    def reposition(r: _Role, fw: _Framework) -> None:
        """After `fw` in `r` got more: new shares, and their places in the DRF orders (shares
        only grow here, so an entry moves toward the end, usually not at all)."""
        if width:
            fw.share = share_of(fw.alloc)
            r.share = share_of(r.alloc) / r.weight
        old, new = fw.key, (fw.share, fw.id, fw)
        fw.key = new
        order = r.order
        if len(order) == 1:
            order[0] = new
        else:
            _move(order, old, new)
        old, new = r.key, (r.share, r.name, r)
        r.key = new
        _move(role_order, old, new)
        if quota_order:
            reorder_quota(old, new, r)

    def reorder_quota(old, new, r: _Role) -> None:
        i = bisect_left(quota_order, old)
        if i < len(quota_order) and quota_order[i] == old:
            del quota_order[i]
            if r.unmet:
                insort(quota_order, new)

    def big_enough(sums: dict[str, int]) -> bool:
        return _big_enough(minimums, sums)

    def refused(agent_filters: list[Filter], role: str, fid: str, candidate) -> bool:
        """Whether a filter in force refuses this offer (`candidate`: Resources, or a
        callable building them, called only if a filter needs to look)."""
        for f in agent_filters:
            if f.framework_id == fid and (f.role is None or f.role == role):
                if f.resources is None:
                    return True
                if callable(candidate):
                    candidate = candidate()
                if f.resources.contains(candidate):
                    return True
        return False

    # -- the general path ----------------------------------------------------------------
    def offer(ag: _Agent, r: _Role, fw: _Framework, stage: int):
        """What `fw` would be offered of `ag` in role `r` now: (items, grants, whole) or None.
        `grants` are (scalar entry, amount) of unreserved scalars; `whole` says the offer is
        all of the agent's `available`."""
        role = r.name
        items: list[tuple[Kind, object]] = []
        grants: list[tuple[list, int]] = []
        whole = ag.whole
        guaranteed_part = False
        unmet = r.unmet
        limit_room = r.limit_room
        for entry in ag.scalars:
            amount = entry[2]
            if not amount:
                continue
            name = entry[0]
            take = amount
            if stage == 1:
                if name in r.guaranteed:  # up to the unmet guarantee
                    room = unmet.get(name, 0)
                    if room > 0:
                        guaranteed_part = True
                elif name in surplus:  # beyond the headroom others need
                    room = surplus[name]
                else:
                    room = amount
                if room < take:
                    take = room
            elif name in surplus:  # own unmet guarantee, plus beyond the headroom
                room = unmet.get(name, 0) + max(surplus[name], 0)
                if room < take:
                    take = room
            if limit_room is not None and name in limit_room:
                room = limit_room[name]
                if room < take:
                    take = room
            if take > 0:
                grants.append((entry, take))
                items.append((entry[1], take))
                if take != amount:
                    whole = False
            else:
                whole = False
        for kind, value, reservation_role in ag.reserved:
            if _may_use(reservation_role, role):
                items.append((kind, value))
                guaranteed_part = True
            else:
                whole = False
        if stage == 1:
            if not guaranteed_part:
                return None
            if ag.revocable:
                whole = False
        elif ag.revocable:
            if fw.revocable_ok:
                for kind, value, reservation_role in ag.revocable:
                    if reservation_role is None or _may_use(reservation_role, role):
                        items.append((kind, value))
                    else:
                        whole = False
            else:
                whole = False
        if not items:
            return None
        sums: dict[str, int] = {}
        for kind, value in items:
            if value.__class__ is int:
                sums[kind.name] = sums.get(kind.name, 0) + value
        if not big_enough(sums):
            return None
        items.extend(ag.others)
        return items, grants, whole, sums

    def charge(r: _Role, name: str, take: int) -> None:
        """Book `take` of unreserved non-revocable `name` given to role `r`: it meets the
        role's unmet guarantee first, and uses up surplus and the room under its limit."""
        if name in surplus:
            met = r.unmet.get(name, 0)
            if met:
                if take < met:
                    met = take
                r.unmet[name] -= met
                if not r.unmet[name]:
                    del r.unmet[name]
                required[name] -= met
            surplus[name] -= take - met
            if not required[name]:
                del surplus[name]
        room = r.limit_room
        if room is not None and name in room:
            room[name] -= take

    def fits(r: _Role, available: Resources) -> bool:
        """Whether role `r` may take all these unreserved non-revocable scalars in stage 2."""
        room = r.limit_room
        for kind, value in available.items():
            if value.__class__ is int and not kind.reservations and not kind.revocable:
                name = kind.name
                if name in surplus and value > r.unmet.get(name, 0) + max(surplus[name], 0):
                    return False
                if room is not None and name in room and value > room[name]:
                    return False
        return True

    def commit(ag: _Agent, r: _Role, fw: _Framework, stage: int, items, grants, whole, sums) -> None:
        capped = bool(surplus) or r.limit_room is not None
        for entry, take in grants:  # the agent gives up what it offers
            entry[2] -= take
            if capped:
                charge(r, entry[0], take)
        if grants:
            left = False
            for entry in ag.scalars:
                if entry[2]:
                    left = True
                    break
            ag.scalars_left = left
        if ag.reserved:
            ag.reserved = [x for x in ag.reserved if not _may_use(x[2], r.name)]
        if stage == 2 and fw.revocable_ok and ag.revocable:
            ag.revocable = [x for x in ag.revocable if not (x[2] is None or _may_use(x[2], r.name))]
        ag.others = []
        ag.whole = False
        ra, fa = r.alloc, fw.alloc
        for name, value in sums.items():
            i = index.get(name)
            if i is not None:
                ra[i] += value
                fa[i] += value
        reposition(r, fw)
        if ag.offers is None:
            ag.offers = {}
        previous = ag.offers.get(fw.id)
        if previous is None:
            record = [len(out), fw.id, ag.id, r.name, ag.available if whole else None, items]
            ag.offers[fw.id] = [r.name, record, stage]
            out.append(None)
            records.append(record)
        else:  # the fair-share stage adds to the quota stage's offer, in the same role
            previous[2] = stage
            previous[1][4] = None
            previous[1][5] = previous[1][5] + items

    def eligible(ag: _Agent, r: _Role, fid: str, stage: int) -> bool:
        if ag.offers is not None:
            previous = ag.offers.get(fid)
            if previous is not None and not (stage == 2 and previous[2] == 1 and previous[0] == r.name):
                return False
        return not (blocked and (fid, ag.id) in blocked)

    def general(slot: AgentSlot, stage: int, order: list[tuple[float, str]]) -> None:
        """Offer what is left of one agent to the roles, and their frameworks, in the DRF
        order they had when the agent came up (Mesos sorts once per agent too): the first
        gets all it may have, the next what is left (e.g. what a limit held back), and so on."""
        ag = touched.get(slot.agent_id)
        if ag is None:
            ag = touched[slot.agent_id] = _Agent(slot)
        agent_filters = filtered.get(ag.id)
        for _, role_name, r in order[:]:
            for _, fid, fw in r.order[:]:
                if not (ag.scalars_left or ag.reserved or (stage == 2 and ag.revocable and fw.revocable_ok)):
                    continue  # nothing left that it could have
                if not eligible(ag, r, fid, stage):
                    continue
                found = offer(ag, r, fw, stage)
                if found is None:
                    continue
                if agent_filters is not None and refused(
                        agent_filters, role_name, fid, lambda items=found[0]: _merge(items)):
                    continue
                commit(ag, r, fw, stage, *found)
                if ag.exhausted():
                    return

    def split(slot: AgentSlot) -> bool:
        """Stage 2 for an untouched agent with reservations or revocable resources: in the
        DRF order of the agent (as in `general`), each framework is offered all the parts
        of the agent it may use: the unreserved resources (to the first), the reservations
        of its role, the revocable resources if it accepts them. Decides exactly like the
        general path, faster. Returns False, having done nothing, if headroom or a limit
        caps the unreserved part: then the general path must decide."""
        aid = slot.agent_id
        available = slot.available
        # Kinds in lists, not dicts: a Kind hashes in Python, slowly. An offer is made by
        # copying the agent's dict (which keeps the hashes) and deleting what it does not get.
        unreserved: list[Kind] = []  # scalars
        u_sums: dict[str, int] = {}  # their amounts, by name
        others: list[Kind] = []  # unreserved ranges and sets: they go with the first offer
        parts: dict[tuple[str | None, bool], tuple[list[Kind], dict[str, int]]] = {}  # (reserved to, revocable)
        for kind, value in available.items():
            if kind.revocable or kind.reservations:
                key = (kind.role if kind.reservations else None, kind.revocable)
                part = parts.get(key)
                if part is None:
                    part = parts[key] = ([], {})
                part[0].append(kind)
                if value.__class__ is int:
                    part[1][kind.name] = part[1].get(kind.name, 0) + value
            elif value.__class__ is int:
                unreserved.append(kind)
                u_sums[kind.name] = value
            else:
                others.append(kind)
        u_big = _big_enough(minimums, u_sums)  # then so is any offer with the unreserved part
        agent_filters = filtered.get(aid)
        offered: set[str] = set()
        gone: list[Kind] = []  # offered already
        reservations = any(key[0] is not None for key in parts)
        usable = list(parts)  # the parts a role may use (all, if none is reserved)
        steady = [key for key in usable if not key[1]]  # those of them not revocable
        for _, role_name, r in role_order[:]:
            if reservations:
                usable = [key for key in parts if key[0] is None or _may_use(key[0], role_name)]
                steady = [key for key in usable if not key[1]]
            if not unreserved and not usable:
                continue
            for _, fid, fw in r.order[:]:
                keys = usable if fw.revocable_ok else steady
                if not unreserved and not keys:
                    continue
                if fid in offered or (blocked and (fid, aid) in blocked):
                    continue
                capped = bool(unreserved) and (bool(surplus) or r.limit_room is not None)
                if capped and not fits(r, available):
                    return False  # nothing is offered yet: any offer takes the unreserved part
                if not (unreserved and u_big):
                    sums = dict(u_sums)
                    for key in keys:
                        for name, value in parts[key][1].items():
                            sums[name] = sums.get(name, 0) + value
                    if not _big_enough(minimums, sums):
                        continue
                if not gone and len(keys) == len(parts):
                    resources = available  # all of it
                else:
                    items = available.to_dict()
                    for kind in gone:
                        del items[kind]
                    for key, part in parts.items():
                        if key not in keys:
                            for kind in part[0]:
                                del items[kind]
                    resources = Resources.from_canonical(items)
                if agent_filters is not None and refused(agent_filters, role_name, fid, resources):
                    continue
                ra, fa = r.alloc, fw.alloc
                if unreserved:
                    for name, value in u_sums.items():
                        if capped:
                            charge(r, name, value)
                        i = index.get(name)
                        if i is not None:
                            ra[i] += value
                            fa[i] += value
                for key in keys:
                    for name, value in parts[key][1].items():
                        i = index.get(name)
                        if i is not None:
                            ra[i] += value
                            fa[i] += value
                reposition(r, fw)
                out.append(_new_tuple(Allocation, (fid, aid, role_name, resources)))
                offered.add(fid)
                gone += unreserved
                gone += others
                unreserved = []
                u_sums = {}
                others = []
                for key in keys:
                    gone += parts.pop(key)[0]
                if not parts:
                    return True
                usable = [key for key in usable if key in parts]
                steady = [key for key in steady if key in parts]
        return True

    # -- stage 1: quota guarantees ---------------------------------------------------------
    for slot in agent_slots:
        if not quota_order:
            break
        general(slot, 1, quota_order)

    # -- stage 2: weighted DRF ---------------------------------------------------------------
    # The fast path: an agent with only unreserved non-revocable resources goes whole to the
    # first eligible framework, unless headroom or the role's limit hold some of it back
    # (then the general path makes the smaller offer). Other agents take the split path, or
    # the general one if a cap binds.
    fast = _FAST_PATH
    for k, slot in enumerate(agent_slots):
        aid = slot.agent_id
        if not fast or aid in touched:
            general(slot, 2, role_order)
            continue
        shape = shapes[k]
        if shape != 1:
            if shape == 2 and not split(slot):
                general(slot, 2, role_order)
            continue
        available = slot.available
        vec = flat[k * width:(k + 1) * width]
        agent_filters = filtered.get(aid)
        for _, role_name, r in role_order:
            room = r.limit_room
            if surplus:
                if not fits(r, available):
                    general(slot, 2, role_order)
                    break
            elif room is not None:
                over = False
                for i, name in r.limited:
                    if vec[i] > room[name]:
                        over = True
                        break
                if over:
                    general(slot, 2, role_order)
                    break
            for _, fid, fw in r.order:
                if blocked and (fid, aid) in blocked:
                    continue
                if agent_filters is not None and refused(agent_filters, role_name, fid, available):
                    continue
                if surplus:
                    for kind, value in available.items():
                        if value.__class__ is int:
                            charge(r, kind.name, value)
                elif room is not None:
                    for i, name in r.limited:
                        room[name] -= vec[i]
                # reposition(r, fw), inlined: the new shares and places in the DRF orders
                ra = r.alloc = list(map(add, r.alloc, vec))
                fa = fw.alloc = list(map(add, fw.alloc, vec))
                fw.share = share_of(fa)
                r.share = share_of(ra) / r.weight
                new = (fw.share, fid, fw)
                order = r.order
                if len(order) == 1:
                    order[0] = new
                else:
                    i = bisect_left(order, fw.key)  # _move, inlined
                    if i + 1 == len(order) or new <= order[i + 1]:
                        order[i] = new
                    else:
                        del order[i]
                        insort(order, new)
                fw.key = new
                new = (r.share, role_name, r)
                i = bisect_left(role_order, r.key)  # _move, inlined
                if i + 1 == len(role_order) or new <= role_order[i + 1]:
                    role_order[i] = new
                else:
                    del role_order[i]
                    insort(role_order, new)
                if quota_order:
                    reorder_quota(r.key, new, r)
                r.key = new
                out.append(_new_tuple(Allocation, (fid, aid, role_name, available)))  # = Allocation(...)
                break
            else:
                continue
            break

    for position, fid, aid, role, resources, items in records:
        out[position] = Allocation(fid, aid, role, resources if resources is not None else _merge(items))
    return out


def _merge(items: list[tuple[Kind, object]]) -> Resources:
    """Resources from (kind, value) pairs, adding up pairs of the same kind."""
    merged = dict(items)
    if len(merged) == len(items):
        return Resources(merged)
    out = EMPTY
    for kind, value in items:
        out = out + Resources({kind: value})
    return out


# -- revocation -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RunningTask:
    """A task holding resources on an agent, for the revocation policy.

    `killing`: the master already asked for it to be killed (it is in its grace period); its
    resources count as about to be freed and it is never named again.
    """

    task_id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    launched_ms: int
    killing: bool = False


@dataclass(frozen=True, slots=True)
class Revocation:
    """Rescind an outstanding offer (`task_id` None) or kill a task (with a grace period),
    to free resources for the roles in `for_roles`."""

    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    task_id: str | None
    for_roles: tuple[str, ...]


def revocations(
    agents: Iterable[AgentSlot],
    frameworks: Iterable[FrameworkDemand],
    roles: Mapping[str, RolePolicy],
    tasks: Iterable[RunningTask],
    offers: Iterable[Allocation] = (),
) -> list[Revocation]:
    """What to take back so that roles below their guarantee can reach it.

    A role *wants* its guarantee when it is below it and has an active framework that does
    not suppress it (frameworks signal interest in more resources by not suppressing). The
    deficit is what the wanting roles miss, per resource name, beyond the free unreserved
    resources (agents' `available`) and the resources of tasks already being killed. While
    a deficit remains, the policy names, one at a time:

    1. outstanding offers (`offers`: what is in `frameworks[...].allocated` as offers), then
    2. running tasks, newest first,

    always from the role with the largest weighted dominant share, and within it the
    framework with the largest share, among roles at or above their guarantee on every
    name. A victim is named only if it frees unreserved non-revocable resources the deficit
    needs, and only if its role stays at or above its guarantee afterwards: a role below
    its guarantee never loses anything. Deterministic: ties are broken by id.
    """
    agent_slots = _by_id(agents, "agent_id", "agent")
    demands = _by_id(frameworks, "framework_id", "framework")
    consumed = quota_consumption(agent_slots, demands)

    total: dict[str, int] = {}
    free: dict[str, int] = {}
    for slot in agent_slots:
        _add_scalars(total, slot.total)
        for kind, value in slot.available.items():
            if value.__class__ is int and not kind.reservations and not kind.revocable:
                free[kind.name] = free.get(kind.name, 0) + value
    inverse_total = {name: 1.0 / amount for name, amount in total.items() if amount > 0}

    def policy(role: str) -> RolePolicy:
        return roles.get(role, _DEFAULT_POLICY)

    guarantees = {role: _quantities(policy(role).guarantee) or {} for role in roles}
    below: dict[str, dict[str, int]] = {}
    for role, guaranteed in guarantees.items():
        mine = consumed.get(role, {})
        unmet = {n: a - mine.get(n, 0) for n, a in guaranteed.items() if a > mine.get(n, 0)}
        if unmet:
            below[role] = unmet
    wanting = sorted({
        role for d in demands if d.active for role in d.roles
        if role in below and role not in d.suppressed_roles
    })
    if not wanting:
        return []

    def freed(resources: Resources) -> dict[str, int]:
        out: dict[str, int] = {}
        for kind, value in resources.items():
            if value.__class__ is int and not kind.reservations and not kind.revocable and value:
                out[kind.name] = out.get(kind.name, 0) + value
        return out

    deficit: dict[str, int] = {}
    for role in wanting:
        for name, amount in below[role].items():
            deficit[name] = deficit.get(name, 0) + amount
    all_tasks = sorted(tasks, key=lambda t: (t.framework_id, t.task_id))
    for t in all_tasks:
        if t.killing:
            for name, amount in freed(t.resources).items():
                free[name] = free.get(name, 0) + amount
    for name in list(deficit):
        deficit[name] -= free.get(name, 0)
        if deficit[name] <= 0:
            del deficit[name]
    if not deficit:
        return []

    # Shares, as the allocator computes them.
    role_alloc: dict[str, dict[str, int]] = {}
    fw_alloc: dict[tuple[str, str], dict[str, int]] = {}
    for d in demands:
        for role, held in d.allocated.items():
            _add_scalars(role_alloc.setdefault(role, {}), held)
            _add_scalars(fw_alloc.setdefault((d.framework_id, role), {}), held)

    # Victims by (role, framework): offers first (in agent order), then tasks newest first.
    victims: dict[str, dict[str, list]] = {}
    for o in sorted(offers, key=lambda o: (o.framework_id, o.agent_id)):
        victims.setdefault(o.role, {}).setdefault(o.framework_id, [[], []])[0].append(
            (o.framework_id, o.agent_id, o.role, o.resources, None))
    for t in sorted(all_tasks, key=lambda t: (-t.launched_ms, t.task_id), reverse=False):
        if not t.killing:
            victims.setdefault(t.role, {}).setdefault(t.framework_id, [[], []])[1].append(
                (t.framework_id, t.agent_id, t.role, t.resources, t.task_id))
    for role in list(victims):
        if role in below:  # below its guarantee on some name: never a victim
            del victims[role]
    cursors = {(role, fid): [0, 0] for role, fws in victims.items() for fid in fws}

    def allowed(role: str, take: dict[str, int]) -> bool:
        if not any(deficit.get(name, 0) > 0 for name in take):
            return False
        mine = consumed.get(role, {})
        guaranteed = guarantees.get(role, {})
        return all(mine.get(name, 0) - amount >= guaranteed.get(name, 0) for name, amount in take.items())

    def next_victim(role: str, fid: str, kind: int):
        """The first still-eligible victim of (role, framework) of this kind; ineligible ones
        are skipped for good (eligibility only shrinks as the deficit and consumption do)."""
        queue = victims[role][fid][kind]
        cursor = cursors[(role, fid)]
        while cursor[kind] < len(queue):
            victim = queue[cursor[kind]]
            take = freed(victim[3])
            if take and allowed(role, take):
                return victim, take
            cursor[kind] += 1
        return None

    result: list[Revocation] = []
    for kind in (0, 1):  # offers, then tasks
        while deficit:
            best = None
            for role in victims:
                weight = policy(role).weight
                role_key = (-_share(role_alloc.get(role, {}), inverse_total) / weight, role)
                if best is not None and role_key > best[0]:
                    continue
                for fid in victims[role]:
                    found = next_victim(role, fid, kind)
                    if found is None:
                        continue
                    key = (role_key, (-_share(fw_alloc.get((fid, role), {}), inverse_total), fid))
                    if best is None or key < best[:2]:
                        best = (key[0], key[1], role, fid, found)
            if best is None:
                break
            _, _, role, fid, (victim, take) = best
            cursors[(role, fid)][kind] += 1
            framework_id, agent_id, _, resources, task_id = victim
            result.append(Revocation(framework_id, agent_id, role, resources, task_id, tuple(wanting)))
            mine = consumed.setdefault(role, {})
            for name, amount in take.items():
                mine[name] = mine.get(name, 0) - amount
                if name in deficit:
                    deficit[name] -= amount
                    if deficit[name] <= 0:
                        del deficit[name]
            for alloc in (role_alloc.setdefault(role, {}), fw_alloc.setdefault((fid, role), {})):
                for k, value in resources.items():
                    if value.__class__ is int:
                        alloc[k.name] = alloc.get(k.name, 0) - value
    return result
