"""Resources as the master counts them: exact, immutable, and convertible to Mesos v1 JSON.

Mesos resources are a list of `Resource` objects (`{"name", "type", "scalar"|"ranges"|"set",
"reservations", "revocable", "role"}`). Arithmetic happens on a canonical form: one entry per
*kind* (name, reservation chain, revocable), scalars in integer milli-units (Mesos itself
rounds scalars to three decimals), ranges merged and sorted, sets as sorted tuples. Integer
milli-units keep sums exact, so every replica and every replay computes the same numbers.

Pure: no I/O, no clock; imported by the appliers and the allocator alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

UNRESERVED = "*"


class ResourceError(ValueError):
    """A resource that cannot be parsed, or arithmetic that would go below zero."""


# Reservation and Kind are NamedTuples rather than frozen dataclasses: they key every
# Resources dict, and a tuple hashes and compares in C, where a dataclass runs Python code on
# every dict lookup (the fold spent a tenth of its time there).
class Reservation(NamedTuple):
    """One step of a reservation chain (Mesos' `Resource.ReservationInfo`)."""

    role: str
    type: str = "DYNAMIC"  # STATIC or DYNAMIC
    principal: str = ""


class Kind(NamedTuple):
    """What makes two resources fungible: same name, reservation chain and revocability."""

    name: str
    reservations: tuple[Reservation, ...] = ()
    revocable: bool = False

    @property
    def role(self) -> str:
        """The role the resource is reserved to (the last in the chain), or '*'."""
        return self.reservations[-1].role if self.reservations else UNRESERVED


Value = int | tuple[tuple[int, int], ...] | tuple[str, ...]  # milli-scalar, ranges, set items
_new = object.__new__


def _merge_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    first = last = -2
    for begin, end in sorted(ranges):
        if begin > end:
            raise ResourceError(f"range [{begin}-{end}] is empty")
        if merged and begin <= last + 1:
            if end > last:
                last = end
                merged[-1] = (first, last)
        else:
            first, last = begin, end
            merged.append((first, last))
    return tuple(merged)


def _subtract_ranges(have: tuple[tuple[int, int], ...], take: tuple[tuple[int, int], ...]):
    out = list(have)
    for tb, te in take:
        nxt = []
        for b, e in out:
            if te < b or tb > e:
                nxt.append((b, e))
                continue
            if b < tb:
                nxt.append((b, tb - 1))
            if te < e:
                nxt.append((te + 1, e))
        out = nxt
    return tuple(out)


def _ranges_contain(have: tuple[tuple[int, int], ...], want: tuple[tuple[int, int], ...]) -> bool:
    for wb, we in want:  # loops, not all(any(...)): the allocator and the fold call it a lot
        for b, e in have:
            if b <= wb and we <= e:
                break
        else:
            return False
    return True


def _is_empty(value: Value) -> bool:
    return value == 0 or value == ()


def _to_milli(value: float) -> int:
    milli = float(value) * 1000
    if not math.isfinite(milli):  # round() raises OverflowError on inf, which nobody catches
        raise ResourceError(f"{value!r} is not a finite number")
    return int(round(milli))


def _shape(value: Value) -> int:
    """0 scalar, 1 ranges, 2 set (stored values are never empty)."""
    return 0 if isinstance(value, int) else 1 if isinstance(value[0], tuple) else 2


class Resources(Mapping[Kind, Value]):
    """An immutable bag of resources, keyed by Kind. `a + b`, `a - b`, `a.contains(b)`."""

    __slots__ = ("_items", "_scalar_part")

    def __init__(self, items: Mapping[Kind, Value] | None = None):
        self._items: dict[Kind, Value] = {k: v for k, v in (items or {}).items() if not _is_empty(v)}
        self._scalar_part: Resources | None = None

    # -- Mapping -----------------------------------------------------------------------
    def __getitem__(self, kind: Kind) -> Value:
        return self._items[kind]

    def __iter__(self) -> Iterator[Kind]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    # Faster than the Mapping mixins (which go through __getitem__), same results.
    def items(self):
        return self._items.items()

    def keys(self):
        return self._items.keys()

    def values(self):
        return self._items.values()

    def get(self, kind: Kind, default=None):
        return self._items.get(kind, default)

    def __contains__(self, kind) -> bool:
        return kind in self._items

    # For hot paths (the allocator): a Kind hashes in Python, so building a dict of Kinds is
    # slow, while copying a dict keeps the hashes it has.
    def to_dict(self) -> dict[Kind, Value]:
        """A copy of the entries, as a plain dict the caller may change."""
        return self._items.copy()

    @classmethod
    def from_canonical(cls, items: dict[Kind, Value]) -> Resources:
        """Adopt `items` without copying or checking them. Only for dicts already in canonical
        form, such as a copy of another Resources' entries with some removed: no empty
        values, ranges merged and sorted, sets sorted."""
        out = cls.__new__(cls)
        out._items = items
        out._scalar_part = None
        return out

    def __eq__(self, other) -> bool:
        return isinstance(other, Resources) and self._items == other._items

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"Resources({to_text(self)!r})"

    # -- arithmetic --------------------------------------------------------------------
    # The hot paths of the fold and the allocator: scalars are tested with `__class__ is int`
    # first, and results are built without re-checking for empty values where none can arise.
    @classmethod
    def _trusted(cls, items: dict[Kind, Value]) -> Resources:
        """From a dict known to hold no empty value."""
        out = object.__new__(cls)
        out._items = items
        out._scalar_part = None
        return out

    def __add__(self, other: Resources) -> Resources:
        if not other._items:
            return self
        if not self._items:
            return other
        items = dict(self._items)
        for kind, value in other._items.items():
            mine = items.get(kind)
            if mine is None:
                items[kind] = value
            elif value.__class__ is int and mine.__class__ is int:
                items[kind] = mine + value
            elif _shape(mine) != _shape(value):
                raise ResourceError(f"{kind.name} cannot be both a scalar, ranges or a set")
            elif isinstance(value[0], tuple):
                items[kind] = _merge_ranges(mine + value)
            else:
                items[kind] = tuple(sorted(set(mine) | set(value)))
        out = _new(Resources)  # Resources._trusted(items), inline
        out._items, out._scalar_part = items, None
        return out

    def __sub__(self, other: Resources) -> Resources:
        """Remove `other`; raises ResourceError unless `self.contains(other)`."""
        if not other._items:
            return self
        items = self._items.copy()
        for kind, value in other._items.items():
            mine = items.get(kind)
            if value.__class__ is int:
                if mine.__class__ is int and mine > value:
                    items[kind] = mine - value
                    continue
                left = None if mine != value else 0  # equal: nothing left (an int is never a tuple)
            elif mine is None or mine.__class__ is int:
                left = None
            elif mine == value:  # ranges or a set taken whole, as when an offer is released
                left = ()
            elif isinstance(value[0], tuple):  # ranges, from ranges only
                left = (_subtract_ranges(mine, value) if isinstance(mine[0], tuple) and _ranges_contain(mine, value)
                        else None)
            elif isinstance(mine[0], tuple):  # a set, from ranges
                left = None
            else:
                left = tuple(i for i in mine if i not in set(value)) if set(value) <= set(mine) else None
            if left is None:
                raise ResourceError(f"{to_text(other)} is not contained in {to_text(self)}")
            if left:
                items[kind] = left
            else:
                del items[kind]
        out = _new(Resources)  # Resources._trusted(items), inline
        out._items, out._scalar_part = items, None
        return out

    def saturating_sub(self, other: Resources) -> Resources:
        """Remove as much of `other` as is here, never going below nothing: what an agent still
        has once its revocable estimate shrank below what its tasks already hold."""
        items = dict(self._items)
        for kind, value in other._items.items():
            mine = items.get(kind)
            if mine is None or _shape(mine) != _shape(value):
                continue
            if isinstance(value, int):
                items[kind] = max(0, mine - value)
            elif value and isinstance(value[0], tuple):
                items[kind] = _subtract_ranges(mine, value)
            else:
                items[kind] = tuple(i for i in mine if i not in set(value))
        return Resources(items)

    def contains(self, other: Resources) -> bool:
        items = self._items
        for kind, value in other._items.items():
            mine = items.get(kind)
            if value.__class__ is int:
                if mine.__class__ is not int or mine < value:  # None is not an int either
                    return False
            elif mine is None or mine.__class__ is int:
                return False
            elif mine == value:
                continue
            elif isinstance(value[0], tuple):  # ranges, in ranges only
                if not isinstance(mine[0], tuple) or not _ranges_contain(mine, value):
                    return False
            elif isinstance(mine[0], tuple) or not set(value) <= set(mine):  # a set, in a set only
                return False
        return True

    # -- views ---------------------------------------------------------------------------
    def scalar(self, name: str) -> float:
        """Total of a scalar resource across reservations, in units (not milli)."""
        return sum(v for k, v in self._items.items() if k.name == name and isinstance(v, int)) / 1000

    def scalars(self) -> dict[str, float]:
        totals: dict[str, int] = {}
        for kind, value in self._items.items():
            if isinstance(value, int):
                totals[kind.name] = totals.get(kind.name, 0) + value
        return {name: milli / 1000 for name, milli in sorted(totals.items())}

    def scalar_part(self) -> Resources:
        """Only the scalar entries; computed once per (immutable) Resources, since the index
        takes it of the same task's or offer's resources when it holds and releases them."""
        part = self._scalar_part
        if part is None:
            items = self._items
            part = self if all(v.__class__ is int for v in items.values()) else Resources._trusted(
                {k: v for k, v in items.items() if v.__class__ is int})
            self._scalar_part = part
        return part

    def is_allocatable_to(self, role: str) -> bool:
        """`self.allocatable_to(role) == self`, without building it."""
        for kind in self._items:
            if kind.reservations:
                reserved = kind.reservations[-1].role
                if reserved != UNRESERVED and reserved != role and not role.startswith(reserved + "/"):
                    return False
        return True

    def has_revocable(self) -> bool:
        """`bool(self.revocable())`, without building it."""
        for kind in self._items:  # a loop, not any(...): no generator to start (the fold's hot path)
            if kind.revocable:
                return True
        return False

    def filter(self, predicate) -> Resources:
        return Resources({k: v for k, v in self._items.items() if predicate(k)})

    def allocatable_to(self, role: str) -> Resources:
        """What a framework in `role` may be offered: unreserved, or reserved to the role or an
        ancestor of it (hierarchical roles: a/b may use resources reserved to a)."""
        return self.filter(lambda k: k.role == UNRESERVED or k.role == role or role.startswith(k.role + "/"))

    def unreserved(self) -> Resources:
        return self.filter(lambda k: k.role == UNRESERVED)

    def revocable(self) -> Resources:
        return self.filter(lambda k: k.revocable)

    def non_revocable(self) -> Resources:
        return self.filter(lambda k: not k.revocable)

    def reserved(self, role: str | None = None) -> Resources:
        return self.filter(lambda k: k.role != UNRESERVED and (role is None or k.role == role))

    def push_reservation(self, reservation: Reservation) -> Resources:
        return Resources({Kind(k.name, (*k.reservations, reservation), k.revocable): v for k, v in self._items.items()})

    def pop_reservation(self) -> Resources:
        # Kinds that differ only in their last reservation become one: add, do not overwrite.
        out = EMPTY
        for k, v in self._items.items():
            out = out + Resources({Kind(k.name, k.reservations[:-1], k.revocable): v})
        return out

    def sorted_items(self) -> list[tuple[Kind, Value]]:
        return sorted(self._items.items(), key=lambda kv: kv[0])


EMPTY = Resources()


# -- Mesos v1 JSON ----------------------------------------------------------------------------

def _reservations_from_json(obj: Mapping) -> tuple[Reservation, ...]:
    chain = obj.get("reservations") or []
    if chain:
        return tuple(
            Reservation(role=r.get("role", ""), type=r.get("type", "DYNAMIC"), principal=r.get("principal", ""))
            for r in chain
        )
    # Pre-refinement "role" field: a static reservation when not "*", and a dynamic one when
    # it comes with a "reservation" ({"principal": ...}), as Mesos reads it.
    role = obj.get("role") or UNRESERVED
    if role == UNRESERVED:
        return ()
    legacy = obj.get("reservation")
    if isinstance(legacy, Mapping):
        return (Reservation(role=role, type="DYNAMIC", principal=str(legacy.get("principal", ""))),)
    return (Reservation(role=role, type="STATIC"),)


def resource_from_json(obj: Mapping) -> tuple[Kind, Value]:
    """One Mesos v1 JSON `Resource` -> (Kind, Value). Raises ResourceError on bad input."""
    if not isinstance(obj, Mapping):
        raise ResourceError("a resource must be a JSON object")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ResourceError("a resource needs a name")
    rtype = obj.get("type", "SCALAR")
    try:
        kind = Kind(name, _reservations_from_json(obj), "revocable" in obj)
        if rtype == "SCALAR":
            value = _to_milli(obj["scalar"]["value"])
            if value < 0:
                raise ResourceError(f"{name}: negative scalar")
            return kind, value
        if rtype == "RANGES":
            ranges = obj["ranges"].get("range", [])
            return kind, _merge_ranges((int(r["begin"]), int(r["end"])) for r in ranges)
        if rtype == "SET":
            return kind, tuple(sorted(set(str(i) for i in obj["set"].get("item", []))))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        if isinstance(e, ResourceError):
            raise
        raise ResourceError(f"resource {name!r}: malformed {rtype} value") from None
    raise ResourceError(f"resource {name!r}: unknown type {rtype!r}")


def from_json(objs: Iterable[Mapping] | None) -> Resources:
    out = EMPTY
    if objs is None:
        return out
    if not isinstance(objs, list):
        raise ResourceError("resources must be a JSON array")
    for obj in objs:
        kind, value = resource_from_json(obj)
        out = out + Resources({kind: value})
    return out


def _kind_json(kind: Kind) -> dict:
    obj: dict = {"name": kind.name}
    if kind.reservations:
        obj["reservations"] = [
            {"type": r.type, "role": r.role, **({"principal": r.principal} if r.principal else {})}
            for r in kind.reservations
        ]
        obj["role"] = kind.role  # pre-reservation-refinement clients (pymesos users) read this
    else:
        obj["role"] = UNRESERVED
    if kind.revocable:
        obj["revocable"] = {}
    return obj


def to_json(resources: Resources) -> list[dict]:
    """Mesos v1 JSON, in canonical order."""
    out = []
    for kind, value in resources.sorted_items():
        obj = _kind_json(kind)
        if isinstance(value, int):
            obj["type"] = "SCALAR"
            obj["scalar"] = {"value": value / 1000}
        elif value and isinstance(value[0], tuple):
            obj["type"] = "RANGES"
            obj["ranges"] = {"range": [{"begin": b, "end": e} for b, e in value]}
        else:
            obj["type"] = "SET"
            obj["set"] = {"item": list(value)}
        out.append(obj)
    return out


# -- the agent's --resources flag -------------------------------------------------------------

def parse_text(text: str) -> Resources:
    """`cpus:4;mem:8192;disk:10000;ports:[31000-32000]` (Mesos' flag syntax; `name(role):value`
    reserves statically)."""
    out = EMPTY
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition(":")
        if not sep:
            raise ResourceError(f"bad resource {part!r}: expected name:value")
        name, role = name.strip(), UNRESERVED
        if "(" in name and name.endswith(")"):
            name, role = name[:-1].split("(", 1)
        value = value.strip()
        chain = () if role == UNRESERVED else (Reservation(role=role, type="STATIC"),)
        kind = Kind(name, chain)
        if value.startswith("["):
            if not value.endswith("]"):
                raise ResourceError(f"bad ranges {value!r}")
            try:
                ranges = [tuple(int(x) for x in r.strip().split("-")) for r in value[1:-1].split(",") if r.strip()]
                parsed: Value = _merge_ranges((r[0], r[-1]) for r in ranges)
            except ValueError:
                raise ResourceError(f"bad ranges {value!r}") from None
        elif value.startswith("{"):
            parsed = tuple(sorted({i.strip() for i in value.strip("{}").split(",") if i.strip()}))
        else:
            try:
                parsed = _to_milli(float(value))
            except ValueError:
                raise ResourceError(f"bad scalar {value!r} for {name}") from None
            if parsed < 0:
                raise ResourceError(f"negative {name}")
        out = out + Resources({kind: parsed})
    return out


def to_text(resources: Resources) -> str:
    parts = []
    for kind, value in resources.sorted_items():
        name = kind.name if kind.role == UNRESERVED else f"{kind.name}({kind.role})"
        if kind.revocable:
            name += "{REV}"
        if isinstance(value, int):
            parts.append(f"{name}:{value / 1000:g}")
        elif value and isinstance(value[0], tuple):
            parts.append(f"{name}:[{','.join(f'{b}-{e}' for b, e in value)}]")
        else:
            parts.append(f"{name}:{{{','.join(value)}}}")
    return ";".join(parts)
