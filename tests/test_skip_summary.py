"""The line the root conftest.py adds after a run: the skipped tests grouped by the extra of
setup.cfg that would run them (from the modules their skip reasons name), then the other
reasons, each with its count."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("root_conftest", os.path.join(REPO, "conftest.py"))
root = importlib.util.module_from_spec(_spec)      # the repository's conftest.py, not tests/'s
_spec.loader.exec_module(root)


def test_the_extras_come_from_setup_cfg():
    extras = root._extras()
    assert extras["matplotlib"] == "plot"
    assert {extras[m] for m in ("torch", "transformers", "tokenizers", "safetensors")} == {"parity"}
    assert extras["pytest"] == extras["hypothesis"] == "test"


@pytest.mark.parametrize("reason, extra", [
    ("torch is not installed", "parity"),
    ("could not import 'tokenizers': No module named 'tokenizers'", "parity"),
    ('the example draws a picture: needs matplotlib (pip install "npgpt[plot]")', "plot"),
])
def test_each_way_of_naming_a_missing_module_counts_for_its_extra(reason, extra):
    extras = {"torch": "parity", "tokenizers": "parity", "matplotlib": "plot"}
    assert root.skip_summary([reason], extras).startswith(f'skipped 1: install ".[{extra}]"')


def test_groups_are_counted_and_the_other_reasons_follow_most_frequent_first():
    reasons = (["torch is not installed"] * 3 + ["transformers is not installed"]
               + ["matplotlib is not installed"] * 2 + ["no FIFOs here"]
               + ["needs tiktoken and NPGPT_GPT2_TIKTOKEN"] * 2)
    extras = {"torch": "parity", "transformers": "parity", "matplotlib": "plot"}
    assert root.skip_summary(reasons, extras) == (
        'skipped 4: install ".[parity]" (torch, transformers); 2: install ".[plot]" (matplotlib); '
        "2: needs tiktoken and NPGPT_GPT2_TIKTOKEN; 1: no FIFOs here")
    assert root.skip_summary([], extras) == ""


def test_a_run_prints_the_line_from_the_skips_it_saw(tmp_path):
    """A tiny test folder whose conftest.py takes the hook from the root conftest.py: skips by
    a mark, by pytest.skip and by pytest.importorskip, a pass and a failure."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("root_conftest", {os.path.join(REPO, "conftest.py")!r})
        root = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(root)
        pytest_terminal_summary = root.pytest_terminal_summary
        """))
    (tmp_path / "test_tiny.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.skipif(True, reason="torch is not installed")
        def test_marked():
            pass

        @pytest.mark.parametrize("n", range(2))
        def test_called(n):
            pytest.skip("transformers is not installed")

        def test_imported():
            pytest.importorskip("matplotlib_that_is_not_there")

        def test_passes():
            pass

        def test_fails():
            assert False
        """))
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -rfE\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120).stdout
    lines = out.splitlines()
    summary = [line for line in lines if line.startswith("skipped ")]
    assert summary == ['skipped 3: install ".[parity]" (torch, transformers); '
                       "1: could not import 'matplotlib_that_is_not_there': "
                       "No module named 'matplotlib_that_is_not_there'"], out
    assert "FAILED test_tiny.py::test_fails" in out and "SKIPPED" not in out      # -rfE
    assert lines[-1].startswith("=") and "1 failed, 1 passed, 4 skipped" in lines[-1]
