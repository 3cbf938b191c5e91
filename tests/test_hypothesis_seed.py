"""``--hypothesis-seed=N`` draws the examples of seed N under the derandomised ``ci`` profile
(tests/conftest.py: hypothesis would otherwise let ``derandomize`` win and ignore the seed):
the same seed draws the same examples, another seed others."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def tiny(tmp_path):
    """A folder whose conftest.py is tests/conftest.py's profiles and hook, and one property
    test that writes the integers it was given."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("tests_conftest", {os.path.join(TESTS, "conftest.py")!r})
        tests_conftest = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tests_conftest)
        globals().update({{name: hook for name, hook in vars(tests_conftest).items()
                          if name.startswith("pytest_")}})
        """))
    (tmp_path / "test_draws.py").write_text(textwrap.dedent("""
        from hypothesis import given, strategies as st

        @given(st.integers(0, 10 ** 9))
        def test_draw(n):
            with open("draws.txt", "a") as f:
                f.write(f"{n}\\n")
        """))
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --hypothesis-profile=ci\n")

    def draws(*args):
        (tmp_path / "draws.txt").unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                       cwd=tmp_path, check=True, capture_output=True, timeout=120)
        return (tmp_path / "draws.txt").read_text().split()
    return draws


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hypothesis") is None, reason="hypothesis is not installed")
def test_a_seed_replays_its_examples_and_another_seed_draws_others(tiny):
    one, two = tiny("--hypothesis-seed=1"), tiny("--hypothesis-seed=2")
    assert len(one) == len(two) == 40                                  # the ci profile's count
    assert one != two
    assert tiny("--hypothesis-seed=1") == one
