"""What `pip install -e .` (the README's first command) gives must be enough for every command the README shows
without an extra: build, status, export, publish --to, view. A third-party import in those modules that is not a
core dependency is a ModuleNotFoundError for a new user."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# The modules behind the README's extra-free commands (amc build/status/export/publish/view, amc.load).
CORE_MODULES = [
    *sorted((ROOT / "amc" / "publish").glob("*.py")),
    *sorted((ROOT / "amc" / "view").glob("*.py")),
    ROOT / "amc" / "cli" / "publish.py",
    ROOT / "amc" / "cli" / "view.py",
]
# Imported only on the Hub path, which needs network and a token anyway (huggingface_hub is a core dependency).
OPTIONAL = {"huggingface_hub"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_core_commands_import_only_core_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_norm(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    dists = importlib.metadata.packages_distributions()
    missing = {}
    for path in CORE_MODULES:
        for module in _imports(path) - {"amc", "__future__"} - set(sys.stdlib_module_names):
            owners = {_norm(d) for d in dists.get(module, [module])}
            if not owners & core:
                missing[module] = path.relative_to(ROOT).as_posix()
    assert not missing, f"imported by README commands but not a core dependency in pyproject.toml: {missing}"
