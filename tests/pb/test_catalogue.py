"""docs/events.md must be what the catalogue generator makes of the schemas and appliers."""

from mesos_es.pb import catalogue, events_pb2


def test_the_committed_event_catalogue_is_current():
    assert catalogue.DOC.read_text() == catalogue.render(), "run `make docs` and commit docs/events.md"


def test_every_event_kind_has_an_entry_with_its_number():
    text = catalogue.DOC.read_text()
    for field in events_pb2.Event.DESCRIPTOR.oneofs_by_name["kind"].fields:
        assert f"`Event.{field.name}` = **{field.number}**" in text, field.name
