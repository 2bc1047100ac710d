"""The layering, drawn from the imports: adapters -> bot <- storage, with one composition root
(bot/main/) that alone imports adapters and storage; the core imports no platform library;
config and models import nothing of the project; no import circles.

Imports are read with ast from every module, those inside functions and under TYPE_CHECKING
included: each is an edge of the graph. And modules and functions stay small (their lines
counted), a data table excepted."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = {"discord", "telegram"}
LAYERED = ("bot", "adapters", "storage")  # the packages whose import graph is checked
ROOT_MAIN = "bot.main"  # the composition root
# Every top-level package or module of the project (a `sandbox` package, should it move out
# of bot/, counts at once).
PROJECT = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {
    p.stem for p in ROOT.glob("*.py")
}


def test_bot_and_storage_source_import_no_platform_library() -> None:
    offenders = []
    for package in ("bot", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in PLATFORMS]
    assert offenders == []


def test_importing_every_core_module_loads_no_platform_library() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import bot, storage\n"
        "for pkg in (bot, storage):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('discord', 'telegram'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


# -- the import graph --------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    source: str  # the importing module
    target: str  # what it imports: the project module it names, else the name as written
    where: str  # path:line, for the failure message

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in LAYERED for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str:
    """The longest prefix of `name` that is a module of the layered packages, else `name`."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return name


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every name `module` imports, absolute, with its line: at the top, in functions, under
    TYPE_CHECKING alike. `from a import b` names a.b when that is a module, else a."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if _resolve(full) == full else base), node.lineno


def _edges() -> list[Edge]:
    edges: dict[Edge, None] = {}  # one per target and line, in the order found
    for module, path in MODULES.items():
        where = path.relative_to(ROOT)
        for name, line in _imports(module, path):
            target = _resolve(name)
            if target != module:
                edges[Edge(module, target, f"{where}:{line}")] = None
    return list(edges)


EDGES = _edges()


def _inside(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _top(name: str) -> str:
    return name.split(".")[0]


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import circle as a path that ends where it began, or None."""
    state: dict[str, str] = {}  # "open" while on the path, then "done"
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for after in sorted(graph.get(node, ())):
            if state.get(after) == "open":
                return [*path[path.index(after) :], after]
            if after not in state and (found := visit(after)):
                return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


# -- the rules ---------------------------------------------------------------------------------


def test_the_graph_is_read_from_every_module_and_every_kind_of_import(tmp_path: Path) -> None:
    """A guard for the rules below: they see every module, and imports at the top, inside
    functions, under TYPE_CHECKING and relative ones alike."""
    assert {"bot.app", "bot.config", "bot.models", "bot.main.cli", "storage.sqlite"} <= set(MODULES)
    assert any(_top(e.target) == "adapters" for e in EDGES if e.source == "bot.main.wiring")
    source = tmp_path / "bot" / "gateway" / "sample.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import bot.config\n"
        "from bot import models\n"
        "from .base import Gateway\n"
        "from .. import catalog\n"
        "if TYPE_CHECKING:\n"
        "    from storage.sqlite import SqliteJobStore\n"
        "def later() -> None:\n"
        "    from adapters.console import ConsoleSink\n"
    )
    names = {name for name, _ in _imports("bot.gateway.sample", source)}
    assert {
        "bot.config",
        "bot.models",
        "bot.gateway.base",
        "bot.catalog",
        "storage.sqlite",
        "adapters.console",
    } <= names


def test_the_core_outside_its_composition_root_imports_no_adapter_storage_or_platform() -> None:
    banned = {"adapters", "storage", "sandbox", *PLATFORMS}
    offenders = [
        str(e)
        for e in EDGES
        if _inside(e.source, "bot")
        and not _inside(e.source, ROOT_MAIN)
        and (_top(e.target) in banned or _inside(e.target, "bot.sandbox"))
    ]
    assert not offenders, "\n".join(offenders)


def test_storage_imports_no_adapter_and_not_the_composition_root() -> None:
    offenders = [
        str(e)
        for e in EDGES
        if _inside(e.source, "storage") and _inside(e.target, "adapters", ROOT_MAIN)
    ]
    assert not offenders, "\n".join(offenders)


def test_adapters_import_neither_the_composition_root_nor_storage() -> None:
    offenders = [
        str(e)
        for e in EDGES
        if _inside(e.source, "adapters") and _inside(e.target, ROOT_MAIN, "storage")
    ]
    assert not offenders, "\n".join(offenders)


def test_config_and_models_import_nothing_of_the_project() -> None:
    offenders = [
        str(e)
        for e in EDGES
        if e.source in ("bot.config", "bot.models") and _top(e.target) in PROJECT
    ]
    assert not offenders, "\n".join(offenders)


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in EDGES:
        if e.target in MODULES:
            graph[e.source].add(e.target)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle_and_only_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_only_the_composition_root_imports_adapter_and_storage_implementations() -> None:
    offenders = [
        str(e)
        for e in EDGES
        if (_inside(e.target, "adapters") and not _inside(e.source, "adapters", ROOT_MAIN))
        or (_inside(e.target, "storage") and not _inside(e.source, "storage", ROOT_MAIN))
    ]
    assert not offenders, "\n".join(offenders)


# -- size --------------------------------------------------------------------------------------

SIZED = ("bot", "adapters", "storage", "sandbox")  # the packages whose sizes are checked
MAX_MODULE_LINES = 420  # the aim is about 400
MAX_FUNCTION_LINES = 60
# Over the limits on purpose, as "path" (the whole module) or "path:function".
ALLOWLIST = {
    "bot/catalog.py:default_specs",  # a data table: one entry per model
}


def _too_large() -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES, less the
    allowlisted ones."""
    found = []
    for package in SIZED:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            if module in ALLOWLIST:
                continue
            source = path.read_text()
            lines = len(source.splitlines())
            if lines > MAX_MODULE_LINES:
                found.append(f"{module}: {lines} lines")
            for node in ast.walk(ast.parse(source, filename=module)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    where = f"{module}:{node.name}"
                    if length > MAX_FUNCTION_LINES and where not in ALLOWLIST:
                        found.append(f"{where}: {length} lines")
    return found


def test_modules_and_functions_stay_small() -> None:
    too_large = _too_large()
    assert not too_large, "split these by job:\n" + "\n".join(too_large)


# -- words -------------------------------------------------------------------------------------

# The modules every sentence a chat user reads from the core lives in (bot/messages.py
# re-exports the others).
WORDS = {
    "bot/messages.py",
    "bot/refusal_messages.py",
    "bot/rules_messages.py",
    "bot/session_messages.py",
}
# The calls whose argument is words a user reads: a refusal (its first argument or
# `message=`) and a failed job's error message (`error_message=`, as a gateway reports it).
REFUSAL = "RequestRejected"
WORDS_KEYWORDS = {"message", "error_message"}


def _written_out(node: ast.expr) -> bool:
    """Whether `node` spells words out: a string literal or an f-string, alone, joined with
    `+` or `%`, or `.format`ted."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _written_out(node.left) or _written_out(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "format" and _written_out(node.func.value)
    return False


def _sentences(source: str, module: str) -> Iterator[str]:
    """Where `source` writes out words for a user in a refusal or an error message."""
    for node in ast.walk(ast.parse(source, filename=module)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        said = [k.value for k in node.keywords if k.arg in WORDS_KEYWORDS]
        if name == REFUSAL:
            said += node.args[:1]
        for words in filter(_written_out, said):
            yield f"{module}:{words.lineno}: {ast.unparse(words)}"


def test_the_sentence_finder_sees_every_way_of_writing_words() -> None:
    source = (
        "RequestRejected('Nope.', code='x')\n"
        "errors.RequestRejected(f'No {thing}.')\n"
        "RequestRejected(message='No ' + thing)\n"
        "TaskUpdate(state=s, error_message='{} failed'.format(x))\n"
        "RequestRejected(messages.NOPE, code='x')\n"
        "RequestRejected(messages.nope_text(thing))\n"
        "log.info('not words for a user: %s', x)\n"
    )
    assert [line.split(":")[1] for line in _sentences(source, "m.py")] == ["1", "2", "3", "4"]


def test_no_user_sentences_outside_the_words() -> None:
    """Every refusal and failed job's message is said by a words module (issue 13, point 5)."""
    found = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        module = path.relative_to(ROOT).as_posix()
        if module not in WORDS:
            found += _sentences(path.read_text(), module)
    assert not found, "move these words to bot/messages.py:\n" + "\n".join(found)
