"""The fast paths of Resources the allocator uses: same results as the slow ones."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from mesos_es.core.resources import Kind, Reservation, Resources, ResourceError, _merge_ranges, parse_text

KINDS = [Kind("cpus"), Kind("mem"), Kind("cpus", (Reservation("a"),)), Kind("cpus", (), True), Kind("ports")]

resources = st.builds(
    lambda cpus, mem, rcpus, rev, ports: Resources({
        KINDS[0]: cpus, KINDS[1]: mem, KINDS[2]: rcpus, KINDS[3]: rev,
        KINDS[4]: ((31000, 31000 + ports),) if ports >= 0 else (),
    }),
    st.integers(0, 4000), st.integers(0, 4000), st.integers(0, 2000), st.integers(0, 2000), st.integers(-1, 5),
)


@given(resources)
def test_mapping_methods_agree_with_the_mapping_protocol(r):
    as_pairs = [(k, r[k]) for k in r]
    assert list(r.items()) == as_pairs
    assert list(r.keys()) == [k for k, _ in as_pairs]
    assert list(r.values()) == [v for _, v in as_pairs]
    for kind in KINDS:
        assert (kind in r) == any(k == kind for k, _ in as_pairs)
        assert r.get(kind, "none") == dict(as_pairs).get(kind, "none")


@given(resources, st.sets(st.sampled_from(KINDS)))
def test_to_dict_and_from_canonical_round_trip_a_subset(r, removed):
    items = r.to_dict()
    items_again = r.to_dict()
    for kind in removed:
        items.pop(kind, None)
    part = Resources.from_canonical(items)
    assert part == Resources({k: v for k, v in r.items() if k not in removed})
    assert r.contains(part) and (r - part) + part == r
    assert items_again == dict(r.items())  # a copy: changing one leaves r alone
    assert Resources.from_canonical(r.to_dict()) == r


def test_from_canonical_adopts_without_copying():
    items = parse_text("cpus:1;mem:64").to_dict()
    assert Resources.from_canonical(items).to_dict() == items


ROLE_KINDS = [Kind("cpus"), Kind("cpus", (Reservation("a", "STATIC"),)), Kind("mem", (Reservation("a/x"),)),
              Kind("mem", (Reservation("*"),)), Kind("disk", (Reservation("b"), Reservation("b/y"))),
              Kind("cpus", (), True), Kind("ports")]


@given(st.dictionaries(st.sampled_from(ROLE_KINDS), st.integers(1, 9)), st.sampled_from(["a", "a/x", "b", "b/y/z", "*"]))
def test_the_fast_checks_agree_with_the_filters(items, role):
    r = Resources({k: ((1, v),) if k.name == "ports" else v for k, v in items.items()})
    assert r.is_allocatable_to(role) == (r.allocatable_to(role) == r)
    assert r.has_revocable() == bool(r.revocable())
    assert r.scalar_part() == Resources({k: v for k, v in r.items() if isinstance(v, int)})
    assert r.scalar_part() is r.scalar_part()  # computed once


range_lists = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 8)).map(lambda r: (r[0], r[0] + r[1])), max_size=6)


@given(range_lists, range_lists)
def test_range_helpers_agree_with_sets_of_ports(have, want):
    from mesos_es.core.resources import _merge_ranges, _ranges_contain

    def ports(ranges):
        return {p for b, e in ranges for p in range(b, e + 1)}

    merged = _merge_ranges(have)
    assert ports(merged) == ports(have)
    assert all(b <= e for b, e in merged) and all(e + 1 < b for (_, e), (b, _) in itertools.pairwise(merged))
    wanted = _merge_ranges(want)
    assert _ranges_contain(merged, wanted) == (ports(wanted) <= ports(merged))


# Values of every shape under a few names, so that a name can be a scalar in one Resources and
# ranges or a set in the other (which subtraction must refuse).
SHAPED_KINDS = [Kind("cpus"), Kind("ports"), Kind("gpus"), Kind("cpus", (), True)]
values = st.one_of(
    st.integers(0, 6),
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 3)).map(lambda r: (r[0], r[0] + r[1])), min_size=1,
             max_size=3).map(_merge_ranges),
    st.sets(st.sampled_from("abcd"), max_size=3).map(lambda items: tuple(sorted(items))),
)
shaped = st.dictionaries(st.sampled_from(SHAPED_KINDS), values).map(Resources)


def _units(value) -> set:
    """A ranges or set value as a set of ports or items (tagged, so the two never compare equal)."""
    if isinstance(value[0], tuple):
        return {("port", p) for b, e in value for p in range(b, e + 1)}
    return {("item", i) for i in value}


def _subtracted(have: Resources, take: Resources) -> Resources | None:
    """The general subtraction, unit by unit: None where `have` does not hold `take`."""
    out = dict(have.items())
    for kind, value in take.items():
        mine = out.get(kind)
        if mine is None or isinstance(value, int) != isinstance(mine, int):
            return None
        if isinstance(value, int):
            if mine < value:
                return None
            out[kind] = mine - value
            continue
        mine_units, value_units = _units(mine), _units(value)
        if next(iter(mine_units))[0] != next(iter(value_units))[0] or not value_units <= mine_units:
            return None
        left = sorted(mine_units - value_units)
        if left and left[0][0] == "port":
            out[kind] = _merge_ranges((p, p) for _, p in left)
        else:
            out[kind] = tuple(i for _, i in left)
    return Resources(out)


@given(shaped, shaped)
def test_subtraction_agrees_with_the_general_one(have, take):
    for wanted in (take, have):  # the second takes everything: the fast path for equal values
        expected = _subtracted(have, wanted)
        try:
            got = have - wanted
        except ResourceError:
            got = None
        assert got == expected
        assert have.contains(wanted) == (expected is not None)
        if got is not None:
            assert all(v != 0 and v != () for v in got.values())  # nothing empty is kept
