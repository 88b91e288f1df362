"""The committed protobuf code must be what the pinned generator makes of the schemas."""

from mesos_es.pb import generate


def test_committed_generated_code_is_current():
    assert generate.stale_files() == [], "run `make proto` and commit the result"


def test_every_schema_has_committed_code():
    for proto in generate.proto_files():
        assert (generate.PB_DIR / f"{proto.stem}_pb2.py").exists()


def test_the_mesos_v1_subsets_are_generated_too():
    """The scheduler API's protobuf schemas are built and checked like our own."""
    assert {"mesos_v1", "scheduler_v1"} <= {p.stem for p in generate.proto_files()}
