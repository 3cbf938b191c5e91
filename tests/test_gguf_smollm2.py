"""The real model: SmolLM2-135M-Instruct quantised to Q4_1 (llama.cpp's file, 98 MB), read by
npgpt and compared with transformers' reading of the same file (a recorded fixture, and live
when transformers is installed). Skipped without the file: python tests/fixtures/fetch_models.py.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import npgpt
from npgpt.io import read_gguf_metadata
from npgpt.io.gguf import half_split_model
from npgpt.tokenizers.bpe import bytes_to_unicode
from helpers import FIXTURES, has_module, model_path

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REF = np.load(os.path.join(FIXTURES, "gguf_smollm2.npz"))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-4                       # relative to the largest |logit| of the row


@pytest.fixture(scope="module")
def path():
    return model_path(NAME)


@pytest.fixture(scope="module")
def model(path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # without npgpt.tokenizers.gguf: no tokenizer
        return npgpt.load(path)


def decode(metadata, ids):
    """Token ids -> text through the file's byte-level vocabulary (GPT-2's byte mapping)."""
    back = {c: b for b, c in bytes_to_unicode().items()}
    tokens = metadata["tokenizer.ggml.tokens"]
    return bytes(back[c] for i in ids for c in tokens[i]).decode("utf-8")


def assert_close_rows(ours, theirs):
    error = np.abs(ours - theirs).max(axis=-1) / np.abs(theirs).max(axis=-1)
    assert np.all(error < RTOL), f"relative errors {error}"


def test_config_comes_from_the_metadata(model, path):
    meta = read_gguf_metadata(path)
    cfg = model.config
    assert meta["general.architecture"] == "llama"
    assert (cfg.context_length, cfg.d_model, cfg.num_layers, cfg.ffn_size, cfg.num_heads,
            cfg.kv_heads) == tuple(meta[f"llama.{k}"] for k in (
                "context_length", "embedding_length", "block_count", "feed_forward_length",
                "attention.head_count", "attention.head_count_kv"))
    assert cfg.layer_norm_eps == meta["llama.attention.layer_norm_rms_epsilon"]
    assert cfg.rope_theta == meta["llama.rope.freq_base"] and cfg.head_size == meta[
        "llama.rope.dimension_count"]
    assert cfg.tie_embeddings and cfg.rope_layout == "interleaved"
    assert cfg.vocab_size == len(meta["tokenizer.ggml.tokens"]) == 49152


def test_logits_equal_transformers_reading_of_the_same_file(model):
    top = np.take_along_axis(model(REF["prompt_ids"])[-len(REF["top_ids"]):].astype(np.float64),
                             REF["top_ids"], axis=1)
    assert_close_rows(top, REF["top_logits"])
    assert_close_rows(model(REF["plain_ids"]), REF["plain_logits"])


def test_greedy_tokens_equal_transformers(model):
    out = npgpt.generate(model, REF["prompt_ids"], max_new_tokens=len(REF["greedy"]))
    np.testing.assert_array_equal(out.sequences[0, len(REF["prompt_ids"]):], REF["greedy"])


def test_the_chat_prompt_is_answered_with_paris(model, path):
    meta = read_gguf_metadata(path)
    assert ("You are a helpful AI assistant named SmolLM, trained by Hugging Face"
            in meta["tokenizer.chat_template"])           # the template's default system turn
    end = meta["tokenizer.ggml.tokens"].index("<|im_end|>")
    out = npgpt.generate(model, REF["prompt_ids"], max_new_tokens=12, eos_token_id=end)
    new = out.sequences[0, len(REF["prompt_ids"]):].tolist()
    assert new[-1] == end and decode(meta, new[:-1]) == "The capital of France is Paris."
    assert decode(meta, REF["prompt_ids"][-3:]).endswith("assistant\n")


def test_the_stored_q_k_rows_are_interleaved_pairs(model, path):
    """Un-permuted to the half-split layout the model computes the same logits; read as if
    they were half-split (no un-permuting), the logits are far off: the file's q/k rows are
    llama.cpp's interleaved order."""
    ids = REF["plain_ids"]
    ours = model(ids)
    np.testing.assert_allclose(half_split_model(model)(ids), ours, rtol=0,
                               atol=1e-5 * np.abs(ours).max())
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrong = npgpt.load(path, rope_layout="half")(ids)
    assert np.abs(wrong - REF["plain_logits"]).max() > 100 * RTOL * np.abs(ours).max()


@pytest.mark.skipif(os.name != "posix", reason="ru_maxrss")
def test_loading_peaks_below_1_3_times_the_float32_model(path):
    script = ("import resource, sys, warnings\n"
              "warnings.simplefilter('ignore')\n"
              "import npgpt\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "model = npgpt.load(sys.argv[1])\n"
              "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
              "print(peak * 1024, sum(v.nbytes for v in model.params.values()))\n")
    out = subprocess.run([sys.executable, "-c", script, path], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": REPO})
    assert out.returncode == 0, out.stderr[-2000:]
    peak, model_bytes = map(int, out.stdout.split())
    assert peak <= 1.3 * model_bytes, f"{peak / 2 ** 20:.0f} MB for {model_bytes / 2 ** 20:.0f} MB"


@pytest.mark.skipif(not all(has_module(m) for m in ("transformers", "torch", "gguf",
                                                     "accelerate")),
                    reason="needs transformers, torch, gguf and accelerate")
def test_logits_equal_transformers_live(model, path):
    import torch
    from transformers import AutoModelForCausalLM
    folder, file = os.path.split(path)
    hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    with torch.no_grad():
        theirs = hf(torch.from_numpy(REF["prompt_ids"][None])).logits[0].numpy()
    assert_close_rows(model(REF["prompt_ids"]), theirs)
