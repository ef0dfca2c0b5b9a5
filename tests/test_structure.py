"""The structure the README and docs/ARCHITECTURE.md promise, checked on the source with ast:
SQL only in database.py, imports pointing down the layers, no import circles."""

import ast
import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
MODULES = {path.stem: path for path in PROJECT.glob("*.py")}

# Each module's layer: a module imports only modules of lower layers (docs/ARCHITECTURE.md).
LAYERS = {
    "backup": 10,  # the `python backup.py` entry
    "main": 9,
    "backup_cli": 9,  # wiring
    "lifecycle": 8,  # the instance's part in a deployment: serving, handing over, passive
    "admin_panel": 7,
    "handlers": 7,
    "tasks": 7,
    "web": 7,
    "updates": 7,  # what people and the clock drive
    "startup": 6,  # the startup's database steps
    "engine": 5,  # the backup engine
    "telegram_destination": 4,
    "s3_destination": 4,  # places off the machine
    "destinations": 3,
    "telegram_index": 3,  # the interface and the local folder; the chat's index
    "backup_format": 2,  # the backup file, and the head
    "messaging": 2,
    "readers": 2,  # talking to people, each in their language
    "moderation": 3,  # blocking and unblocking people
    "admin_users": 4,  # what the panel shows of people
    "database": 1,
    "sealing": 1,
    "i18n": 1,  # every SQL statement; encryption; texts people read
    "config": 0,
    "logs": 0,
    "clock": 0,
    "human": 0,
    "files": 0,
    "locks": 0,
    "chart": 0,  # foundations
}

SQL = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|BEGIN|COMMIT|ROLLBACK|"
    r"WITH RECURSIVE|VACUUM|ATTACH|REPLACE INTO)\b"
)
SQL_CALLS = {"execute", "executemany", "executescript"}


def project_imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def sql_spoken(tree: ast.AST) -> list[str]:
    """What in this source speaks SQL: sqlite3 imports, SQL text, execute() calls."""
    found = [f"imports {name}" for name in project_imports(tree) if name == "sqlite3"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            found.append(f"SQL text {node.value[:40]!r} (line {node.lineno})")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            found.append(f".{node.func.attr}() (line {node.lineno})")
    return found


def parsed(name: str) -> ast.AST:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"), str(MODULES[name]))


def import_graph() -> dict[str, set[str]]:
    return {name: project_imports(parsed(name)) & set(MODULES) for name in MODULES}


def test_every_module_has_its_layer():
    assert set(MODULES) == set(LAYERS), "add a new module to LAYERS and to docs/ARCHITECTURE.md"


def test_imports_point_down_the_layers():
    upward = [
        f"{name} (layer {LAYERS[name]}) imports {other} (layer {LAYERS[other]})"
        for name, imported in import_graph().items()
        for other in sorted(imported)
        if LAYERS[other] >= LAYERS[name]
    ]
    assert upward == []


def find_circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as a path (a -> b -> a), or [] when there is none."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str]:
        state[name] = "open"
        for other in sorted(graph.get(name, ())):
            if state.get(other) == "open":
                return [*path[path.index(other) :], other]
            if other not in state:
                circle = visit(other, [*path, other])
                if circle:
                    return circle
        state[name] = "done"
        return []

    for start in sorted(graph):
        if start not in state:
            circle = visit(start, [start])
            if circle:
                return circle
    return []


def test_there_is_no_import_circle():
    assert find_circle(import_graph()) == []


def test_the_circle_finder_finds_circles():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"database"}))
def test_only_database_py_speaks_sql(name):
    assert sql_spoken(parsed(name)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import sqlite3",
        "from sqlite3 import connect",
        "x = 'SELECT count(*) FROM users'",
        "x = f'PRAGMA {name}'",
        "conn.execute(query)",
    ],
)
def test_the_sql_detector_sees_sql(source):
    assert sql_spoken(ast.parse(source)) != []
