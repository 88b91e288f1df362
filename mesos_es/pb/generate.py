"""Regenerate the committed protobuf code beside the .proto files.

Run as `make proto` (or `python -m mesos_es.pb.generate`). The generator is the protoc
bundled with the pinned grpcio-tools, so the committed code only changes when a schema or
that pin changes; tests/pb/test_generated.py fails when the committed code is stale.

Every .proto here is compiled: our own schemas (events, state, log, mesos) and the subsets of
Apache Mesos' v1 API that the scheduler API speaks in protobuf (mesos_v1, scheduler_v1, whose
names and numbers are Mesos' and must stay so).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PB_DIR = Path(__file__).resolve().parent
REPO_ROOT = PB_DIR.parent.parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")


def proto_files() -> list[Path]:
    return sorted(PB_DIR.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto into out_dir (mirroring mesos_es/pb/) and list what it wrote."""
    from grpc_tools import protoc  # only the generator needs grpcio-tools

    sources = [str(p.relative_to(REPO_ROOT)) for p in proto_files()]
    args = ["protoc", f"-I{REPO_ROOT}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", *sources]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    generated_dir = out_dir / PB_DIR.relative_to(REPO_ROOT)
    return sorted(p for p in generated_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def stale_files() -> list[str]:
    """Names of generated files whose committed copy differs from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
    committed = {p.name: p.read_bytes() for p in PB_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    names = sorted(set(fresh) | set(committed))
    return [n for n in names if fresh.get(n) != committed.get(n)]


def main() -> int:
    if "--check" in sys.argv[1:]:
        stale = stale_files()
        for name in stale:
            print(f"stale: mesos_es/pb/{name} (run `make proto`)", file=sys.stderr)
        return 1 if stale else 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            (PB_DIR / path.name).write_bytes(path.read_bytes())
            print(f"wrote mesos_es/pb/{path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
