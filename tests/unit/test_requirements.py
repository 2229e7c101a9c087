"""Every runtime dependency earns its place (issue 13).

requirements.txt is what the image installs: each package in it is used by the running
service — imported by its code, named by settings (an app, a middleware, a storage) or run
as its server — and everything the service imports comes from it or the standard library.
Test and tooling packages (requests included) live in requirements-dev.txt.
"""

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ["saga_orchestrator", "sagas", "health", "gunicorn.conf.py", "manage.py"]
OWN = {"saga_orchestrator", "sagas", "health"}
# Run, not imported: the API's server is the image's command (`gunicorn -c gunicorn.conf.py`).
RUN_AS_COMMANDS = {"gunicorn"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {
        canonical(re.split(r"[=<>~!\[ ]", line, 1)[0]) for line in lines if line and line[0] != "-"
    }


def service_files() -> list[Path]:
    files = []
    for name in SERVICE:
        path = ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def top_level_names() -> set[str]:
    """Modules the service imports, and dotted names its settings give Django."""
    names = set()
    for file in service_files():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", node.value):
                    names.add(node.value.split(".")[0])
    return names


def distributions_of(modules: set[str]) -> set[str]:
    owners = metadata.packages_distributions()
    return {canonical(dist) for module in modules for dist in owners.get(module, [])}


def test_every_runtime_package_is_used_by_the_service():
    runtime = requirements(ROOT / "requirements.txt")
    used = distributions_of(top_level_names()) | RUN_AS_COMMANDS
    assert runtime - used == set()


def test_the_server_package_is_the_images_command():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"]' in dockerfile


def test_the_service_imports_only_the_standard_library_and_runtime_packages():
    imported = {
        name
        for file in service_files()
        for node in ast.walk(ast.parse(file.read_text()))
        for name in _imported(node)
    }
    third_party = imported - OWN - set(sys.stdlib_module_names)
    assert distributions_of(third_party) <= requirements(ROOT / "requirements.txt")
    assert all(metadata.packages_distributions().get(name) for name in third_party), third_party


def test_test_only_and_dropped_packages_stay_out_of_the_image():
    runtime = requirements(ROOT / "requirements.txt")
    assert "requests" not in runtime  # tests and bench only; the engine uses http.client
    assert "django-redis" not in runtime  # nothing uses Django's cache (sagas.redis_client)
    assert "requests" in requirements(ROOT / "requirements-dev.txt")


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []
