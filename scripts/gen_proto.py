"""Generate the Python protobuf modules from proto/ into twinserve_wire/proto/, or check them.

    python scripts/gen_proto.py           regenerate the committed modules
    python scripts/gen_proto.py --check   exit 1 if the committed modules are stale

protoc names modules after the proto package (`twinserve.v1`); the daemon and the client
library import them as `twinserve_wire.proto.v1`, so imports between generated modules are
rewritten here. Only `*_pb2.py` and their `.pyi` type stubs are generated: the service is
bound in twinserve_wire/service.py from the descriptor, which keeps it typed without a
protoc plugin. The check ignores protoc's version stamps, so a newer grpcio-tools alone
does not count as stale.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
PROTO_PACKAGE = "twinserve/v1"
OUT = REPO / "twinserve_wire" / "proto" / "v1"
IMPORTED_AS = "twinserve_wire.proto.v1"

_VERSION_STAMPS = (
    re.compile(r"^# Protobuf Python Version: .*$", re.M),
    re.compile(r"_runtime_version\.ValidateProtobufRuntimeVersion\([^)]*\)", re.S),
)


def generate(out: Path) -> list[Path]:
    """Write the generated modules for every .proto in proto/twinserve/v1 into `out`."""
    protos = sorted((PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", *(str(p) for p in protos)]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / PROTO_PACKAGE).iterdir()):
            text = src.read_text()
            text = text.replace(f"from {PROTO_PACKAGE.replace('/', '.')} import",
                                f"from {IMPORTED_AS} import")
            dest = out / src.name
            dest.write_text(text)
            written.append(dest)
    return written


def stale_files() -> list[str]:
    """Names of committed modules that differ from a fresh generation (or are missing/extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        committed = {p.name: p for p in OUT.glob("*_pb2.py*")}
        stale = sorted(set(fresh) ^ set(committed))
        for name in sorted(set(fresh) & set(committed)):
            if _normalised(fresh[name].read_text()) != _normalised(committed[name].read_text()):
                stale.append(name)
        return stale


def _normalised(text: str) -> str:
    for stamp in _VERSION_STAMPS:
        text = stamp.sub("", text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale modules")
    if parser.parse_args().check:
        stale = stale_files()
        if stale:
            print("stale generated modules (run scripts/gen_proto.py):", ", ".join(stale))
            return 1
        print("generated modules are up to date")
        return 0
    for path in generate(OUT):
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
