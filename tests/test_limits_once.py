"""The published limits live in ccnet/limits.py alone: no other module of the product defines a
constant of the same name, and no other module writes one of the distinctive values (the byte and
pixel budgets) as a number of its own. A limit restated elsewhere would drift from the table that
docs/robustness.md publishes."""
from __future__ import annotations

import ast
import operator
import re

import pytest

from ccnet import limits
from ccnet.project import ROOT

LIMITS = {name: value for name, value in vars(limits).items()
          if name.isupper() and isinstance(value, int | float) and not isinstance(value, bool)}
# the budgets: small numbers and powers of two (2**20 is also the MiB every size is printed in) recur honestly
DISTINCTIVE: dict[int | float, str] = {}
for _name, _value in LIMITS.items():
    if _value >= 65_536 and _value & (_value - 1):
        DISTINCTIVE[_value] = f"{DISTINCTIVE[_value]} or {_name}" if _value in DISTINCTIVE else _name
SOURCES = sorted(p for p in [*ROOT.glob("ccnet/**/*.py"), ROOT / "app.py", *ROOT.glob("tools/*.py"),
                             *ROOT.glob("tests/**/*.py")] if p != ROOT / "ccnet" / "limits.py")
PAGES = sorted(p for p in [*ROOT.glob("docs/*.md"), ROOT / "README.md"] if p.name != "robustness.md")
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow,
             ast.LShift: operator.lshift}


def constant(node: ast.AST) -> int | float | None:
    """The value of a number written with literals alone (20 << 20, 2**20 * 20), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        left, right = constant(node.left), constant(node.right)
        if left is not None and right is not None and abs(right) < 64:
            return OPERATORS[type(node.op)](left, right)
    return None


def test_the_check_sees_the_limits():
    assert {"FILE_BYTES", "DECODE_BUDGET_BYTES", "BODY_BYTES", "SESSIONS"} <= LIMITS.keys()
    assert set(DISTINCTIVE.values()) == {"FILE_BYTES", "MAX_PIXELS", "DECODE_BUDGET_BYTES or ANALYSES_BYTES",
                                         "MAX_CLIP_PIXELS", "CLIP_ANALYSES_BYTES", "VIEWER_DATA_BYTES"}
    assert constant(ast.parse("20 << 20", mode="eval").body) == limits.FILE_BYTES


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_restates_a_limit(source):
    tree = ast.parse(source.read_text())
    redefined = [target.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
                 for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                 if isinstance(target, ast.Name) and target.id in LIMITS]
    assert redefined == [], f"{source.relative_to(ROOT)} defines {redefined}: read them from ccnet.limits"
    restated = sorted({f"{DISTINCTIVE[value]} ({value}) at line {node.lineno}" for node in ast.walk(tree)
                       if (value := constant(node)) in DISTINCTIVE})
    assert restated == [], f"{source.relative_to(ROOT)} writes a limit's value itself: {restated}"


def printed(name: str, value: int) -> list[str]:
    """How a page would write a distinctive limit: 40,000,000 (pixels), 768 MiB (bytes)."""
    return [f"{value / limits.MiB:g} MiB", f"{value / limits.MiB:g} MB"] if name.endswith("BYTES") else [f"{value:,}"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_restates_a_limit(page):
    """The docs point at the generated table (docs/robustness.md) or name the constant instead."""
    text = page.read_text()
    restated = [form for value, name in DISTINCTIVE.items() for form in printed(name, value)
                if re.search(rf"(?<![\d.,]){re.escape(form)}(?![\d,])", text)]
    assert restated == [], f"{page.relative_to(ROOT)} writes a limit's value itself: {restated}"
