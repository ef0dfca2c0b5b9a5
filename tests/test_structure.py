"""The structure the README and docs/ARCHITECTURE.md promise, checked on the source with ast:
SQL only in the database package, imports pointing down the layers, no import circles, the
writer's lease apart from the places that keep it, the Bot API only through pyTelegramBotAPI's
public names, and sizes that stay readable."""

import ast
import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
MODULES = {path.stem: path for path in PROJECT.glob("*.py")}
PACKAGE = {f"database.{path.stem}": path for path in (PROJECT / "database").glob("*.py")}
MODULES["database"] = PROJECT / "database" / "__init__.py"  # the package, as the rest sees it
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 700, 400, 60

# Each module's layer: a module imports only modules of lower layers (docs/ARCHITECTURE.md).
LAYERS = {
    "backup": 13,  # the `python backup.py` entry
    "main": 12,
    "backup_cli": 12,  # wiring: the startup and shutdown; the command line
    "lifecycle": 11,  # the instance's part in a deployment: serving, handing over, passive
    "admin_panel": 11,  # the admin panel's wiring
    "panel_restore": 10,  # ♻️ Restore
    "panel_backups": 9,  # ⚙️ System and 💾 Backup
    "handlers": 9,
    "tasks": 9,
    "web": 9,
    "updates": 9,  # what people, Telegram and the clock drive
    "startup": 8,  # the startup's database steps; which places off the machine are on
    "liveness": 8,  # a writer's quiet periods and freezes
    "engine": 7,  # the backup engine
    "panel_users": 7,  # 👥 Users
    "catalog": 6,
    "chain_keeper": 6,  # the writer's chain: which file a backup becomes, and after a restore  # what backups there are, and reading one back
    "offsite_copies": 6,  # the copies that leave the machine: sent, read back, rotated
    "telegram_destination": 7,  # the chat's backups and the lease kept there
    "telegram_chat": 6,  # the backup chat and its pinned index
    "s3_destination": 6,  # places off the machine: backups and the writer's lease there
    "admin_users": 6,  # what the panel shows of people
    "telegram_index": 5,  # the chat's index
    "lease": 4,  # the writer's lease: who may write off the machine
    "chains": 3,  # restoring a change backup through its chain
    "moderation": 3,  # blocking and unblocking people
    "outbox": 3,  # alerts: delayed by flood control, never dropped
    "destinations": 3,  # the destination interface and the local folder
    "destination_status": 3,  # how storing went, and the pause
    "backup_format": 2,  # the backup file
    "messaging": 2,
    "command_menu": 2,  # Telegram's "/" menu
    "chat_writes": 2,  # the other processes' writes to the backup chat, as learned
    "telegram_errors": 2,  # Telegram's errors in people's words
    "readers": 2,  # talking to people, each in their language
    "panel_screens": 2,  # the admin panel's screens and buttons
    "database": 1,  # the package: every SQL statement
    "sealing": 1,
    "deltas": 1,
    "upload_meter": 2,  # what backups upload, and the budget  # change backups: the pages that changed, and their chain
    "i18n": 1,
    "bot_api": 1,  # encryption; texts people read; the Bot API
    "config": 0,
    "logs": 0,
    "clock": 0,
    "human": 0,
    "files": 0,
    "locks": 0,
    "chart": 0,
    "pacer": 0,  # foundations
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
    path = MODULES.get(name) or PACKAGE[name]
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def import_graph() -> dict[str, set[str]]:
    return {name: (project_imports(parsed(name)) & set(MODULES)) - {name} for name in MODULES}


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
def test_only_the_database_package_speaks_sql(name):
    assert sql_spoken(parsed(name)) == []


def test_the_database_package_has_no_circle_and_is_reached_only_through_its_front():
    """Inside the package its modules import each other without circles, and only what is
    below it (files, locks); the rest of the bot imports `database` itself, never a part."""
    inner, outer = {}, {}
    for name in PACKAGE:
        modules = {
            node.module for node in ast.walk(parsed(name)) if isinstance(node, ast.ImportFrom) and node.module
        }
        inner[name] = {m for m in modules if m in PACKAGE}
        outer[name] = project_imports(parsed(name)) & (set(MODULES) - {"database"})
    assert find_circle(inner) == []
    assert {
        name: found for name, found in outer.items() if any(LAYERS[m] >= LAYERS["database"] for m in found)
    } == {}
    reaching_in = [
        f"{name} imports {node.module}"
        for name in set(MODULES) - {"database"}
        for node in ast.walk(parsed(name))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("database.")
    ]
    assert reaching_in == []


def test_the_writers_lease_is_apart_from_the_places_that_keep_it():
    """lease.py knows places off the machine only as LeaseStores, the destination interface has
    no head or knock, and the engine and the lifecycle know no place by its kind."""
    assert not project_imports(parsed("lease")) & {"telegram_destination", "s3_destination", "engine"}
    protocol = next(
        node
        for node in ast.walk(parsed("destinations"))
        if isinstance(node, ast.ClassDef) and node.name == "Destination"
    )
    assert {f.name for f in protocol.body if isinstance(f, ast.FunctionDef)} == {
        "put",
        "list",
        "fetch",
        "delete",
    }
    for name in ("engine", "lifecycle", "tasks"):
        assert not project_imports(parsed(name)) & {"telegram_destination", "s3_destination"}, name


def private_library_names(tree: ast.AST) -> list[str]:
    """pyTelegramBotAPI's private names used (apihelper._make_request...), and its global API_URL
    or FILE_URL rewritten: bot_api.py talks to the library through its public names only."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if (isinstance(base, ast.Attribute) and base.attr == "apihelper") or (
                isinstance(base, ast.Name) and base.id in ("apihelper", "telebot", "util")
            ):
                found.append(f"{node.attr} (line {node.lineno})")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr in ("API_URL", "FILE_URL"):
                    found.append(f"{target.attr} rewritten (line {node.lineno})")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("telebot"):
            found += [f"{a.name} (line {node.lineno})" for a in node.names if a.name.startswith("_")]
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_public_names_of_pytelegrambotapi(name):
    assert private_library_names(parsed(name)) == []


@pytest.mark.parametrize(
    "source",
    [
        "telebot.apihelper._make_request(token, 'getUpdates')",
        "apihelper._check_result('x', response)",
        "telebot.apihelper.API_URL = url",
        "from telebot.apihelper import _make_request",
    ],
)
def test_the_private_name_detector_sees_them(source):
    assert private_library_names(ast.parse(source)) != []


def oversized(name: str) -> list[str]:
    """What in a module is over the sizes: the module, a class, a function (what is defined
    inside a function counts as part of it)."""
    tree = parsed(name)
    path = MODULES.get(name) or PACKAGE[name]
    found = []
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: {lines} lines")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        size = node.end_lineno - node.lineno + 1
        if isinstance(node, ast.ClassDef) and size > MAX_CLASS_LINES:
            found.append(f"{name}.{node.name}: {size} lines")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > MAX_FUNCTION_LINES:
            found.append(f"{name}.{node.name}: {size} lines")
    return found


@pytest.mark.parametrize("name", sorted(set(MODULES) | set(PACKAGE)))
def test_sizes_that_tell_you_something(name):
    assert oversized(name) == []


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
