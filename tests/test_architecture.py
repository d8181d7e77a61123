"""The package's design, checked: imports run one way between folders, no module imports in a
cycle, only the UI imports Gradio, the server's room imports none of the explorer's logic, the
maintainers' scripts (tools/) use the package and never the reverse, the public API is what the
README says, and its example runs."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ccnet
from ccnet.project import ROOT

PACKAGE = ROOT / "ccnet"
# A folder may import its own modules and those of lower layers; app and experiments share a layer
# and may not import each other. __init__ (the public API) and __main__ sit outside the layers.
LAYERS = {"errors": 0, "project": 0, "limits": 0, "nn": 1, "inference": 2, "weights": 3, "viz": 4,
          "app": 5, "experiments": 5, "cli": 7}
TOOLS = ROOT / "tools"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ccnet module a file imports, at any depth (function-level imports included), and
    every 'ccnet.x' string handed to importlib."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"ccnet(\.\w+)+",
                                                                                            node.value):
            found.add(node.value)
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules and name.startswith("ccnet.")}


def layer_of(module: str) -> str:
    return module.split(".")[1]


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
                 or p.parent.name != "ccnet")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way_between_folders(path):
    own = layer_of(module_name(path))
    for target in imported_modules(path):
        other = layer_of(target)
        if other == own:
            continue
        assert LAYERS[other] < LAYERS[own], f"{module_name(path)} imports {target}: {own} may not import {other}"


def test_no_import_cycles():
    graph = {module_name(p): imported_modules(p) - {module_name(p)} for p in SOURCES}
    graph = {name: {t for t in targets if t in graph} for name, targets in graph.items()}
    done, stack = set(), []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node):], node]))
        if node in done:
            return
        stack.append(node)
        for target in sorted(graph[node]):
            visit(target)
        stack.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_the_package_never_imports_the_maintainers_scripts():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0]
        assert not [n for n in names if n == "tools" or n.startswith("tools.")], path


def test_the_server_imports_none_of_the_explorers_logic():
    """ccnet/app/server/ is what any public web app needs: it may use the lower layers and itself."""
    for path in (PACKAGE / "app" / "server").rglob("*.py"):
        for target in imported_modules(path):
            if target.startswith("ccnet.app."):
                assert target.startswith("ccnet.app.server"), f"{module_name(path)} imports {target}"


def test_only_the_ui_package_imports_gradio():
    importers = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                       if re.search(r"^\s*(import|from) gradio[\s.]", p.read_text(), re.M))
    assert importers and all(name.startswith("ccnet/app/ui/") for name in importers), importers


def test_modules_and_functions_stay_small():
    """~400 lines a module, ~60 a function: a place in the tree says what a file does."""
    for path in [*PACKAGE.rglob("*.py"), *TOOLS.rglob("*.py")]:
        text = path.read_text()
        assert text.count("\n") <= 420, f"{path} has {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path}:{node.lineno} {node.name} has {length} lines"


def test_the_public_api():
    assert sorted(ccnet.__all__) == sorted(
        ["load_model", "Predictor", "CrissCrossAttention", "CrissCrossAttention3d", "NonLocal2d", "CCNet",
         "explain_pixel", "load_video_model", "VideoPredictor", "decode_clip", "explain_clip_pixel"])
    for name in ccnet.__all__:
        assert getattr(ccnet, name).__module__.startswith("ccnet.")
    assert set(dir(ccnet)) >= set(ccnet.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ccnet.nothing  # noqa: B018


def test_the_limits_and_the_image_decoder_load_without_torch():
    """The public names load on first use, so a process that only decodes images does not pay for torch."""
    code = "import sys, ccnet.limits, ccnet.inference.images; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr[-2000:]


def test_the_readme_python_example_runs_with_the_public_api_only(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    code = "\n".join(line.removeprefix("  ") for line in block.splitlines())
    assert not re.search(r"^\s*(from|import) ccnet\.", code, re.M), "the example reaches past the public API"
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    maps = scope["maps"]
    assert len(maps.steps) == 2 and abs(float(maps.composed.sum()) - 1) < 1e-4
