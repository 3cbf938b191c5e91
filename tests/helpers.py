"""Small helpers shared by the tests."""

import importlib.util
import json
import os

import numpy as np
import pytest

import npgpt

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def has_module(name):
    return importlib.util.find_spec(name) is not None


def load_model_fixture(name):
    """(model, ids, reference logits, raw state dict) from tests/fixtures/<name>.npz."""
    data = np.load(os.path.join(FIXTURES, name + ".npz"))
    config = npgpt.GPTConfig(**json.loads(str(data["config"])))
    state = {k[len("param:"):]: data[k] for k in data.files if k.startswith("param:")}
    model = npgpt.GPT(config)
    model.load_state_dict(state)
    return model, data["ids"], data["logits"], state


def tiny_config(**changes):
    fields = dict(vocab_size=17, context_length=12, d_model=16, num_heads=4, num_layers=2)
    fields.update(changes)
    return npgpt.GPTConfig(**fields)


def assert_greedy_up_to_rounding(model, sequence, prompt_length):
    """Each token of ``sequence`` (ids) after the first ``prompt_length`` is the argmax of the
    model run on the last ``context_length`` tokens before it (nanoGPT's loop), up to
    rounding: generation reaches the same logits another way (a KV cache, the last position
    alone), whose float sums may round differently, so at a near-tie either token may win.
    The chosen logit must be within 1e-5 (float32, ~80 rounding steps) or 1e-12 (float64) of
    the maximum, relative to the largest logit; a token that is not the maximum fails."""
    sequence, C = [int(t) for t in sequence], model.config.context_length
    rel = 1e-5 if model.dtype == np.float32 else 1e-12
    for t in range(prompt_length, len(sequence)):
        logits = model(np.array(sequence[max(0, t - C):t]))[-1]
        slack = rel * max(1.0, float(np.abs(logits).max()))
        assert logits[sequence[t]] >= logits.max() - slack, \
            f"token {t}: {sequence[t]} is not the argmax {int(np.argmax(logits))} of {logits}"


def skip_without(module):
    return pytest.mark.skipif(not has_module(module), reason=f"{module} is not installed")


def run_cli(capsys, *argv):
    """``npgpt ARGV...`` in this process: (exit code, stdout, stderr)."""
    from npgpt.cli import main
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def model_path(name):
    """The path of a real model fetched by tests/fixtures/fetch_models.py into
    ``$NPGPT_MODEL_CACHE`` (default ``~/.cache/npgpt``), or a pytest skip when it is absent."""
    cache = os.environ.get("NPGPT_MODEL_CACHE") or os.path.join(os.path.expanduser("~"),
                                                                ".cache", "npgpt")
    path = os.path.join(cache, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not in {cache} (python tests/fixtures/fetch_models.py)")
    return path
