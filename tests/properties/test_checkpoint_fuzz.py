"""Fuzzing the checkpoint readers: a mutated file either loads or raises CheckpointError.

Invariant for every test here: whatever bytes are on disk, ``npgpt.io.load`` returns a
model or raises ``CheckpointError``, never another exception, never a hang.
Files are tiny (a few KB) so each example takes milliseconds.
"""

import io
import json
import os
import shutil
import struct
import tempfile
import zipfile

from hypothesis import given
from hypothesis import strategies as st

import npgpt
import npgpt.io
from npgpt.io import CheckpointError
from helpers import FIXTURES

SEED_PT = os.path.join(FIXTURES, "checkpoint_seed.pt")
SEED_OVERRIDES = dict(num_heads=2, residual="seed", gelu="exact")
HF_FOLDER = os.path.join(FIXTURES, "tiny_gpt2_bin")


def own_file_bytes():
    cfg = npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=4, num_heads=2, num_layers=1)
    with tempfile.TemporaryDirectory() as tmp:
        npgpt.GPT(cfg, seed=0).save(os.path.join(tmp, "m.safetensors"))
        with open(os.path.join(tmp, "m.safetensors"), "rb") as f:
            return f.read()


OWN = own_file_bytes()
with open(SEED_PT, "rb") as _f:
    SEED = _f.read()
with zipfile.ZipFile(SEED_PT) as _zf:
    SEED_ENTRIES = [(info.filename, _zf.read(info)) for info in _zf.infolist()]
SEED_PKL = next(data for name, data in SEED_ENTRIES if name.endswith("/data.pkl"))


def load_bytes(blob, name="x.bin", **overrides):
    """Write ``blob`` to a temporary file and load it: a GPT or CheckpointError, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(blob)
        try:
            model = npgpt.io.load(path, **overrides)
        except CheckpointError as exc:
            assert str(exc), "a CheckpointError must say what is wrong"
            return None
        assert isinstance(model, npgpt.GPT)
        return model


def mutate(blob, flips, cut):
    data = bytearray(blob)
    for position, value in flips:
        data[position % len(data)] = value
    return bytes(data[:cut] if cut is not None else data)


flips = st.lists(st.tuples(st.integers(0, 2 ** 20), st.integers(0, 255)), max_size=6)
cuts = st.none() | st.integers(0, 2 ** 20)


@given(flips=flips, cut=cuts)
def test_mutated_npgpt_file_loads_or_raises_checkpoint_error(flips, cut):
    load_bytes(mutate(OWN, flips, None if cut is None else cut % (len(OWN) + 1)))


@given(flips=flips, cut=cuts)
def test_mutated_torch_zip_loads_or_raises_checkpoint_error(flips, cut):
    load_bytes(mutate(SEED, flips, None if cut is None else cut % (len(SEED) + 1)),
               **SEED_OVERRIDES)


def rezip(pkl):
    """The seed archive with a replaced data.pkl (CRCs valid, so the pickle machine runs)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in SEED_ENTRIES:
            zf.writestr(name, pkl if name.endswith("/data.pkl") else data)
    return buf.getvalue()


@given(flips=flips, cut=cuts,
       insert=st.tuples(st.integers(0, 2 ** 16), st.binary(min_size=0, max_size=8)))
def test_mutated_pickle_inside_a_valid_zip_loads_or_raises_checkpoint_error(flips, cut, insert):
    pkl = mutate(SEED_PKL, flips, None if cut is None else cut % (len(SEED_PKL) + 1))
    at, extra = insert
    at %= len(pkl) + 1
    load_bytes(rezip(pkl[:at] + extra + pkl[at:]), **SEED_OVERRIDES)


def header_of(blob):
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


VALUES = st.one_of(st.integers(-3, 2 ** 70), st.sampled_from(
    ["F32", "F64", "BF16", "F16", "I64", "U8", "BOOL", "F8_E4M3", "", None, True, 1.5]),
    st.lists(st.integers(-2, 40), max_size=4))


@given(tensor=st.integers(0, 100), field=st.sampled_from(["dtype", "shape", "data_offsets"]),
       index=st.integers(0, 3), value=VALUES, keep_length=st.booleans(),
       drop_data=st.integers(0, 64))
def test_edited_safetensors_header_loads_or_raises_checkpoint_error(
        tensor, field, index, value, keep_length, drop_data):
    header, data = header_of(OWN)
    names = [k for k in header if k != "__metadata__"]
    entry = header[names[tensor % len(names)]]
    if isinstance(entry[field], list) and entry[field] and not isinstance(value, list):
        entry[field][index % len(entry[field])] = value
    else:
        entry[field] = value
    text = json.dumps(header).encode()
    n = len(OWN) - 8 - len(data) if keep_length else len(text)
    blob = struct.pack("<Q", n) + text + data[:len(data) - drop_data]
    load_bytes(blob)


@given(field=st.sampled_from(["vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
                              "layer_norm_epsilon", "activation_function", "n_inner",
                              "tie_word_embeddings", "model_type"]),
       value=st.one_of(st.integers(-2, 50), st.floats(allow_nan=False), st.text(max_size=5),
                       st.none(), st.booleans()),
       flips=flips)
def test_edited_gpt2_folder_loads_or_raises_checkpoint_error(field, value, flips):
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "gpt2")
        shutil.copytree(HF_FOLDER, folder)
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        config[field] = value
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f)
        weights = os.path.join(folder, "pytorch_model.bin")
        with open(weights, "rb") as f:
            blob = f.read()
        with open(weights, "wb") as f:
            f.write(mutate(blob, flips, None))
        try:
            npgpt.io.load(folder)
        except CheckpointError as exc:
            assert str(exc)
