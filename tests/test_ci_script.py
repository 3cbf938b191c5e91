""".ci/run: it replays the property tests with a printed random seed, and deletes the folder
NPGPT_CI_VENV names only when that folder is a virtual environment."""

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI = os.path.join(REPO, ".ci", "run")


def test_the_property_tests_run_once_more_with_a_printed_random_seed():
    script = open(CI, encoding="utf-8").read()
    assert "random.randrange(2 ** 32)" in script
    assert 'echo "hypothesis seed: $seed (replay: python -m pytest -m hypothesis --hypothesis-seed=$seed)"' in script
    assert 'python -m pytest -q -m hypothesis --hypothesis-seed="$seed"' in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("target", ["folder", "/", "."])
def test_a_folder_that_is_not_a_venv_is_not_deleted(tmp_path, target):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    venv = str(folder) if target == "folder" else target
    run = subprocess.run(["bash", CI], env=dict(os.environ, NPGPT_CI_VENV=venv), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "NPGPT_CI_VENV" in run.stderr, run.stderr
    assert (folder / "keep.txt").read_text() == "mine"
