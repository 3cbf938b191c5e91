"""setup.cfg reads the version statically (setuptools' ``attr:`` without importing the package):
the module it names must assign ``__version__`` a literal, and it is the version npgpt reports."""

import ast
import configparser
import os

import npgpt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setup_cfg_names_a_module_that_assigns_the_version_as_a_literal():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    spec = cfg["metadata"]["version"]
    assert spec.startswith("attr:"), spec
    module, _, name = spec[len("attr:"):].strip().rpartition(".")
    path = os.path.join(REPO, *module.split(".")) + ".py"
    if not os.path.exists(path):
        path = os.path.join(REPO, *module.split("."), "__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    literals = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and isinstance(node.value, ast.Constant)]
    assert literals == [npgpt.__version__]
