"""A fragment's own rerun (its timer, or a click on a button inside it) runs the fragment alone: the page's
module-level names then hold what the last full run left in them. A fragment that reads a name the page assigns
again after the fragment is defined reads that later value. The Train page's measurement read the recipe settings
``chosen`` while the run selector below it had rebound ``chosen`` to a run's name: with any run listed, a click on
"Measure this machine first" failed with "'str' object has no attribute 'items'" (found in chromium; AppTest reruns
the whole script on a click and never saw it). This checks every fragment of every page and of the UI modules."""

from __future__ import annotations

import ast
from pathlib import Path

from r2ta.config import PROJECT_ROOT

SOURCES = sorted((PROJECT_ROOT / "pages").glob("*.py")) + [PROJECT_ROOT / "app.py", PROJECT_ROOT / "r2ta" / "ui.py",
                                                           PROJECT_ROOT / "r2ta" / "ui_review.py"]


def _is_fragment(node: ast.FunctionDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(target, ast.Attribute) and target.attr == "fragment":
            return True
    return False


def _assigned(node: ast.AST) -> set[str]:
    """Names a statement binds in the scope it runs in (not inside nested functions or classes)."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Name) and isinstance(current.ctx, ast.Store):
            names.add(current.id)
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and current is not node:
            names.add(current.name)
            continue
        if isinstance(current, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in current.names)
        stack.extend(ast.iter_child_nodes(current))
    return names


def _late_reads(source: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """Names a fragment reads from the enclosing scope that the scope binds again below the fragment."""
    found = []
    tree = ast.parse(source.read_text(encoding="utf-8"))
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for scope in scopes:
        body = scope.body
        for index, stmt in enumerate(body):
            if not (isinstance(stmt, ast.FunctionDef) and _is_fragment(stmt)):
                continue
            local = {a.arg for a in ast.walk(stmt) if isinstance(a, ast.arg)}  # its own, its lambdas' and inner defs'
            for inner in ast.walk(stmt):
                if inner is not stmt:
                    local |= _assigned(inner) if isinstance(inner, ast.stmt) else set()
            read = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - local
            later = set().union(*(_assigned(s) for s in body[index + 1:])) if body[index + 1:] else set()
            found += [f"{source.relative_to(root)}: {stmt.name}() reads {name!r}, bound again below it"
                      for name in sorted(read & later)]
    return found


def test_no_fragment_reads_a_name_its_page_binds_again_below_it():
    assert [problem for source in SOURCES for problem in _late_reads(source)] == []


def test_the_check_finds_the_train_pages_old_mistake(tmp_path):
    page = tmp_path / "page.py"
    page.write_text(
        "import streamlit as st\n"
        "chosen = {'sft.num_train_epochs': 1}\n"
        "@st.fragment(run_every=2.0)\n"
        "def measure():\n"
        "    seen = dict(chosen)\n"
        "    return seen\n"
        "measure()\n"
        "chosen = st.selectbox('Run', ['a', 'b'])\n")
    assert _late_reads(page, tmp_path) == ["page.py: measure() reads 'chosen', bound again below it"]
