"""The docs cannot drift from the code.

Every environment variable the code reads is documented exactly once, in the one table of
docs/configuration.md, and that table names nothing the code does not read. README.md stays
the short front door, and every relative link of README.md and docs/ reaches a file (and a
heading, when it names one).
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = [
    "saga_orchestrator",
    "sagas",
    "health",
    "console",
    "scripts",
    "gunicorn.conf.py",
    "manage.py",
]
# Calls whose first argument is the name of a variable they read: os.environ.get, os.getenv,
# and the env helpers of settings.py and gunicorn.conf.py.
READERS = {"get", "getenv", "env_str", "env_int", "env_float", "env_bool", "env_list"}
READERS |= {"env_secret", "env_file", "_env", "_env_int", "_env_choice"}
# Named by the deployment guide (DESIGN §6) and documented as reserved, read or not.
RESERVED = {"KAFKA_BOOTSTRAP_SERVERS"}
VARIABLE_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|", re.MULTILINE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def python_files() -> list[Path]:
    files = []
    for name in SOURCES:
        path = ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [file for file in files if "migrations" not in file.parts]


def string_constants(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level NAME = "X" or NAME = ("X", "Y"): names an env read may go through."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            items = value.elts if isinstance(value, (ast.Tuple, ast.List)) else [value]
            if isinstance(target, ast.Name) and all(
                isinstance(item, ast.Constant) and isinstance(item.value, str) for item in items
            ):
                constants[target.id] = [item.value for item in items]
    return constants


def loop_variables(tree: ast.Module, constants: dict[str, list[str]]) -> dict[str, list[str]]:
    """`for variable in SECRET_VARIABLES`: the loop variable stands for each constant."""
    loops = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.iter, ast.Name):
            if isinstance(node.target, ast.Name) and node.iter.id in constants:
                loops[node.target.id] = constants[node.iter.id]
    return loops


def is_env_read(node: ast.AST) -> ast.expr | None:
    """The expression naming the variable, when `node` reads the environment."""
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        return node.slice if ast.unparse(node.value) == "os.environ" else None
    if not isinstance(node, ast.Call) or not node.args:
        return None
    called = ast.unparse(node.func)
    if called in ("os.environ.get", "os.getenv"):
        return node.args[0]
    # os.environ.setdefault only offers a default to others (DJANGO_SETTINGS_MODULE).
    if isinstance(node.func, ast.Name) and node.func.id in READERS:
        return node.args[0]
    return None


def parameters_around(tree: ast.Module) -> dict[int, set[str]]:
    """For each node, the parameter names of the functions enclosing it."""
    around: dict[int, set[str]] = {}

    def visit(node: ast.AST, params: set[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            params = params | {arg.arg for arg in ast.walk(node.args) if isinstance(arg, ast.arg)}
        around[id(node)] = params
        for child in ast.iter_child_nodes(node):
            visit(child, params)

    visit(tree, set())
    return around


def env_reads(source: str, where: str) -> set[str]:
    """Every variable name `source` reads from the environment; fails on a name it cannot
    resolve, so a new way of reading the environment cannot slip past this test."""
    tree = ast.parse(source)
    constants = string_constants(tree)
    names = constants | loop_variables(tree, constants)
    params = parameters_around(tree)
    found = set()
    for node in ast.walk(tree):
        named = is_env_read(node)
        if named is None:
            continue
        if isinstance(named, ast.Constant) and isinstance(named.value, str):
            found.add(named.value)
        elif isinstance(named, ast.Name) and named.id in params[id(node)]:
            continue  # inside an env helper: its callers name the variable
        elif isinstance(named, ast.Name) and named.id in names:
            found.update(names[named.id])
        else:
            raise AssertionError(f"{where}:{node.lineno}: cannot tell which variable is read")
    return found


def variables_read() -> set[str]:
    found = set()
    for file in python_files():
        found |= env_reads(file.read_text(), str(file.relative_to(ROOT)))
    return found


def documented_rows() -> list[str]:
    return VARIABLE_ROW.findall(CONFIGURATION.read_text())


def test_the_scanner_resolves_constants_and_loops_and_refuses_the_unknown():
    source = (
        'ENV = "A_DIR"\nNAMES = ("B_KEY", "C_KEY")\n'
        "def f(name):\n    return os.environ.get(name)\n"
        'x = os.environ.get(ENV)\ny = [os.getenv(v) for v in NAMES]\nz = env_int("D_N", 1)\n'
        'w = os.environ["E_VAR"]\nos.environ.setdefault("NOT_READ", "1")\n'
    )
    assert env_reads(source, "snippet") == {"A_DIR", "B_KEY", "C_KEY", "D_N", "E_VAR"}
    with pytest.raises(AssertionError, match="snippet:1: cannot tell"):
        env_reads("os.environ.get(prefix + 'X')", "snippet")


def test_every_variable_the_code_reads_is_documented_exactly_once():
    rows = documented_rows()
    read = variables_read()
    assert {"SECRET_KEY", "PROMETHEUS_MULTIPROC_DIR", "GUNICORN_BIND", "DEMO_PORT"} <= read
    assert sorted(read - set(rows)) == [], "read by the code but not in docs/configuration.md"
    twice = sorted({name for name in rows if rows.count(name) > 1})
    assert twice == [], "documented twice in docs/configuration.md"


def test_the_table_names_only_variables_the_code_reads():
    not_read = set(documented_rows()) - variables_read() - RESERVED
    assert sorted(not_read) == [], "in docs/configuration.md but read by no code"


def test_configuration_is_one_table_and_no_other_page_repeats_its_rows():
    assert CONFIGURATION.read_text().count("| variable | default | meaning |") == 1
    documented = set(documented_rows())
    for page in PAGES:
        if page != CONFIGURATION:
            repeated = documented & set(VARIABLE_ROW.findall(page.read_text()))
            assert sorted(repeated) == [], f"{page.name} has a table row of a variable"


def test_readme_is_the_short_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    text = "\n".join(lines)
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README.md does not lead to {page.name}"


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {
        re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-") for heading in headings
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_reach_a_file_and_heading(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    links = [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]
    for link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_file(), f"{page.name}: {link} reaches no file"
        if anchor:
            assert anchor in heading_anchors(target), f"{page.name}: {link} reaches no heading"
