"""A Dockerfile's instructions, read for tests: the images cannot be built on the project's
machines, so the tests hold what they would run to scripts/install.sh and to the entry command
the suite starts.

Only what deploy/docker uses is understood: one stage, `\\` continuations, `#` comments,
`ENV k=v ...` (with `$NAME` of earlier ENV lines) and exec-form (JSON) ENTRYPOINT/CMD."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

from tests.harness import REPO

DOCKER = REPO / "deploy" / "docker"
IMAGES = {"cpu": DOCKER / "Dockerfile", "gpu": DOCKER / "Dockerfile.gpu"}


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    argument: str  # continuations joined with spaces


def read(path: Path) -> list[Instruction]:
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment inside a continuation is skipped too, as Docker does
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, argument = (pending + line).partition(" ")
        out.append(Instruction(keyword.upper(), argument.strip()))
        pending = ""
    if pending:
        raise ValueError(f"{path}: ends inside a continuation")
    return out


def arguments(instructions: list[Instruction], keyword: str) -> list[str]:
    return [i.argument for i in instructions if i.keyword == keyword]


def exec_form(instructions: list[Instruction], keyword: str) -> list[str] | None:
    """The last ENTRYPOINT or CMD, which must be in exec (JSON) form; None if there is none."""
    found = arguments(instructions, keyword)
    if not found:
        return None
    value = json.loads(found[-1])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{keyword} {found[-1]}: not in exec form")
    return value


def env(instructions: list[Instruction], upto: int | None = None,
        base: dict[str, str] | None = None) -> dict[str, str]:
    """The ENV the image sets (before instruction `upto`, when given), `$NAME` and
    `${NAME}` expanded from earlier lines or `base`."""
    values = dict(base or {})
    for instruction in instructions[:upto]:
        if instruction.keyword != "ENV":
            continue
        for pair in shlex.split(instruction.argument):
            name, equals, value = pair.partition("=")
            if not equals:
                raise ValueError(f"ENV {instruction.argument}: write it as NAME=value")
            values[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)),
                                  value)
    return values


def index_of(instructions: list[Instruction], keyword: str, argument: str) -> int:
    for index, instruction in enumerate(instructions):
        if (instruction.keyword, instruction.argument) == (keyword, argument):
            return index
    raise AssertionError(f"no `{keyword} {argument}` in the Dockerfile")
