"""Every path, module and command the code and the docs name exists: a docstring, a comment or a page
that names `ccnet/app/ui.py` after it became a folder, or `python -m ccnet demos` after the command
moved to tools/, is caught here, not by a confused reader."""
from __future__ import annotations

import importlib
import re

import pytest

from ccnet.project import ROOT

SOURCES = sorted([*ROOT.glob("ccnet/**/*.py"), *ROOT.glob("tools/*.py"), ROOT / "app.py",
                  *ROOT.glob("ccnet/**/*.js"), *ROOT.glob("docs/*.md"), ROOT / "README.md",
                  *ROOT.glob("assets/*.md"), ROOT / "demos" / "README.md", *ROOT.glob("tests/**/*.md")])
PATH = re.compile(r"(?<![\w/.-])((?:ccnet|tools|docs|assets|demos|tests)/[\w/.-]*\w\.(?:json|py|js|css|md|pt|png))\b")
MODULE = re.compile(r"(?<![\w/.-])(ccnet(?:\.\w+)+)")
COMMAND = re.compile(r"python -m ccnet ([a-z][\w-]*)")  # a subcommand; `python -m tools.X` is a MODULE-like name
CHOICE = re.compile(r"python -m ccnet ([a-z][\w-]*) ([a-z][\w-]*)")  # and the word after it, where it takes choices
SCRIPT = re.compile(r"python -m (tools\.[a-z_]+)(?!\w)")  # tools.NAME is a placeholder
FILE_SUFFIXES = {"onnx", "pt", "pth", "npz", "json", "png", "py"}  # ccnet.onnx is a file a command writes
ONNX_METADATA = {"ccnet.protocol", "ccnet.kind", "ccnet.classes", "ccnet.palette", "ccnet.model"}  # keys, not modules


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_paths_and_modules_a_file_names_exist(source):
    text = source.read_text()
    missing = [path for path in PATH.findall(text) if not (ROOT / path).exists()]
    assert missing == [], f"{source.relative_to(ROOT)} names files that do not exist: {missing}"
    named = {name for name in MODULE.findall(text) if name.rsplit(".", 1)[1] not in FILE_SUFFIXES}
    unresolved = [name for name in named - ONNX_METADATA if not _resolves(name)]
    assert unresolved == [], f"{source.relative_to(ROOT)} names modules that do not exist: {unresolved}"
    commands = set(COMMAND.findall(text)) - _commands()
    commands |= {f"{command} {word}" for command, word in CHOICE.findall(text)
                 if _choices(command) is not None and word not in _choices(command)}
    scripts = [name for name in set(SCRIPT.findall(text)) if not (ROOT / (name.replace(".", "/") + ".py")).is_file()]
    assert (commands, scripts) == (set(), []), f"{source.relative_to(ROOT)} names commands that do not exist"


def _commands() -> set[str]:
    from ccnet.cli import build_parser

    return set(build_parser()._subparsers._group_actions[0].choices)


def _choices(command: str) -> set[str] | None:
    """The choices of a subcommand's first positional (`bench attention`); None when it takes any word."""
    from ccnet.cli import build_parser

    parser = build_parser()._subparsers._group_actions[0].choices.get(command)
    positionals = [action for action in getattr(parser, "_actions", []) if not action.option_strings]
    return set(positionals[0].choices) if positionals and positionals[0].choices else None


def _resolves(dotted: str) -> bool:
    """A module, or an attribute of one (ccnet.limits.MAX_SIDE)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        value = module
        for name in parts[cut:]:
            if not hasattr(value, name):
                return False
            value = getattr(value, name)
        return True
    return False
