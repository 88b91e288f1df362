"""Write docs/events.md, the event catalogue, from the schemas' comments.

Run as `make docs` (or `python -m mesos_es.pb.catalogue`; `--check` only says whether
docs/events.md is current). The pinned protoc (grpcio-tools, as for `make proto`) compiles the
.proto files into a descriptor set with their comments; every kind of the `Event` oneof gets
an entry (number, comment, fields, the applier that folds it and what that does), then the
types they use and the folded state. tests/pb/test_catalogue.py fails when the file is stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2 as d

from mesos_es.pb.generate import REPO_ROOT, proto_files

DOC = REPO_ROOT / "docs" / "events.md"
MASTER_FIRST = 32  # Event oneof numbers from here on are the master's (events.proto)
SCALARS = {v: k[len("TYPE_"):].lower() for k, v in d.FieldDescriptorProto.Type.items()}


def descriptors() -> list[d.FileDescriptorProto]:
    from grpc_tools import protoc  # only the generators need grpcio-tools

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        sources = [str(p.relative_to(REPO_ROOT)) for p in proto_files()]
        args = ["protoc", f"-I{REPO_ROOT}", f"--descriptor_set_out={out}", "--include_source_info", *sources]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        return list(d.FileDescriptorSet.FromString(out.read_bytes()).file)


def _text(comment: str) -> str:
    """A comment's text, without the space after each `//`."""
    lines = [line.removeprefix(" ") for line in comment.strip("\n").split("\n")]
    return "\n".join(lines).strip()


class Schemas:
    def __init__(self, files: list[d.FileDescriptorProto]):
        self.comments: dict[tuple[str, tuple[int, ...]], str] = {}
        self.messages: dict[str, tuple[d.DescriptorProto, str, tuple[int, ...]]] = {}
        self.enums: dict[str, tuple[d.EnumDescriptorProto, str, tuple[int, ...]]] = {}
        self.headers: dict[str, str] = {}
        self.files = files
        for f in files:
            for loc in f.source_code_info.location:
                text = loc.leading_comments or loc.trailing_comments
                if tuple(loc.path) == (12,):  # `syntax`: the file's header comment precedes it
                    self.headers[f.name] = _text(loc.leading_comments or "\n".join(loc.leading_detached_comments))
                elif text:
                    self.comments[(f.name, tuple(loc.path))] = _text(text)
            for i, m in enumerate(f.message_type):
                self._add(f, f".{f.package}", m, (4, i))
            for i, e in enumerate(f.enum_type):
                self.enums[f".{f.package}.{e.name}"] = (e, f.name, (5, i))

    def _add(self, f, prefix: str, m: d.DescriptorProto, path: tuple[int, ...]) -> None:
        self.messages[f"{prefix}.{m.name}"] = (m, f.name, path)
        for i, nested in enumerate(m.nested_type):
            self._add(f, f"{prefix}.{m.name}", nested, (*path, 3, i))
        for i, e in enumerate(m.enum_type):
            self.enums[f"{prefix}.{m.name}.{e.name}"] = (e, f.name, (*path, 4, i))

    def comment(self, file: str, path: tuple[int, ...]) -> str:
        return self.comments.get((file, path), "")

    # -- rendering ---------------------------------------------------------------------------
    def link(self, full: str) -> str:
        name = full.split(".", 3)[-1] if full.startswith(".mesos_es.") else full
        return f"[`{name}`](#{name.lower().replace('.', '-')})"

    def type_of(self, field: d.FieldDescriptorProto) -> str:
        if field.type in (d.FieldDescriptorProto.TYPE_MESSAGE, d.FieldDescriptorProto.TYPE_ENUM):
            entry = self.messages.get(field.type_name)
            if entry is not None and entry[0].options.map_entry:
                key, value = entry[0].field
                return f"map<{self.type_of(key)}, {self.type_of(value)}>"
            kind = self.link(field.type_name)
        else:
            kind = f"`{SCALARS[field.type]}`"
        if field.label == d.FieldDescriptorProto.LABEL_REPEATED:
            return f"repeated {kind}"
        return f"optional {kind}" if field.proto3_optional else kind

    def fields_table(self, full: str, oneof_too: bool = True) -> list[str]:
        m, file, path = self.messages[full]
        if not m.field:
            return ["No fields."]
        rows = ["| field | number | type | meaning |", "|---|---|---|---|"]
        for i, field in enumerate(m.field):
            if not oneof_too and field.HasField("oneof_index") and not field.proto3_optional:
                continue
            meaning = self.comment(file, (*path, 2, i)).replace("\n", " ").replace("|", "\\|")
            rows.append(f"| `{field.name}` | {field.number} | {self.type_of(field)} | {meaning} |")
        return rows

    def message_section(self, full: str) -> list[str]:
        _, file, path = self.messages[full]
        name = full.split(".", 3)[-1]
        out = [f'<a id="{name.lower().replace(".", "-")}"></a>', f"### {name}", ""]
        if self.comment(file, path):
            out += [self.comment(file, path), ""]
        return out + self.fields_table(full) + [""]

    def enum_section(self, full: str) -> list[str]:
        e, file, path = self.enums[full]
        name = full.split(".", 3)[-1]
        out = [f'<a id="{name.lower().replace(".", "-")}"></a>', f"### {name} (enum)", ""]
        if self.comment(file, path):
            out += [self.comment(file, path), ""]
        return out + [", ".join(f"`{v.name}` = {v.number}" for v in e.value), ""]

    def used_by(self, roots: list[str]) -> list[str]:
        """Message and enum types reachable from `roots`, in schema order, roots excluded."""
        seen, todo = set(roots), list(roots)
        while todo:
            m = self.messages[todo.pop()][0]
            for field in m.field:
                name = field.type_name
                if name and name not in seen:
                    seen.add(name)
                    if name in self.messages:
                        todo.append(name)
        order = list(self.messages) + list(self.enums)
        return [n for n in order if n in seen and n not in roots and not (
            n in self.messages and self.messages[n][0].options.map_entry)]


def render() -> str:
    from mesos_es.core.apply import APPLIERS  # the fold, for each kind's applier

    schemas = Schemas(descriptors())
    events_file = "mesos_es/pb/events.proto"
    event, _, event_path = schemas.messages[".mesos_es.events.Event"]
    out = [
        "# Event catalogue",
        "",
        "<!-- Generated by `make docs` (mesos_es/pb/catalogue.py) from the comments in mesos_es/pb/*.proto",
        "     and the appliers' docstrings; do not edit by hand. -->",
        "",
        "Every entry of the replicated log is one `Event`; each kind of its `kind` oneof is folded into the",
        "state by exactly one applier (mesos_es/core/apply.py). An applier never raises: an event that no",
        "longer fits the state is recorded as a deterministic rejection and changes nothing.",
        "",
        schemas.headers.get(events_file, ""),
        "",
        "## The envelope: Event",
        "",
        schemas.comment(events_file, event_path),
        "",
        *schemas.fields_table(".mesos_es.events.Event", oneof_too=False),
        "",
        f"and `kind`, a oneof: one of the [log events](#log-events) (numbers below {MASTER_FIRST}) or the",
        f"[master events](#master-events) ({MASTER_FIRST} on):",
        "",
        "| number | `kind` | event |",
        "|---|---|---|",
    ]
    oneof = [(i, f) for i, f in enumerate(event.field) if f.HasField("oneof_index")]
    out += [f"| {f.number} | `{f.name}` | {schemas.link(f.type_name)} |" for _, f in oneof] + [""]
    roots = [".mesos_es.events.Event"]
    for title, keep in (("Log events", lambda n: n < MASTER_FIRST), ("Master events", lambda n: n >= MASTER_FIRST)):
        out += [f"## {title}", ""]
        for i, field in oneof:
            if not keep(field.number):
                continue
            roots.append(field.type_name)
            m, file, path = schemas.messages[field.type_name]
            applier = APPLIERS[field.name]
            where = f"`{applier.__module__}.{applier.__name__}`"
            out += [f'<a id="{m.name.lower()}"></a>', f"### {m.name}", "",
                    f"`Event.{field.name}` = **{field.number}**; folded by {where}.", ""]
            for text in (schemas.comment(events_file, (*event_path, 2, i)), schemas.comment(file, path)):
                if text:
                    out += [text, ""]
            if applier.__doc__:
                out += ["What folding it does: " + " ".join(applier.__doc__.split()), ""]
            out += schemas.fields_table(field.type_name) + [""]
    out += ["## Types the events use", "", schemas.headers.get("mesos_es/pb/mesos.proto", ""), ""]
    for name in schemas.used_by(roots):
        out += schemas.message_section(name) if name in schemas.messages else schemas.enum_section(name)
    state_file = "mesos_es/pb/state.proto"
    out += ["## The folded state (state.proto)", "", schemas.headers.get(state_file, ""), ""]
    for name, (m, file, _) in schemas.messages.items():
        if file == state_file and not m.options.map_entry:
            out += schemas.message_section(name)
    return "\n".join(out).rstrip() + "\n"


def is_current() -> bool:
    return DOC.exists() and DOC.read_text() == render()


def main() -> int:
    if "--check" in sys.argv[1:]:
        if is_current():
            return 0
        print("stale: docs/events.md (run `make docs`)", file=sys.stderr)
        return 1
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
