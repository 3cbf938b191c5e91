"""llama2.c checkpoints: the bundled stories260K reproduces llama2.c's published greedy output
byte for byte; the legacy layout and versions 1 and 2 (Q8_0) load, written here as llama2.c's
``export.py`` writes them; hostile files are refused before anything large is allocated."""

import os
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.io import CheckpointError, bundled_models
from npgpt.io.llama2c import MAGIC, _npgpt_name, read_llama2c, tensor_layout, write_llama2c
from npgpt.tokenizers import SentencePieceTokenizer
from helpers import FIXTURES, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "npgpt", "data")
SHARED = os.environ.get("SP_MODELS", os.path.join(REPO, "..", "shared"))
SHORT = 1000


def llama_config(**changes):
    fields = dict(vocab_size=11, context_length=8, d_model=16, num_heads=4, num_layers=2,
                  norm="rmsnorm", positions="rope", mlp="swiglu", output_bias=False,
                  num_kv_heads=2, ffn_dim=24, rope_layout="interleaved", tie_embeddings=False)
    fields.update(changes)
    return npgpt.GPTConfig(**fields)


# --------------------------------------------------------------- llama2.c's export.py, in NumPy
def export_tensors(model):
    """llama2.c's names -> arrays (per layer, "wq.0" ...), from an npgpt model."""
    p, L = model.state_dict(), model.config.num_layers
    names = {"attention_norm": "norm1.weight", "ffn_norm": "norm2.weight",
             "wq": "attn.q_proj.weight", "wk": "attn.k_proj.weight", "wv": "attn.v_proj.weight",
             "wo": "attn.o_proj.weight", "w1": "mlp.gate.weight", "w2": "mlp.down.weight",
             "w3": "mlp.up.weight"}
    out = {f"{k}.{i}": p[f"blocks.{i}.{v}"] for k, v in names.items() for i in range(L)}
    out.update(tok_embeddings=p["token_embedding.weight"], norm=p["norm_final.weight"])
    if "output_layer.weight" in p:
        out["output"] = p["output_layer.weight"]
    return out


def header_ints(cfg, vocab_size):
    return (cfg.d_model, cfg.ffn_size, cfg.num_layers, cfg.num_heads, cfg.kv_heads, vocab_size,
            cfg.context_length)


def legacy_export(model, path):
    """export.py's legacy_export: 7 int32 (vocab negative when unshared), the weights, the two
    frequency tables."""
    cfg, t = model.config, export_tensors(model)
    L, D = cfg.num_layers, cfg.head_size
    parts = [struct.pack("<7i", *header_ints(cfg, cfg.vocab_size if cfg.tie_embeddings
                                             else -cfg.vocab_size)), t["tok_embeddings"]]
    for name in ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"):
        parts += [t[f"{name}.{i}"] for i in range(L)]
    angles = np.outer(np.arange(cfg.context_length), 10000.0 ** (-np.arange(0, D, 2) / D))
    parts += [t["norm"], np.cos(angles), np.sin(angles)]
    if not cfg.tie_embeddings:
        parts.append(t["output"])
    with open(path, "wb") as f:
        for part in parts:
            f.write(part if isinstance(part, bytes) else np.asarray(part, "<f4").tobytes())


def quantize_q80(w, group_size):
    """export.py's quantize_q80: symmetric int8 per group, scale = max|w| / 127."""
    w = np.asarray(w, np.float32).reshape(-1, group_size)
    scale = np.abs(w).max(axis=1) / np.float32(127.0)
    q = np.round(w / scale[:, None]).astype(np.int8)
    return q, scale.astype(np.float32)


def version2_export(model, path, group_size=8):
    """export.py's version2_export (runq.c's layout): the header, norms in float32, then
    each weight's int8 values followed by its scales."""
    cfg, t = model.config, export_tensors(model)
    L = cfg.num_layers
    head = struct.pack("<Ii7iBi", MAGIC, 2, *header_ints(cfg, cfg.vocab_size),
                       int(cfg.tie_embeddings), group_size)
    parts = [head + b"\0" * (256 - len(head))]
    parts += [np.asarray(t[f"{n}.{i}"], "<f4").tobytes() for n in ("attention_norm", "ffn_norm")
              for i in range(L)]
    parts.append(np.asarray(t["norm"], "<f4").tobytes())
    weights = [t["tok_embeddings"]] + [t[f"{n}.{i}"] for n in ("wq", "wk", "wv", "wo", "w1",
                                                                "w2", "w3") for i in range(L)]
    if not cfg.tie_embeddings:
        weights.append(t["output"])
    dequantized = []
    for w in weights:
        q, s = quantize_q80(w, group_size)
        parts += [q.tobytes(), s.astype("<f4").tobytes()]
        dequantized.append((q.astype(np.float32) * s[:, None]).reshape(w.shape))
    with open(path, "wb") as f:
        f.write(b"".join(parts))
    return dequantized


# --------------------------------------------------------------- stories260K
def test_stories260k_reproduces_llama2c_greedy_output_byte_for_byte():
    """llama2.c: ``run stories260K.bin -z tok512.bin -t 0.0 -n 200`` -- greedy from BOS,
    200 tokens, printed with llama2.c's decoding."""
    model = npgpt.load("stories260K")
    out = npgpt.generate(model, np.array([1]), max_new_tokens=200)
    with open(os.path.join(FIXTURES, "llama2c_greedy200.txt"), "rb") as f:
        expected = f.read()
    assert out.sequences.shape == (1, 201)
    assert model.tokenizer.decode(out.sequences[0]).encode("utf-8") == expected


def test_stories260k_is_bundled_with_its_tokenizer():
    assert "stories260K" in bundled_models()
    model = npgpt.load("stories260K")
    cfg = model.config
    assert (cfg.d_model, cfg.ffn_dim, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads,
            cfg.vocab_size, cfg.context_length) == (64, 172, 5, 8, 4, 512, 512)
    assert (cfg.rope_layout, cfg.rope_theta, cfg.layer_norm_eps, cfg.tie_embeddings,
            cfg.norm, cfg.mlp) == ("interleaved", 10000.0, 1e-5, True, "rmsnorm", "swiglu")
    assert isinstance(model.tokenizer, SentencePieceTokenizer)
    with open(os.path.join(REPO, "setup.cfg")) as f:
        setup = f.read()
    assert "stories260K.bin" in setup and "tok512.bin" in setup
    assert os.path.exists(os.path.join(DATA, "stories260K.md"))


def test_load_a_bin_file_with_its_tokenizer_file():
    path = os.path.join(DATA, "stories260K.bin")
    model = npgpt.load(path, tokenizer=os.path.join(DATA, "tok512.bin"))
    bundled = npgpt.load("stories260K")
    assert model.tokenizer == bundled.tokenizer
    assert npgpt.load(path).tokenizer is None
    ids = np.array(bundled.tokenizer.encode("Once upon a"))
    np.testing.assert_array_equal(model(ids), bundled(ids))
    assert npgpt.load(path, tokenizer=bundled.tokenizer).tokenizer is bundled.tokenizer


def test_a_tokenizer_larger_than_the_model_is_refused():
    llama2 = os.path.join(SHARED, "tokenizers", "llama2", "tokenizer.model")
    if not os.path.exists(llama2):
        pytest.skip("Llama 2's tokenizer.model is not there")
    with pytest.raises(CheckpointError, match="ids up to 31999"):
        npgpt.load(os.path.join(DATA, "stories260K.bin"), tokenizer=llama2)


def test_cli_tells_the_story_and_inspect_shows_words(capsys):
    code, out, _ = run_cli(capsys, "generate", "-m", "stories260K", "--max-new-tokens", "12")
    assert code == 0 and out.startswith("Once upon a time, there was a little girl")
    code, out, _ = run_cli(capsys, "generate", "-m", "stories260K", "-p", "Once upon a",
                           "--max-new-tokens", "3")
    assert code == 0 and out.startswith("Once upon a time, there")
    code, out, _ = run_cli(capsys, "inspect", "-m", "stories260K", "-p", "Once upon a")
    assert code == 0 and "' time'" in out


# --------------------------------------------------------------- the three layouts
@pytest.mark.parametrize("tie", [True, False])
def test_legacy_layout_loads_the_exported_weights(tmp_path, tie):
    model = npgpt.GPT(llama_config(tie_embeddings=tie), seed=1)
    legacy_export(model, tmp_path / "m.bin")
    back = npgpt.load(tmp_path / "m.bin")
    assert back.config == model.config
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value.astype(np.float32))


@pytest.mark.parametrize("tie", [True, False])
def test_version1_written_by_npgpt_reads_back_bit_for_bit(tmp_path, tie):
    model = npgpt.GPT(llama_config(tie_embeddings=tie, num_kv_heads=None), seed=2)
    write_llama2c(model, tmp_path / "m.bin")
    with open(tmp_path / "m.bin", "rb") as f:
        assert struct.unpack("<Ii", f.read(8)) == (MAGIC, 1)
    back = npgpt.load(tmp_path / "m.bin")
    assert back.config == model.config
    ids = np.array([1, 5, 3, 7])
    np.testing.assert_array_equal(back(ids), model(ids))


def test_write_llama2c_refuses_what_llama2c_cannot_run():
    with pytest.raises(ValueError, match="rope_layout='half'"):
        write_llama2c(npgpt.GPT(llama_config(rope_layout="half")), "never.bin")
    with pytest.raises(ValueError, match="norm='layernorm'"):
        write_llama2c(npgpt.GPT(npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=8,
                                                num_heads=2, num_layers=1)), "never.bin")


@pytest.mark.parametrize("tie", [True, False])
def test_version2_q8_weights_are_the_int8_values_times_their_group_scale(tmp_path, tie):
    model = npgpt.GPT(llama_config(tie_embeddings=tie), seed=3)
    dequantized = version2_export(model, tmp_path / "q.bin", group_size=8)
    header, state = read_llama2c(tmp_path / "q.bin")
    assert (header["version"], header["group_size"]) == (2, 8)
    names = [n for n, _, kind in tensor_layout(header) if kind == "q8"]
    back = npgpt.load(tmp_path / "q.bin")
    for name, expected in zip(names, dequantized):
        np.testing.assert_array_equal(state[_npgpt_name(name)], expected)
    np.testing.assert_array_equal(back.state_dict()["blocks.1.norm2.weight"],
                                  model.state_dict()["blocks.1.norm2.weight"])
    ids = np.array([1, 2, 3, 4, 5])
    # 8-bit weights: logits move by about the quantization step times the fan-in
    np.testing.assert_allclose(back(ids), model(ids), atol=0.05)


# --------------------------------------------------------------- hostile files
def write(tmp_path, data, name="bad.bin"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path):
    with pytest.raises(CheckpointError) as info:
        npgpt.load(path)
    assert 0 < len(str(info.value)) < SHORT
    return str(info.value)


def stories_bytes():
    with open(os.path.join(DATA, "stories260K.bin"), "rb") as f:
        return f.read()


def versioned(version=1, ints=(8, 24, 1, 2, 1, 5, 4), shared=1, group=8):
    head = struct.pack("<Ii7iBi", MAGIC, version, *ints, shared, group)
    return head + b"\0" * (256 - len(head))


@pytest.mark.parametrize("data,match", [
    (versioned(ints=(8, 24, 1, 2, 1, 5, 4)) + b"\0" * 100, "implies"),
    (versioned(version=3), "version 3 is not supported"),
    (versioned(ints=(8, 24, 1, 2, 3, 5, 4)), "n_kv_heads=3 must divide n_heads=2"),
    (versioned(ints=(8, 24, 1, 3, 1, 5, 4)), "dim=8 must be n_heads=3 times an even head size"),
    (versioned(ints=(8, 24, 0, 2, 1, 5, 4)), "n_layers must be a positive int32, got 0"),
    (versioned(ints=(8, 24, 1, 2, 1, -5, 4)), "vocab_size must be positive in version 1"),
    (versioned(shared=7), "shared_classifier must be 0 or 1"),
    (versioned(version=2, group=0), "group_size must be positive"),
    (versioned(ints=(2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1, 1, 1, 2 ** 31 - 1, 2 ** 31 - 1)),
     "dim=2147483647 must be n_heads=1 times an even head size"),
    (versioned(ints=(2 ** 30, 2 ** 30, 2 ** 30, 1, 1, 2 ** 30, 2 ** 30)), "implies"),
    (b"24ka" + b"\1\0\0\0", "too short"),
])
def test_malformed_headers_name_the_field(tmp_path, data, match):
    tracemalloc.start()
    try:
        message = refused(write(tmp_path, data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert match in message
    assert peak < 10 ** 7


def test_version2_group_size_must_divide_every_weight(tmp_path):
    model = npgpt.GPT(llama_config(), seed=0)
    version2_export(model, tmp_path / "q.bin", group_size=8)
    data = bytearray((tmp_path / "q.bin").read_bytes())
    data[37:41] = struct.pack("<i", 7)                 # the sizes no longer add up either
    assert "implies" in refused(write(tmp_path, bytes(data)))


def test_a_truncated_or_padded_legacy_file_is_not_taken_for_llama2c(tmp_path):
    data = stories_bytes()
    for bad in (data[:-4], data + b"\0" * 4):
        assert "unrecognised format" in refused(write(tmp_path, bad))


def test_every_truncation_of_a_version1_file_is_refused(tmp_path):
    write_llama2c(npgpt.GPT(llama_config(), seed=0), tmp_path / "m.bin")
    data = (tmp_path / "m.bin").read_bytes()
    for cut in (0, 3, 40, 255, 256, 300, len(data) - 1):
        with pytest.raises(CheckpointError):
            npgpt.load(write(tmp_path, data[:cut]))


@settings(max_examples=80)
@given(ints=st.lists(st.integers(-2 ** 31, 2 ** 31 - 1) | st.integers(0, 70), min_size=7,
                     max_size=7),
       version=st.sampled_from([0, 1, 2, 3]), flag=st.integers(0, 2), group=st.integers(-2, 70),
       tail=st.integers(0, 3000))
def test_random_headers_raise_only_a_short_checkpoint_error_with_bounded_memory(
        tmp_path_factory, ints, version, flag, group, tail):
    """Any header: a model, or one CheckpointError, never more memory than a few times the
    file (the sizes are checked against the file before anything is read)."""
    if version == 0:
        head = struct.pack("<7i", *ints)
    else:
        head = struct.pack("<Ii7iBi", MAGIC, version, *ints, flag, group)
        head += b"\0" * (256 - len(head))
    path = tmp_path_factory.mktemp("fuzz") / "m.bin"
    path.write_bytes(head + bytes(range(256)) * (tail // 256) + b"\1" * (tail % 256))
    tracemalloc.start()
    try:
        npgpt.load(path)
    except CheckpointError as e:
        assert len(str(e)) < SHORT
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 50 * (len(head) + tail) + 2 * 10 ** 6
