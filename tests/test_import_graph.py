"""The apps' imports point one way: core ← accounts ← devices ← relay ← wimz (the project).

A module may import its own package and packages to its left, never one to its right: `accounts`
and `devices` know nothing of `relay` (the relay learns of their changes through signals), and no
app imports the project package `wimz`. Every import statement counts, including those inside
functions. `relay/protocol.py`, the frame vocabulary, imports no Django model at all.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "accounts", "devices", "relay", "wimz"]
RANK = {name: i for i, name in enumerate(LAYERS)}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """`(line, dotted module)` for every absolute import in `path` (relative imports stay in the package)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_imports(package: str) -> list[str]:
    """`path:line imports module` for each import of a package ranked above `package`."""
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in RANK and RANK[top] > RANK[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_imports_one_above_it(package):
    """core imports no app; accounts none of devices/relay/wimz; devices none of relay/wimz; relay not wimz."""
    assert upward_imports(package) == []


def test_the_frame_vocabulary_loads_no_django_model():
    """relay/protocol.py (parsing and field checks) imports no `models` module, so it stays pure."""
    modules = [module for _, module in imported_modules(ROOT / "relay/protocol.py")]
    assert not [m for m in modules if m.split(".")[-1] == "models" or m.startswith("django.db")], modules


def test_the_checker_sees_imports_inside_functions(tmp_path, monkeypatch):
    """An import inside a function of `devices` naming `relay` is reported."""
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "x.py").write_text("def f():\n    from relay import delivery\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert upward_imports("devices") == ["devices/x.py:2 imports relay"]


def server_imports(package: str) -> list[str]:
    """`path:line imports module` for each import of a server package (core, the apps, wimz) in `package`."""
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] in RANK
    ]


def test_the_client_library_imports_nothing_of_the_server():
    """`sim/` (the client library the simulators, the bench and the live tests connect with) speaks the wire
    contract only: it imports no server package, so it checks the relay against a second reading of it."""
    assert server_imports("sim") == []
