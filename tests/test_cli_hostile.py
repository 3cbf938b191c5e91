"""generate's command line under hostile input, second round: an undecodable byte in --stop,
a bias beyond float32, an extreme --length-penalty, and --logit-bias TEXT on a tokenizer that
adds a BOS to every text. Each fails in one line naming the flag, exit 2, or works."""

import subprocess
import sys
from pathlib import Path

import pytest

import npgpt
from npgpt.cli._options import _logit_bias
from npgpt.tokenizers.hf import HFTokenizer, _example

from helpers import run_cli as run
from test_cli import model_path  # noqa: F401 - the tiny saved model

TIMEOUT = 120
ROOT = Path(__file__).resolve().parents[1]


def assert_one_line_error(code, out, err, *needles):
    assert code == 2, (code, out, err)
    assert out == "", f"printed before the error: {out!r}"
    assert "Traceback" not in err and "Warning" not in err, err
    assert len(err.strip("\n").splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def npgpt_process(*argv):
    """``python -m npgpt ARGV...`` as its own process (argv may hold bytes), with this
    checkout first on the path: (exit code, stdout, stderr) as text."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "npgpt", *argv], capture_output=True,
                          timeout=TIMEOUT, env=env)
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def test_an_undecodable_byte_in_stop_is_one_line_naming_stop(model_path):
    code, out, err = npgpt_process("generate", "--model", model_path, "-p", "RO", "-n", "3",
                                   "--stop", b"\xff")
    assert_one_line_error(code, out, err, "npgpt generate: error: --stop:", "lone surrogate")


def test_a_lone_surrogate_in_stop_is_one_line_in_process(capsys, model_path):
    code, out, err = run(capsys, "generate", "--model", model_path, "-p", "RO", "-n", "3",
                         "--stop", "ok", "--stop", "\udcff")
    assert_one_line_error(code, out, err, "--stop:", "'\\udcff'")


@pytest.mark.parametrize("extra", [[], ["--do-sample", "--seed", "0"], ["--num-beams", "2"]])
def test_a_bias_beyond_float32_is_one_line_naming_logit_bias(model_path, extra):
    code, out, err = npgpt_process("generate", "--model", model_path, "-p", "RO", "-n", "3",
                                   "--logit-bias", "5=1e39", *extra)
    assert_one_line_error(code, out, err, "--logit-bias: the bias 1e+39 of token 5 is beyond the "
                                          "range of the float32 logits")


@pytest.mark.parametrize("alpha", ["300", "-300", "-8"])
def test_an_extreme_length_penalty_prints_the_beams(capsys, model_path, alpha):
    code, out, err = run(capsys, "generate", "--model", model_path, "-p", "RO", "-n", "12",
                         "--num-beams", "2", "--length-penalty", alpha)
    assert code == 0 and "Traceback" not in err, err
    scores = [float(line.split("score")[1]) for line in out.splitlines() if line.startswith("--- candidate")]
    assert len(scores) == 2 and scores[0] >= scores[1], out
    if alpha == "300":                        # tiny, and shown so: not every one -0.0000
        assert all(-1e-100 < s < 0 for s in scores) and "-0.0000" not in out, out


@pytest.fixture(scope="module")
def bos_model_path(tmp_path_factory):
    """A model whose tokenizer.json adds a BOS before every text (TemplateProcessing), as
    Llama 2/3's and Mistral's do."""
    tok = HFTokenizer(_example())
    assert tok.encode("a") == [259, 97]                          # BOS, then the letter
    cfg = npgpt.GPTConfig(vocab_size=tok.vocab_size, context_length=16, d_model=16, num_heads=2,
                          num_layers=1)
    model = npgpt.GPT(cfg, seed=0)
    model.tokenizer = tok
    path = str(tmp_path_factory.mktemp("bos") / "bos.safetensors")
    model.save(path)
    return path


def test_logit_bias_text_does_not_count_the_tokenizers_bos(capsys, bos_model_path):
    model = npgpt.load(bos_model_path)
    assert _logit_bias([("a", -5.0, "a=-5"), (" the", 2.0, " the=2")], model) == {97: -5.0, 258: 2.0}
    code, out, err = run(capsys, "generate", "--model", bos_model_path, "-p", " the", "-n", "4",
                         "--logit-bias", "a=-5")
    assert code == 0, err


def test_logit_bias_text_of_two_tokens_is_still_refused_without_counting_the_bos(capsys, bos_model_path):
    code, out, err = run(capsys, "generate", "--model", bos_model_path, "-p", " the", "-n", "4",
                         "--logit-bias", "ab=-5")
    assert_one_line_error(code, out, err, "encodes 'ab' to 2 tokens, not one")
