"""The Dockerfile and docker-compose.yml, validated without a Docker engine.

hadolint (zero findings), dclint and the compose-spec JSON schema, plus what the schema
cannot see: service names, commands, health checks, ports and variable names (DESIGN §6).
"""

import re
import subprocess

import jsonschema

from tests.docker_files import (
    ROOT,
    TOOLS_BIN,
    compose,
    compose_schema,
    dockerfile_healthcheck,
    dockerfile_instructions,
    env_example,
)

HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
GUIDE_VARIABLES = {
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "DB_HOST",
    "DB_PORT",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "SECRET_KEY",
    "DEBUG",
    "SAGA_API_KEY",
    "INTERNAL_API_KEY",
    "KAFKA_BOOTSTRAP_SERVERS",
    "SAGA_TIMEOUT",
    "SAGA_RETRY_ATTEMPTS",
    "SAGA_RETRY_DELAY",
    "RATE_LIMIT_MAX_REQUESTS",
    "RATE_LIMIT_WINDOW",
    "LOG_LEVEL",
}
SERVICE_VARIABLES = {
    "SAGA_COMPENSATION_RETRY_ATTEMPTS",
    "SAGA_LEASE_SECONDS",
    "SAGA_ALLOWED_HOSTS",
    "SAGA_MAX_INPUT_BYTES",
    "SAGA_RETENTION_DAYS",
    "SAGA_WEBHOOK_SECRET",
    "DB_CONN_MAX_AGE",
    "DB_CONNECT_TIMEOUT",
    "ALLOWED_HOSTS",
    "LOG_FILE",
    "PROMETHEUS_MULTIPROC_DIR",
    "GUNICORN_BIND",
    "GUNICORN_WORKERS",
    "GUNICORN_WORKER_CLASS",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "GUNICORN_KEEPALIVE",
    "GUNICORN_MAX_REQUESTS",
    "GUNICORN_MAX_REQUESTS_JITTER",
}
GUIDE_PLACEHOLDERS = {
    "SECRET_KEY": "your-super-secret-key-change-in-production",
    "SAGA_API_KEY": "your-saga-api-key",
    "INTERNAL_API_KEY": "your-internal-api-key",
}
APP_SERVICES = ("migrate", "saga_orchestrator", "saga_worker")
DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")


def seconds(duration: str) -> float:
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(
        float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(us|ms|s|m|h)", duration)
    )


# Dockerfile


def test_hadolint_has_no_findings():
    result = subprocess.run([str(HADOLINT), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_layers_and_user():
    instructions = dockerfile_instructions()
    names = [name for name, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copies = [args for name, args in instructions if name == "COPY"]
    assert copies == ["requirements.txt .", ". ."]
    # Dependencies are installed between the two copies: the layer survives source edits.
    install = next(i for i, (n, a) in enumerate(instructions) if "pip install" in a)
    source = instructions.index(("COPY", ". ."))
    assert names.index("COPY") < install < source
    collect = next(i for i, (n, a) in enumerate(instructions) if "collectstatic --noinput" in a)
    assert collect > source
    [user] = [args for name, args in instructions if name == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert names.index("USER") > collect
    assert ("EXPOSE", "8008") in instructions
    # psql, for `manage.py dbshell`.
    assert any("postgresql-client" in args for name, args in instructions if name == "RUN")
    [cmd] = [args for name, args in instructions if name == "CMD"]
    assert cmd == '["gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"]'


def test_dockerfile_healthcheck_asks_health_in_python():
    command = dockerfile_healthcheck()
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8008/health/" in command[2]


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", "data", "logs", "run", "staticfiles"} <= ignored


# docker-compose.yml


def test_compose_matches_the_compose_spec_schema():
    jsonschema.Draft7Validator(compose_schema()).validate(compose())


def test_dclint_has_no_findings():
    result = subprocess.run(
        [
            str(TOOLS_BIN / "dclint"),
            "docker-compose.yml",
            "--max-warnings",
            "0",
            "--color",
            "false",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_are_the_designs():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", *APP_SERVICES}


def test_app_services_run_the_right_commands():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["saga_orchestrator"]["command"] == [
        "gunicorn",
        "-c",
        "gunicorn.conf.py",
        "saga_orchestrator.wsgi",
    ]
    assert services["saga_worker"]["command"] == ["python", "manage.py", "run_saga_worker"]
    assert services["saga_orchestrator"]["ports"] == ["8008:8008"]
    for name in APP_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["env_file"] == ".env"


def test_start_order_waits_for_health_and_migrations():
    services = compose()["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("saga_orchestrator", "saga_worker"):
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
    # `docker-compose up -d saga_orchestrator` brings everything it needs, a worker included.
    assert services["saga_orchestrator"]["depends_on"]["saga_worker"] == {
        "condition": "service_started"
    }


def test_health_checks():
    services = compose()["services"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert services["redis"]["healthcheck"]["test"][1].startswith("redis-cli ping")
    assert services["saga_orchestrator"]["healthcheck"]["test"] == [
        "CMD",
        *dockerfile_healthcheck(),
    ]
    assert services["saga_worker"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "manage.py",
        "saga_worker_alive",
    ]
    assert services["migrate"]["healthcheck"] == {"disable": True}
    for name, service in services.items():
        check = service["healthcheck"]
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                assert DURATION.match(check[key]), (name, key, check[key])
        if "retries" in check:
            assert isinstance(check["retries"], int) and check["retries"] > 0, name


def test_restart_policies_and_grace_period():
    services = compose()["services"]
    assert services["migrate"]["restart"] == "no"
    for name in ("postgres", "redis", "saga_orchestrator", "saga_worker"):
        assert services[name]["restart"] == "unless-stopped"
    graceful = int(env_example().get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
    grace = services["saga_orchestrator"]["stop_grace_period"]
    assert DURATION.match(grace) and seconds(grace) > graceful


def test_postgres_and_redis_keep_their_data():
    services = compose()["services"]
    assert "postgres_data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redis_data:/data" in services["redis"]["volumes"]
    assert set(compose()["volumes"]) == {"postgres_data", "redis_data", "logs", "metrics"}
    for name in APP_SERVICES:
        assert {"logs:/app/logs", "metrics:/app/run/prometheus"} <= set(services[name]["volumes"])


def test_app_environment_names_are_the_designs():
    for name in APP_SERVICES:
        environment = compose()["services"][name]["environment"]
        assert set(environment) <= GUIDE_VARIABLES | SERVICE_VARIABLES, name
        assert environment["DB_HOST"] == "postgres"
        assert environment["REDIS_HOST"] == "redis"
        assert environment["PROMETHEUS_MULTIPROC_DIR"] == "/app/run/prometheus"


def test_every_interpolated_variable_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    assert interpolated <= set(env_example())


def test_env_example_has_the_guides_variables_and_placeholders():
    example = env_example()
    assert GUIDE_VARIABLES <= set(example)
    assert set(example) <= GUIDE_VARIABLES | SERVICE_VARIABLES
    for name, placeholder in GUIDE_PLACEHOLDERS.items():
        assert example[name] == placeholder
    assert example["DEBUG"] == "False"


def test_logrotate_moves_never_truncates():
    config = (ROOT / "deploy" / "logrotate.conf").read_text()
    directives = {
        line.split()[0]
        for line in config.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    assert "copytruncate" not in directives
    assert "create" in directives


def documented_defaults() -> dict[str, str]:
    """docs/configuration.md's default column: the first `value`, or "" for empty."""
    rows = re.findall(
        r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", (ROOT / "docs/configuration.md").read_text(), re.M
    )
    defaults = {}
    for name, cell in rows:
        value = re.match(r"`([^`]*)`", cell.strip())
        defaults[name] = value.group(1) if value else ("" if cell.startswith("empty") else None)
    return defaults


def test_env_example_values_are_the_defaults_apart_from_secrets_and_hosts():
    """A copied .env changes nothing it need not: every value is the documented default,
    except the secrets (placeholders to replace) and the hosts (docker-compose sets them)."""
    chosen = {*GUIDE_PLACEHOLDERS, "DB_PASSWORD", "REDIS_PASSWORD", "DB_HOST", "REDIS_HOST"}
    defaults = documented_defaults()
    differing = {
        name: (value, defaults.get(name))
        for name, value in env_example().items()
        if name not in chosen and value != defaults.get(name)
    }
    assert differing == {}


# The guide's commands, as the docs write them

COMMAND = re.compile(r"docker-compose((?: [^`|#;)\n\\]+)+)")
# Options of `docker-compose <subcommand>` that take the next word as their value.
VALUED_OPTIONS = {"--since", "--until", "--scale", "--tail", "-e", "-u", "-w", "-s", "--user"}
FIRST_IS_SERVICE = {"exec", "run"}  # the rest is the command run in the container
ALL_ARE_SERVICES = {"up", "logs", "ps", "restart", "stop", "start", "build", "kill", "pull"}


def documented_compose_commands() -> list[str]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [match.strip() for page in pages for match in COMMAND.findall(page.read_text())]


def named_services(arguments: list[str]) -> list[str]:
    """The services a `docker-compose` command line names (options and values skipped)."""
    subcommand, *rest = arguments
    words, skip = [], False
    for word in rest:
        if skip or word.startswith("-"):
            skip = not skip and word in VALUED_OPTIONS
            continue
        words.append(word)
    if subcommand in FIRST_IS_SERVICE:
        return words[:1]
    return words if subcommand in ALL_ARE_SERVICES else []


def test_the_docs_compose_commands_name_services_that_exist():
    services = set(compose()["services"])
    commands = documented_compose_commands()
    named = {
        (command, service)
        for command in commands
        for service in named_services(command.split())
        if re.fullmatch(r"[a-z_]+", service)  # not a placeholder such as PATH or …
    }
    assert len(commands) > 20 and {service for _, service in named} >= services
    assert {(command, service) for command, service in named if service not in services} == set()


def test_the_guides_commands_work_as_written():
    """`docker-compose up`, `up -d saga_orchestrator` (its dependencies and a worker come
    with it) and `logs saga_orchestrator | grep SAGA` (the API logs `SAGA started`)."""
    services = compose()["services"]
    assert "saga_worker" in services["saga_orchestrator"]["depends_on"]
    assert "SAGA started" in (ROOT / "sagas" / "services.py").read_text()
    documented = documented_compose_commands()
    for command in ("up", "up -d saga_orchestrator", "logs saga_orchestrator saga_worker"):
        assert command in documented, command


def test_a_version_tagged_image_is_the_one_compose_runs():
    """The guide builds `docker build -t saga-orchestrator:<version> .`; compose runs
    `saga-orchestrator:latest`, so operations.md retags (and the names must agree)."""
    image = compose()["x-app"]["image"]
    assert image == "saga-orchestrator:latest"
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "docker build -t saga-orchestrator:" in operations
    assert "docker tag saga-orchestrator:1.4.0 saga-orchestrator:latest" in operations
    tags = set(re.findall(r"\b(saga-orchestrator:[\w.<>-]+)", operations))
    assert {tag.split(":")[0] for tag in tags} == {"saga-orchestrator"}
