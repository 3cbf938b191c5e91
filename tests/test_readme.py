"""The README's promises: exactly two set-up commands, CI runs the test one, and the tour runs."""

import os
import re

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()


def bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_two_setup_commands_and_ci_runs_the_test_one():
    setup = README.split("## Set up")[1].split("\n## ")[0]
    commands = [b.strip() for b in bash_blocks(setup)]
    assert len(commands) == 2
    install, test = commands
    assert install.startswith("pip install . && npgpt generate")
    assert test == 'pip install -e ".[test]" && python -m pytest'
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
    assert test in ci.splitlines()


def test_the_tour_runs():
    tour = README.split("## A tour of the Python API")[1]
    code = re.search(r"```python\n(.*?)```", tour, flags=re.S).group(1)
    namespace = {}
    exec(compile(code, "README tour", "exec"), namespace)       # noqa: S102 - our own README
    assert namespace["logits"].shape == (len(namespace["ids"]), namespace["model"].config.vocab_size)
    assert np.isclose(namespace["probs"].sum(), 1.0)
    assert namespace["beams"].sequences.shape[0] == 2
    assert set(namespace["grads"]) == set(namespace["fresh"].state_dict())
