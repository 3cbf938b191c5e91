"""Every public function, class and method of npgpt shows a runnable example in its docstring.

pytest runs those examples (``--doctest-modules`` in setup.cfg); this test makes sure there
is one to run for each public name, and that none is switched off with ``+SKIP``.
Public: defined in a module of ``npgpt`` whose name has no leading underscore, and not
itself underscored (properties and dunder methods excepted).
"""

import ast
import os

import pytest

import npgpt

PACKAGE = os.path.dirname(npgpt.__file__)


def public_modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, PACKAGE)
            if name.endswith(".py") and not any(p.startswith("_") and p != "__init__.py"
                                                for p in rel.split(os.sep)):
                yield rel, path


def public_definitions(tree):
    """(qualified name, node) of every public function, class and method in a module."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
                            and not any(isinstance(d, ast.Name) and d.id == "property"
                                        for d in item.decorator_list)):
                        yield f"{node.name}.{item.name}", item


DEFINITIONS = [(f"{rel}:{name}", node) for rel, path in public_modules()
               for name, node in public_definitions(ast.parse(open(path, encoding="utf-8").read()))]


def test_the_package_has_public_definitions():
    assert len(DEFINITIONS) > 100


@pytest.mark.parametrize("name, node", DEFINITIONS, ids=[d[0] for d in DEFINITIONS])
def test_public_definition_has_a_runnable_example(name, node):
    doc = ast.get_docstring(node) or ""
    assert ">>>" in doc, f"{name} has no docstring example"
    assert "+SKIP" not in doc, f"{name} skips its docstring example"
