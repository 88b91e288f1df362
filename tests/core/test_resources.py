"""The fast paths of Resources the allocator uses: same results as the slow ones."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesos_es.core.resources import Kind, Reservation, Resources, parse_text

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
