"""pytest set-up shared by the tests and the docstring examples (``--doctest-modules`` runs
every ``>>>`` example in ``npgpt/``).

Each docstring example runs in an empty temporary folder, with ``np`` (NumPy) at hand, so an example that saves a file
leaves nothing behind; examples that draw pictures need matplotlib (the ``plot`` extra) and
are skipped when it is not installed.
"""

import configparser
import importlib.util
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from _pytest.doctest import DoctestItem

_NEEDS_MATPLOTLIB = ("npgpt.viz.figures.",)   # the figures module draws with matplotlib


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


# ------------------------------------------------------------- what the skips would need
# A skip reason that names a missing module: helpers.skip_without's "torch is not
# installed", pytest.importorskip's "could not import 'tokenizers': ...", "needs matplotlib".
_MISSING_MODULE = re.compile(r"^(?:([\w.]+) is not installed|could not import '([\w.]+)'"
                             r"|.*\bneeds ([\w.]+)\b)")


def _extras(setup_cfg=Path(__file__).with_name("setup.cfg")):
    """{module: extra} from setup.cfg's extras_require (``plot = matplotlib>=3.5``, ...)."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    extras = parser["options.extras_require"] if parser.has_section("options.extras_require") else {}
    return {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower(): extra
            for extra, lines in extras.items() for line in lines.splitlines() if line.strip()}


def skip_summary(reasons, extras):
    """One line: how many tests were skipped for each extra that would run them (the modules
    missing, from the reasons), then for each other reason, most frequent first; "" if none.
    Two "torch is not installed" and one "no FIFOs here" with ``extras={"torch": "parity"}``:
    ``skipped 2: install ".[parity]" (torch); 1: no FIFOs here``.
    """
    by_extra, modules, other = Counter(), {}, Counter()
    for reason in reasons:
        match = _MISSING_MODULE.match(reason)
        module = next((m for m in match.groups() if m), "") if match else ""
        if module.lower() in extras:
            extra = extras[module.lower()]
            by_extra[extra] += 1
            modules.setdefault(extra, set()).add(module)
        else:
            other[reason] += 1
    parts = [f'{n}: install ".[{extra}]" ({", ".join(sorted(modules[extra]))})'
             for extra, n in by_extra.most_common()]
    parts += [f"{n}: {reason}" for reason, n in other.most_common()]
    return "skipped " + "; ".join(parts) if parts else ""


def pytest_terminal_summary(terminalreporter):
    """After the run, one line grouping the skipped tests by the extra (or the setting) that
    would run them; ``-rs`` lists every skip."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons.append(reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason)
    line = skip_summary(reasons, _extras())
    if line:
        terminalreporter.write_line(line)
