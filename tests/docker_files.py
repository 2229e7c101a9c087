"""Readers of the Dockerfile and docker-compose.yml for the tests (no Docker engine here)."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = ROOT / "tools" / "node_modules" / ".bin"
COMPOSE_SCHEMA = ROOT / "tools" / "node_modules" / "dclint" / "schemas" / "compose.schema.json"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in joined.splitlines())
        if line
    ]


def dockerfile_healthcheck() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK."""
    [arguments] = [args for name, args in dockerfile_instructions() if name == "HEALTHCHECK"]
    return json.loads(arguments.split(" CMD ", 1)[1])


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_schema() -> dict:
    assert COMPOSE_SCHEMA.exists(), "run `make tools` (npm ci in tools/) first"
    return json.loads(COMPOSE_SCHEMA.read_text())


def env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {name: value for name, value in pairs}
