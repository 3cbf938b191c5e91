"""Shared test set-up: hypothesis profiles and small helpers.

Profiles: ``ci`` (the default, set in setup.cfg: derandomised so CI is repeatable),
``dev`` (random, more examples) and ``thorough``; choose with ``--hypothesis-profile=dev``.
``--hypothesis-seed=N`` draws the examples of seed N instead, under any profile, so a run
with a random seed (``.ci/run`` makes one) is replayed by passing the same seed.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Hypothesis lets ``derandomize`` win over ``--hypothesis-seed``: with a seed, load the
    current profile again without it (and without the example database, so the seed alone
    decides what runs)."""
    if config.getoption("--hypothesis-seed", None) is None or not settings().derandomize:
        return
    name = f"{settings.get_current_profile_name()}-seeded"
    settings.register_profile(name, derandomize=False, database=None)
    settings.load_profile(name)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


@pytest.fixture
def fixtures_dir():
    return FIXTURES

# setup.cfg's --doctest-modules is meant for npgpt/: these scripts hold no doctests and import
# torch at their top, which a machine without the parity extra lacks.
collect_ignore = ["torch_reference.py"]
collect_ignore_glob = ["fixtures/*.py"]
