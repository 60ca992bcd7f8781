"""The hand-kept `_core.pyi` stub names exactly what the extension exports."""

from __future__ import annotations

import ast
from pathlib import Path

from fastgpt import _core


def stub_names() -> dict[str, set[str]]:
    tree = ast.parse((Path(_core.__file__).parent / "_core.pyi").read_text())
    names: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[""].add(node.name)
            names[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"}
        elif isinstance(node, ast.FunctionDef):
            names[""].add(node.name)
    return names


def test_stub_matches_extension():
    stub = stub_names()
    exported = {n for n in dir(_core) if not n.startswith("_")}
    assert stub[""] == exported
    for cls in stub[""] - {
        n for n in stub[""] if callable(getattr(_core, n)) and not isinstance(getattr(_core, n), type)
    }:
        public = {n for n in dir(getattr(_core, cls)) if not n.startswith("_")}
        assert stub[cls] == public, cls
