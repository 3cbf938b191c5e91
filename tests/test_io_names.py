"""One parameter, one name: a checkpoint whose tensor names npgpt would read differently
from transformers is refused, and a broken shard is named.

transformers matches names exactly, so a file holding ``model.layers.00.mlp.up_proj.weight``
beside ``model.layers.0.mlp.up_proj.weight`` (or ``model.layers.٠...`` in Arabic-Indic
digits, or ``output_layer.weight`` beside ``lm_head.weight``) gives it one tensor and
ignores the other; a loader that canonicalised both names would keep whichever came last,
and the same file would compute different things in the two. So: layer numbers are ASCII
digits without a leading zero, two names for one parameter are a CheckpointError naming
both, and so is any name the loader does not know, except the buffers real files carry
(GPT-2's ``attn.bias`` / ``attn.masked_bias``, old Llama files' ``rotary_emb.inv_freq``,
the seed's ``causal_mask``), which are listed one by one.
"""

import json
import os
import shutil
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.io import CheckpointError, read_safetensors, read_torch_zip, write_safetensors
from helpers import FIXTURES, tiny_config
from test_io_torch import op_str, state_dict_pickle, tensor_ops, write_torch_zip

LLAMA = os.path.join(FIXTURES, "llama")
SHORT = 1000


def refused(path, *names, **overrides):
    """The CheckpointError of loading ``path``, one short line naming every one of ``names``."""
    with pytest.raises(CheckpointError) as info:
        npgpt.load(path, **overrides)
    text = str(info.value)
    assert len(text) < SHORT and "\n" not in text, text[:2000]
    for name in names:
        assert repr(name) in text or name in text, (name, text)
    return text


def llama_folder(tmp_path, edit, name="llama_gqa"):
    """A copy of a Llama fixture folder whose model.safetensors ``edit`` (a function of the
    tensors dict) has rewritten."""
    folder = tmp_path / name
    shutil.copytree(os.path.join(LLAMA, name), folder)
    tensors, meta = read_safetensors(folder / "model.safetensors")
    write_safetensors(folder / "model.safetensors", edit(dict(tensors)), meta)
    return folder


def gpt2_folder(tmp_path, edit):
    """The tiny GPT-2 safetensors fixture, its tensors rewritten by ``edit``."""
    folder = tmp_path / "gpt2"
    shutil.copytree(os.path.join(FIXTURES, "tiny_gpt2_safetensors"), folder)
    tensors, meta = read_safetensors(folder / "model.safetensors")
    write_safetensors(folder / "model.safetensors", edit(dict(tensors)), meta)
    return folder


def plus(name, like):
    """An edit adding tensor ``name``, a copy of ``like`` plus one (so a silent replacement
    would change the logits)."""
    def edit(tensors):
        tensors[name] = tensors[like] + 1
        return tensors
    return edit


def renamed(old, new):
    def edit(tensors):
        return {new if k == old else k: v for k, v in tensors.items()}
    return edit


UP = "model.layers.0.mlp.up_proj.weight"


# --------------------------------------------------------------------------- Llama family
@pytest.mark.parametrize("extra", [
    "model.layers.00.mlp.up_proj.weight",                   # a leading zero
    "model.layers.\u0660.mlp.up_proj.weight",               # ٠, Arabic-Indic zero: \d matches it
    "model.layers.\uff10.mlp.up_proj.weight",               # ０, a fullwidth zero
    "model.layers.+0.mlp.up_proj.weight",
])
def test_a_second_name_for_a_llama_layer_is_refused_naming_it(tmp_path, extra):
    refused(llama_folder(tmp_path, plus(extra, UP)), extra)


@pytest.mark.parametrize("spelling", ["00", "\u0660", "\u0966", "01"])
def test_a_llama_layer_number_spelled_otherwise_is_refused_even_alone(tmp_path, spelling):
    """transformers would not find layer 0's up_proj under this name (and would initialise
    it at random): npgpt refuses rather than computing something else."""
    name = f"model.layers.{spelling}.mlp.up_proj.weight"
    refused(llama_folder(tmp_path, renamed(UP, name)), name)


def test_output_layer_beside_lm_head_is_refused_naming_both(tmp_path):
    text = refused(llama_folder(tmp_path, plus("output_layer.weight", "lm_head.weight")),
                   "output_layer.weight", "lm_head.weight")
    assert "llama_gqa" in text                                        # and the folder


@pytest.mark.parametrize("extra", ["model.layers.0.mlp.surprise.weight", "model.extra.weight",
                                   "token_embedding.weight", "blocks.0.norm1.weight"])
def test_a_name_the_llama_loader_does_not_know_is_refused_naming_it(tmp_path, extra):
    like = "model.norm.weight"
    refused(llama_folder(tmp_path, plus(extra, like)), extra)


@pytest.mark.parametrize("buffer", ["model.layers.0.self_attn.rotary_emb.inv_freq",
                                    "model.layers.1.self_attn.rotary_emb.inv_freq",
                                    "model.rotary_emb.inv_freq"])
def test_the_rotary_buffers_of_old_llama_files_are_still_accepted(tmp_path, buffer):
    def edit(tensors):
        tensors[buffer] = np.full(4, 7.0, np.float32)                 # ignored: npgpt computes them
        return tensors
    model = npgpt.load(llama_folder(tmp_path, edit))
    reference = npgpt.load(os.path.join(LLAMA, "llama_gqa"))
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(model(ids), reference(ids))


@settings(max_examples=40, deadline=None)
@given(layer=st.integers(0, 10 ** 6 - 1), zeros=st.integers(0, 3),
       digit=st.characters(categories=["Nd"]))
def test_layer_numbers_have_one_spelling(layer, zeros, digit):
    """Invariant: ``layer_index`` accepts exactly ``str(n)``: every other spelling of a
    number (leading zeros, any other script's digits) is refused."""
    from npgpt.io.gpt2 import layer_index
    assert layer_index(str(layer), "x") == layer
    spellings = ["0" * max(zeros, 1) + str(layer)] if zeros or layer else ["00"]
    if digit not in "0123456789":
        spellings.append(str(layer) + digit)
        spellings.append(digit)
    for text in spellings:
        with pytest.raises(CheckpointError, match="canonical"):
            layer_index(text, "x")


def test_two_shards_naming_one_layer_twice_are_refused(tmp_path):
    """The same flaw across a sharded folder: the index lists both names, each in its shard."""
    folder = tmp_path / "llama_sharded"
    shutil.copytree(os.path.join(LLAMA, "llama_sharded"), folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = index["weight_map"][UP]
    tensors, meta = read_safetensors(folder / shard)
    extra = "model.layers.00.mlp.up_proj.weight"
    tensors = {**tensors, extra: tensors[UP] + 1}
    write_safetensors(folder / shard, tensors, meta)
    index["weight_map"][extra] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    refused(folder, extra)


# --------------------------------------------------------------------------- GPT-2
def test_gpt2_names_with_and_without_the_transformer_prefix_are_refused_naming_both(tmp_path):
    folder = gpt2_folder(tmp_path, plus("h.0.ln_1.weight", "transformer.h.0.ln_1.weight"))
    refused(folder, "h.0.ln_1.weight", "transformer.h.0.ln_1.weight")


@pytest.mark.parametrize("extra", ["transformer.h.00.ln_1.weight", "transformer.h.\u0660.ln_1.weight",
                                   "transformer.h.0.ln_3.weight", "transformer.wte2.weight",
                                   "token_embedding.weight", "blocks.0.ln1.weight"])
def test_a_second_or_unknown_gpt2_name_is_refused_naming_it(tmp_path, extra):
    refused(gpt2_folder(tmp_path, plus(extra, "transformer.h.0.ln_1.weight")), extra)


def test_gpt2_causal_mask_buffers_are_still_accepted():
    """The old hub layout of the .bin fixture carries h.N.attn.bias and attn.masked_bias."""
    folder = os.path.join(FIXTURES, "tiny_gpt2_bin")
    names = set(read_torch_zip(os.path.join(folder, "pytorch_model.bin")))
    assert {"h.0.attn.bias", "h.0.attn.masked_bias"} <= names
    assert npgpt.load(folder).config.num_layers >= 1


def test_a_bare_gpt2_state_dict_with_two_names_for_one_parameter_is_refused(tmp_path):
    tensors, _ = read_safetensors(os.path.join(FIXTURES, "tiny_gpt2_safetensors",
                                               "model.safetensors"))
    tensors = dict(tensors)
    tensors["wte.weight"] = tensors["transformer.wte.weight"] + 1
    write_safetensors(tmp_path / "sd.safetensors", tensors)
    refused(tmp_path / "sd.safetensors", "wte.weight", "transformer.wte.weight", num_heads=2)


# --------------------------------------------------------------------------- seed / torch
def test_a_torch_state_dict_setting_one_key_twice_is_refused(tmp_path):
    """A pickle may SETITEM one key twice; a plain unpickler keeps the last silently."""
    tensor = tensor_ops("FloatStorage", "0", 6, 0, (2, 3), (3, 1))
    pkl = state_dict_pickle([("w", tensor), ("w", tensor)])
    path = write_torch_zip(tmp_path / "twice.pt", pkl, {"0": np.zeros(6, "<f4").tobytes()})
    assert "'w'" in refused(path, num_heads=2)


def test_a_torch_zip_with_two_entries_of_one_name_is_refused(tmp_path):
    tensor = tensor_ops("FloatStorage", "0", 6, 0, (2, 3), (3, 1))
    path = write_torch_zip(tmp_path / "dup.pt", state_dict_pickle([("w", tensor)]),
                           {"0": np.zeros(6, "<f4").tobytes()})
    import warnings
    import zipfile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                    # zipfile warns of the duplicate
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("archive/data/0", np.ones(6, "<f4").tobytes())
    assert "archive/data/0" in refused(path, num_heads=2)


@pytest.mark.parametrize("extra", ["blocks.5.causal_mask", "blocks.00.causal_mask",
                                   "anything.causal_mask"])
def test_seed_mask_buffers_are_accepted_only_under_their_own_names(tmp_path, extra):
    model = npgpt.GPT(tiny_config(), seed=0)
    state = model.state_dict()
    masks = {f"blocks.{i}.causal_mask": np.tril(np.ones((12, 12), np.float32))
             for i in range(model.config.num_layers)}
    fields = dict(num_heads=4, residual="pre_norm", gelu="exact")
    write_safetensors(tmp_path / "ok.safetensors", {**state, **masks})
    back = npgpt.load(tmp_path / "ok.safetensors", **fields)
    np.testing.assert_array_equal(back([1, 2, 3]), model([1, 2, 3]))
    write_safetensors(tmp_path / "bad.safetensors", {**state, **masks, extra: masks["blocks.0.causal_mask"]})
    refused(tmp_path / "bad.safetensors", extra, **fields)


# --------------------------------------------------------------------------- shards named
def sharded(tmp_path):
    folder = tmp_path / "llama_sharded"
    shutil.copytree(os.path.join(LLAMA, "llama_sharded"), folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return folder, index["weight_map"]


def test_a_truncated_shard_is_named_with_its_tensor(tmp_path):
    folder, weight_map = sharded(tmp_path)
    shard = weight_map[UP]
    path = folder / shard
    data = path.read_bytes()
    path.write_bytes(data[:-16])                             # the last tensor's tail is gone
    text = refused(folder, shard)
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    assert last in text


def test_an_unsupported_dtype_in_one_shard_is_named_with_its_tensor(tmp_path):
    folder, weight_map = sharded(tmp_path)
    shard = weight_map[UP]
    path = folder / shard
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header[UP]["dtype"] = "F8_E4M3"
    begin, end = header[UP]["data_offsets"]
    header[UP]["shape"] = [end - begin]                      # one byte per element: consistent
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    message = refused(folder, shard, UP)
    assert "F8_E4M3" in message


def test_the_cli_refuses_a_second_name_in_one_line_with_exit_2(tmp_path, capsys):
    from helpers import run_cli
    extra = "model.layers.00.mlp.up_proj.weight"
    folder = llama_folder(tmp_path, plus(extra, UP))
    code, out, err = run_cli(capsys, "generate", "--model", str(folder), "--prompt", "hi")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and extra in err and "Traceback" not in err
