"""GGUF files: the reader (every value type, versions 2 and 3, alignment), models of the three
architectures written by save_gguf and read back by npgpt, by the ``gguf`` package and by
transformers, refusals naming the field, and ``npgpt convert``."""

import os
import sys

import numpy as np
import pytest

import npgpt
from npgpt.io import CheckpointError, read_gguf, read_gguf_metadata, save_gguf
from npgpt.io import gguf as G
from npgpt.io import gguf_quants as Q
from gguf_files import gguf_bytes, tiny_llama_gguf
from helpers import run_cli, skip_without

IDS = [1, 5, 9, 3, 2, 7]


def write(tmp_path, data, name="m.gguf"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def gpt2_model(vocab=64, context=16, seed=0):
    cfg = npgpt.GPTConfig(vocab_size=vocab, context_length=context, d_model=64, num_heads=4,
                          num_layers=2, gelu="tanh", tie_embeddings=True, output_bias=False)
    return npgpt.GPT(cfg, seed=seed)


def llama_model(seed=0, **changes):
    fields = dict(vocab_size=64, context_length=16, d_model=64, num_heads=4, num_layers=2,
                  norm="rmsnorm", positions="rope", mlp="swiglu", output_bias=False,
                  num_kv_heads=2, ffn_dim=96, layer_norm_eps=1e-6)
    fields.update(changes)
    return npgpt.GPT(npgpt.GPTConfig(**fields), seed=seed)


MODELS = {"gpt2": gpt2_model, "llama": llama_model,
          "qwen2": lambda: llama_model(attention_bias=True, tie_embeddings=True, rope_theta=1e6),
          "llama-interleaved": lambda: llama_model(rope_layout="interleaved"),
          "llama-linear-scaling": lambda: llama_model(
              rope_scaling={"rope_type": "linear", "factor": 2.0})}


# ------------------------------------------------------------------------- the reader
ALL_VALUES = [("u8", 0, 255), ("i8", 1, -128), ("u16", 2, 65535), ("i16", 3, -32768),
              ("u32", 4, 2 ** 32 - 1), ("i32", 5, -2 ** 31), ("f32", 6, 0.5), ("bool", 7, True),
              ("str", 8, "héllo"), ("u64", 10, 2 ** 64 - 1), ("i64", 11, -2 ** 63),
              ("f64", 12, 0.1), ("strs", 9, (8, ["a", "", "ü"])),
              ("f32s", 9, (6, [1.5, -2.0])), ("i32s", 9, (5, [1, -1, 3])),
              ("bools", 9, (7, [True, False])), ("nested", 9, (9, [(4, [1, 2]), (8, ["x"])]))]


@pytest.mark.parametrize("version", [2, 3])
def test_every_value_type_reads_back_as_the_documented_python_value(tmp_path, version):
    path = write(tmp_path, gguf_bytes(ALL_VALUES, version=version))
    meta = read_gguf_metadata(path)
    for key, kind, v in ALL_VALUES:
        if kind != 9:
            assert meta[key] == v and type(meta[key]) is type(v), key
    assert meta["strs"] == ["a", "", "ü"] and isinstance(meta["strs"], list)
    assert meta["f32s"].dtype == np.float32 and meta["f32s"].tolist() == [1.5, -2.0]
    assert meta["i32s"].dtype == np.int32 and meta["bools"].dtype == bool
    assert meta["nested"][0].tolist() == [1, 2] and meta["nested"][1] == ["x"]


@pytest.mark.parametrize("alignment", [32, 64, 256])
def test_tensors_are_found_at_their_offsets_under_any_alignment(tmp_path, alignment):
    x = np.arange(6, dtype=np.float32)
    y = np.arange(64, dtype=np.float16)
    data = gguf_bytes([("general.alignment", 4, alignment)],
                      [("x", (3, 2), 0, x.tobytes()), ("y", (64,), 1, y.tobytes())],
                      alignment=alignment)
    meta, infos, raw = read_gguf(write(tmp_path, data))
    assert infos["x"].shape == (2, 3) and infos["y"].offset % alignment == 0
    np.testing.assert_array_equal(Q.dequantize(raw[infos["x"].offset:][:24], 0, (2, 3)),
                                  x.reshape(2, 3))
    np.testing.assert_array_equal(Q.dequantize(raw[infos["y"].offset:][:128], 1, (64,)), y)


def test_the_data_is_memory_mapped_not_read_into_bytes(tmp_path):
    import mmap
    _, _, raw = read_gguf(write(tmp_path, tiny_llama_gguf()))
    assert isinstance(raw.base, memoryview) and isinstance(raw.base.obj, mmap.mmap)
    assert not raw.flags.writeable and not raw.flags.owndata


# ------------------------------------------------------------------------- models
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_f32_round_trip_gives_the_same_logits(tmp_path, kind):
    model = MODELS[kind]()
    save_gguf(model, tmp_path / "m.gguf")
    back = npgpt.load(tmp_path / "m.gguf")
    want = model.config.replace(layer_norm_eps=float(np.float32(model.config.layer_norm_eps)))
    if kind in ("llama", "llama-linear-scaling"):               # llama.cpp's q/k row order
        want = want.replace(rope_layout="interleaved")
    assert back.config == want                                   # eps: stored as a float32
    np.testing.assert_allclose(back(IDS), model(IDS), rtol=0, atol=2e-6 * np.abs(model(IDS)).max())


@pytest.mark.parametrize("kind", ["gpt2", "qwen2", "llama-interleaved"])
def test_f32_parameters_are_stored_bit_for_bit(tmp_path, kind):
    model = MODELS[kind]()
    save_gguf(model, tmp_path / "m.gguf")
    back = npgpt.load(tmp_path / "m.gguf")
    for name, value in model.params.items():
        np.testing.assert_array_equal(back.params[name], value, err_msg=name)


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_f16_and_q8_0_store_exactly_the_rounded_weights(tmp_path, dtype):
    model = MODELS["qwen2"]()
    save_gguf(model, tmp_path / "m.gguf", dtype=dtype)
    back = npgpt.load(tmp_path / "m.gguf")
    for name, value in model.params.items():
        if value.ndim == 1:
            expected = value
        elif dtype == "f16":
            expected = value.astype(np.float16).astype(np.float32)
        else:
            blocks = Q.quantize_q8_0(np.ascontiguousarray(value).reshape(-1, 32))
            expected = Q.dequantize_q8_0(blocks).reshape(value.shape)
        np.testing.assert_array_equal(back.params[name], expected, err_msg=name)


def test_llama_q_k_rows_are_written_interleaved_and_the_layouts_agree(tmp_path):
    """A half-split model is written in llama.cpp's order; loaded interleaved, and turned back
    by half_split_model, it is the model it was, row for row."""
    model = llama_model()
    save_gguf(model, tmp_path / "m.gguf")
    _, infos, raw = read_gguf(tmp_path / "m.gguf")
    info = infos["blk.0.attn_q.weight"]
    stored = Q.dequantize(raw[info.offset:info.offset + info.nbytes], info.type, info.shape)
    q = model.params["blocks.0.attn.q_proj.weight"]
    np.testing.assert_array_equal(stored, G.interleave_rows(q, 4))
    half = G.half_split_model(npgpt.load(tmp_path / "m.gguf"))
    for name, value in model.params.items():
        np.testing.assert_array_equal(half.params[name], value, err_msg=name)


def test_interleave_and_half_split_are_inverse_permutations():
    w = np.arange(48.0).reshape(12, 4)
    for heads in (1, 2, 3):
        assert sorted(G.interleave_rows(w, heads)[:, 0]) == list(w[:, 0])
        np.testing.assert_array_equal(G.half_split_rows(G.interleave_rows(w, heads), heads), w)


def test_a_bpe_tokenizer_is_written_as_gpt2_tokens_and_merges(tmp_path):
    tok = npgpt.BPETokenizer.train("hello world, lower lowest " * 20, vocab_size=271,
                                   special_tokens=["<|endoftext|>"])
    assert tok.special_tokens == {"<|endoftext|>": 270}
    model = gpt2_model(vocab=272)
    model.tokenizer = tok
    save_gguf(model, tmp_path / "m.gguf")
    meta = read_gguf_metadata(tmp_path / "m.gguf")
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "gpt-2"
    tokens = meta["tokenizer.ggml.tokens"]
    assert len(tokens) == 272 and tokens[ord("h")] == "h" and tokens[ord(" ")] == "Ġ"
    assert tokens[270] == "<|endoftext|>" and meta["tokenizer.ggml.token_type"][270] == 3
    assert meta["tokenizer.ggml.eos_token_id"] == 270 and meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.ggml.token_type"][271] == 5           # padding: unused
    first = tok.to_dict()["merges"][0]
    assert meta["tokenizer.ggml.merges"][0] == f"{tokens[first[0]]} {tokens[first[1]]}"


def test_an_ascii_char_tokenizer_is_written_one_byte_token_per_character(tmp_path):
    model = llama_model()
    model.tokenizer = npgpt.CharTokenizer("\n !ab")
    save_gguf(model, tmp_path / "m.gguf")
    meta = read_gguf_metadata(tmp_path / "m.gguf")
    assert meta["tokenizer.ggml.tokens"][:5] == ["Ċ", "Ġ", "!", "a", "b"]
    assert meta["tokenizer.ggml.merges"] == [] and len(meta["tokenizer.ggml.tokens"]) == 64


@pytest.mark.parametrize("tokenizer, message", [
    (npgpt.CharTokenizer("aé"), "non-ASCII"), (npgpt.WordTokenizer(["a", "b"]), "WordTokenizer")])
def test_tokenizers_gguf_cannot_carry_are_refused_by_name(tmp_path, tokenizer, message):
    model = llama_model()
    model.tokenizer = tokenizer
    with pytest.raises(ValueError, match=message):
        save_gguf(model, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


@pytest.mark.parametrize("change, field", [(dict(residual="seed"), "residual"),
                                           (dict(gelu="exact"), "gelu"),
                                           (dict(output_bias=True), "output_bias")])
def test_configs_gguf_cannot_express_are_refused_naming_the_field(tmp_path, change, field):
    cfg = gpt2_model().config.replace(**change)
    with pytest.raises(ValueError, match=field):
        save_gguf(npgpt.GPT(cfg), tmp_path / "m.gguf")


def test_save_gguf_refuses_an_unknown_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of"):
        save_gguf(gpt2_model(), tmp_path / "m.gguf", dtype="q4_0")


def test_without_the_tokenizer_module_the_model_loads_and_says_so(tmp_path, monkeypatch):
    model = llama_model()
    model.tokenizer = npgpt.CharTokenizer("ab")
    save_gguf(model, tmp_path / "m.gguf")
    monkeypatch.setitem(sys.modules, "npgpt.tokenizers.gguf", None)     # import fails
    with pytest.warns(UserWarning, match="model.tokenizer stays None"):
        back = npgpt.load(tmp_path / "m.gguf")
    assert back.tokenizer is None


def test_another_architecture_is_refused_naming_it(tmp_path):
    data = tiny_llama_gguf().replace(b"\x05\x00\x00\x00\x00\x00\x00\x00llama",
                                     b"\x05\x00\x00\x00\x00\x00\x00\x00phi3x", 1)
    with pytest.raises(CheckpointError, match="general.architecture 'phi3x' is not supported"):
        npgpt.load(write(tmp_path, data))


def test_an_unsupported_tensor_type_is_refused_by_name(tmp_path):
    data = gguf_bytes([("general.architecture", 8, "llama")],
                      [("token_embd.weight", (256, 1), 16, bytes(66))])
    with pytest.raises(CheckpointError, match="type IQ2_XXS, which npgpt does not read"):
        G._dequantized(read_gguf(write(tmp_path, data))[1]["token_embd.weight"],
                       read_gguf(tmp_path / "m.gguf")[2], "C", "m.gguf")


def test_a_tiny_hand_written_llama_and_qwen2_load(tmp_path):
    for arch in ("llama", "qwen2"):
        model = npgpt.load(write(tmp_path, tiny_llama_gguf(arch), f"{arch}.gguf"))
        assert model.config.attention_bias == (arch == "qwen2")
        assert model.config.rope_layout == ("interleaved" if arch == "llama" else "half")
        assert np.isfinite(model([1, 5, 7])).all()


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    data = bytearray(tiny_llama_gguf(f32=False))
    embd = np.full(8 * 32, np.inf, np.float16).tobytes()
    meta, infos, raw = read_gguf(write(tmp_path, bytes(data)))
    start = len(data) - raw.size + infos["blk.0.attn_q.weight"].offset
    data[start:start + 2] = embd[:2]
    with pytest.raises(CheckpointError, match="'blk.0.attn_q.weight' holds inf or NaN"):
        npgpt.load(write(tmp_path, bytes(data)))


# ------------------------------------------------------------------------- other readers
@skip_without("gguf")
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_the_gguf_package_reads_our_file_to_the_same_values(tmp_path, dtype):
    from gguf import GGUFReader, quants
    model = MODELS["qwen2"]()
    save_gguf(model, tmp_path / "m.gguf", dtype=dtype)
    reader = GGUFReader(tmp_path / "m.gguf")
    back = npgpt.load(tmp_path / "m.gguf")
    assert str(reader.fields["general.architecture"].contents()) == "qwen2"
    for tensor in reader.tensors:
        ours = G.npgpt_name(tensor.name, "qwen2")
        theirs = quants.dequantize(tensor.data, tensor.tensor_type)
        np.testing.assert_array_equal(theirs.reshape(back.params[ours].shape), back.params[ours])


@skip_without("transformers")
@skip_without("torch")
@skip_without("gguf")
@pytest.mark.parametrize("kind, dtype", [("llama", "f32"), ("qwen2", "f32"), ("llama", "q8_0"),
                                         ("gpt2", "f32")])
def test_transformers_reads_our_file_to_the_same_logits(tmp_path, kind, dtype):
    import torch
    from transformers import AutoModelForCausalLM
    if kind == "gpt2":       # transformers' GGUF GPT-2: 1024 positions, vocab from the tokens
        model = gpt2_model(vocab=272, context=1024)
        model.tokenizer = npgpt.BPETokenizer.train("hello world " * 20, vocab_size=272)
    else:
        model = MODELS[kind]()
    save_gguf(model, tmp_path / "m.gguf", dtype=dtype)
    back = npgpt.load(tmp_path / "m.gguf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    with torch.no_grad():
        theirs = hf(torch.tensor([IDS])).logits[0].numpy()
    np.testing.assert_allclose(back(IDS), theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


# ------------------------------------------------------------------------- the CLI
def test_convert_writes_gguf_that_generate_reads(tmp_path, capsys):
    model = llama_model()
    model.tokenizer = npgpt.CharTokenizer("".join(chr(c) for c in range(32, 96)))
    model.save(str(tmp_path / "m.safetensors"))
    out = str(tmp_path / "m.gguf")
    code, text, err = run_cli(capsys, "convert", str(tmp_path / "m.safetensors"), out,
                              "--dtype", "q8_0")
    assert code == 0 and "q8_0" in text, err
    assert read_gguf_metadata(out)["general.file_type"] == 7
    pytest.importorskip("npgpt.tokenizers.gguf")
    code, text, err = run_cli(capsys, "generate", "-m", out, "-p", "AB", "-n", "3")
    assert code == 0, err


@pytest.mark.parametrize("fmt", ["hf", "safetensors"])
def test_convert_from_gguf_to_hf_and_safetensors_keeps_the_logits(tmp_path, capsys, fmt):
    model = llama_model()
    save_gguf(model, tmp_path / "m.gguf")
    out = str(tmp_path / ("out" if fmt == "hf" else "out.safetensors"))
    code, _, err = run_cli(capsys, "convert", str(tmp_path / "m.gguf"), out)
    assert code == 0, err
    back = npgpt.load(out)
    assert back.config.rope_layout == ("half" if fmt == "hf" else "interleaved")
    np.testing.assert_allclose(back(IDS), model(IDS), rtol=0, atol=2e-6 * np.abs(model(IDS)).max())


def test_convert_refuses_a_dtype_the_format_cannot_hold_in_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "convert", "shakespeare-char", str(tmp_path / "x"),
                           "--dtype", "q8_0")
    assert code == 2 and "q8_0" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name, pre", [("qwen2", "qwen2"), ("llama3", "llama-bpe"),
                                       ("smollm", "gpt-2")])
def test_a_byte_level_tokenizer_json_is_written_with_its_vocabulary_merges_and_added_tokens(
        tmp_path, name, pre):
    import json
    from helpers import FIXTURES
    from npgpt.tokenizers.hf import load_tokenizer_json
    path = os.path.join(FIXTURES, "hf_tokenizers", name + ".json")
    spec = json.load(open(path, encoding="utf-8"))
    tok = load_tokenizer_json(path)
    model = llama_model(vocab_size=tok.vocab_size + 3)
    model.tokenizer = tok
    save_gguf(model, tmp_path / "m.gguf")
    meta = read_gguf_metadata(tmp_path / "m.gguf")
    tokens = meta["tokenizer.ggml.tokens"]
    assert meta["tokenizer.ggml.pre"] == pre and len(tokens) == tok.vocab_size + 3
    assert meta["tokenizer.ggml.add_bos_token"] == (name == "llama3")   # its post-processor
    if name == "llama3":
        assert tokens[meta["tokenizer.ggml.bos_token_id"]] == "<|begin_of_text|>"
    added_ids = {added["id"] for added in spec["added_tokens"]}
    for token, i in spec["model"]["vocab"].items():
        assert tokens[i] == token
        assert meta["tokenizer.ggml.token_type"][i] == 1 or i in added_ids
    for added in spec["added_tokens"]:
        assert tokens[added["id"]] == added["content"]
        assert meta["tokenizer.ggml.token_type"][added["id"]] == (3 if added["special"] else 4)
    assert meta["tokenizer.ggml.merges"] == [m if isinstance(m, str) else " ".join(m)
                                             for m in spec["model"]["merges"]]


def test_a_sentencepiece_style_tokenizer_json_is_refused(tmp_path):
    from helpers import FIXTURES
    from npgpt.tokenizers.hf import load_tokenizer_json
    tok = load_tokenizer_json(os.path.join(FIXTURES, "hf_tokenizers", "llama2.json"))
    model = llama_model(vocab_size=tok.vocab_size)
    model.tokenizer = tok
    with pytest.raises(ValueError, match="SentencePiece-style"):
        save_gguf(model, tmp_path / "m.gguf")


def test_overrides_change_what_the_weights_do_not_fix_and_refuse_the_rest(tmp_path):
    save_gguf(llama_model(), tmp_path / "m.gguf")
    assert npgpt.load(tmp_path / "m.gguf", context_length=64).config.context_length == 64
    with pytest.raises(CheckpointError, match="contradicts the weights"):
        npgpt.load(tmp_path / "m.gguf", d_model=32)


def test_the_cli_says_in_one_line_why_a_gguf_model_has_no_tokenizer(tmp_path, capsys,
                                                                     monkeypatch):
    model = llama_model()
    model.tokenizer = npgpt.CharTokenizer("ab")
    save_gguf(model, tmp_path / "m.gguf")
    monkeypatch.setitem(sys.modules, "npgpt.tokenizers.gguf", None)
    code, _, err = run_cli(capsys, "generate", "-m", str(tmp_path / "m.gguf"), "-p", "ab")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "npgpt.tokenizers.gguf is not available" in err


def test_a_tokenizers_chat_template_is_written(tmp_path):
    model = llama_model()
    model.tokenizer = npgpt.CharTokenizer("ab")
    model.tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    save_gguf(model, tmp_path / "m.gguf")
    meta = read_gguf_metadata(tmp_path / "m.gguf")
    assert meta["tokenizer.chat_template"] == model.tokenizer.chat_template
