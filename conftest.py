"""pytest set-up shared by the tests and the docstring examples (``--doctest-modules`` runs
every ``>>>`` example in ``npgpt/``).

Each docstring example runs in an empty temporary folder, with ``np`` (NumPy) at hand, so an example that saves a file
leaves nothing behind; examples that draw pictures need matplotlib (the ``plot`` extra) and
are skipped when it is not installed.
"""

import importlib.util

import numpy as np
import pytest
from _pytest.doctest import DoctestItem

_NEEDS_MATPLOTLIB = ("npgpt.viz.plot_",)


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("matplotlib") is not None:
        return
    skip = pytest.mark.skip(reason="the example draws a picture: needs matplotlib (pip install \"npgpt[plot]\")")
    for item in items:
        if isinstance(item, DoctestItem) and item.name.startswith(_NEEDS_MATPLOTLIB):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _numpy_in_doctests(doctest_namespace):
    doctest_namespace["np"] = np


@pytest.fixture(autouse=True)
def _doctest_in_a_temporary_folder(request, tmp_path, monkeypatch):
    if isinstance(request.node, DoctestItem):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MPLBACKEND", "Agg")
