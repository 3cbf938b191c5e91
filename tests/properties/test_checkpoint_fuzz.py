"""Fuzzing the checkpoint readers: a mutated file either loads or raises CheckpointError.

Invariant for every test here: whatever bytes are on disk, ``npgpt.io.load`` returns a
model or raises ``CheckpointError`` with a short message, never another exception, never a
hang, never more memory than a few times the file's size (``BYTES_PER_BYTE`` times it plus
``SLACK``: the torch reader's promise, see ``npgpt.io.torch_pickle``, with some margin).
Files are small (a few KB, one of 9 MB) so most examples take milliseconds.
"""

import io
import json
import os
import shutil
import struct
import tempfile
import tracemalloc
import zipfile

from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

import npgpt
import npgpt.io
from npgpt.io import CheckpointError, torch_pickle
from helpers import FIXTURES
from test_io_torch import op_global, op_int, op_str

SEED_PT = os.path.join(FIXTURES, "checkpoint_seed.pt")
SEED_OVERRIDES = dict(num_heads=2, residual="seed", gelu="exact")
HF_FOLDER = os.path.join(FIXTURES, "tiny_gpt2_bin")
SHORT = 1000        # characters: no message about a file's content is longer
# Memory (tracemalloc's peak) a load may take: the pickle machine's objects are held to 4 times
# the file plus 8 MiB, the pickle's own bytes are once the file; the rest is margin.
BYTES_PER_BYTE, SLACK = 6, 16 * 2 ** 20


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
            assert len(str(exc)) < SHORT, str(exc)[:2000]
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


# Pickle snippets that each push exactly one object, built from others: lists and tuples
# of k copies, dicts, and memo entry 1 (a string at first) replaced by what was just built,
# so that "h\x01" fetches it again: lists of lists of one shared list (a "billion laughs").
def _many(child, k, opening, closing):
    return opening + child * k + closing


def _laughs(width, levels):
    """Memo entry 1 replaced ``levels`` times by a list of ``width`` copies of itself."""
    return (b"(" + b"h\x01" * width + b"lq\x01") * levels + b"h\x01"


ONE_OBJECT = st.recursive(
    st.sampled_from([op_str("lol"), b"K\x05", b"N", b"h\x01", b"\x8a\x02\xff\x7f", b")"])
    | st.builds(_laughs, st.integers(2, 60), st.integers(1, 8)),
    lambda inner: st.one_of(
        st.builds(_many, inner, st.integers(1, 60), st.just(b"("), st.just(b"l")),
        st.builds(_many, inner, st.integers(1, 60), st.just(b"("), st.just(b"t")),
        st.builds(lambda key, v: b"}" + op_str(key) + v + b"s", st.sampled_from(["a", "b"]), inner),
        inner.map(lambda ops: ops + b"q\x01")),
    max_leaves=12)
WHERE = ["state value", "size", "stride", "offset", "persistent id", "storage size",
         "top level", "hooks"]


def pickle_with(value, where):
    """A state_dict pickle with the one object ``value`` pushes put at ``where``."""
    prologue = b"\x80\x02" + op_str("lol") + b"q\x01" + b"0"
    if where == "top level":
        return prologue + value + b"."
    if where == "state value":
        return prologue + b"}" + op_str("w") + value + b"s."
    parts = dict(numel=op_int(4), pid=None, offset=op_int(0), size=b"K\x04\x85",
                 stride=b"K\x01\x85", hooks=b"}")
    key = {"storage size": "numel", "persistent id": "pid"}.get(where, where)
    parts[key] = value
    storage = parts["pid"] or (b"(" + op_str("storage") + op_global("torch", "FloatStorage")
                               + op_str("0") + op_str("cpu") + parts["numel"] + b"t")
    tensor = (op_global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + b"Q"
              + parts["offset"] + parts["size"] + parts["stride"] + b"\x89" + parts["hooks"]
              + b"tR")
    return prologue + b"}" + op_str("w") + tensor + b"s."


# A 9 MB pickle of 216,000 lists of 5 "lol" strings each, nothing shared: 1.3 million
# nodes is within the node budget (4 a byte), but 52-byte strings from 8-byte opcodes took
# 117 MB (13.5 times the file) before the reader charged the memory its objects take.
NESTED_STRINGS = _many(_many(_many(_many(op_str("lol"), 5, b"(", b"l"), 60, b"(", b"l"),
                             60, b"(", b"l"), 60, b"(", b"t")


@settings(max_examples=60)
@given(value=ONE_OBJECT, where=st.sampled_from(WHERE))
@example(value=NESTED_STRINGS, where="state value")
def test_shared_and_nested_objects_anywhere_in_a_pickle_are_refused_briefly(value, where):
    blob = rezip(pickle_with(value, where))
    tracemalloc.start()
    try:
        load_bytes(blob, **SEED_OVERRIDES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < BYTES_PER_BYTE * len(blob) + SLACK, \
        f"{peak / 2 ** 20:.0f} MB for a {len(blob)}-byte file"


# Opcodes that each push one new object, as densely as pickle can: 1-byte empty lists,
# short strings (non-ASCII too), numbers, tuples, memo entries (dense and sparse), fetches.
DENSE = st.sampled_from([
    b"]", b"}", b")", b"N\x85", b"NN\x86", b"(l", b"(t", b"(d", b"\x8c\x02ab",
    b"\x8c\x04\xf0\x9f\x98\x80", b"J\x00\x00\x01\x00", b"M\x00\x10", b"G" + bytes(8),
    b"\x8a\x02\xff\x7f", b"]\x94", b"}K\x07Ns", b"](NNNe", b"h\x00", b"N2\x86"]) \
    | st.binary(min_size=4, max_size=4).map(lambda index: b"]r" + index)


@given(pattern=st.lists(DENSE, min_size=1, max_size=8), repeats=st.integers(1, 3000),
       per_byte=st.sampled_from([4, 32, 1000]))
def test_the_objects_any_pickle_builds_take_at_most_their_budget_of_memory(
        pattern, repeats, per_byte):
    """The pickle machine charges what it allocates against ``per_byte`` bytes a byte of the
    pickle (no slack): its peak stays within that whether it refuses part way (4, as loading
    does) or finishes (1000)."""
    data = b"\x80\x02]\x94(" + b"".join(pattern) * repeats + b"e."
    with mock.patch.multiple(torch_pickle, OBJECT_SLACK=0, MAX_OBJECT_BYTES_PER_BYTE=per_byte):
        tracemalloc.start()
        try:
            torch_pickle.unpickle_state_dict(data, persistent_load=None)
        except CheckpointError as exc:
            assert len(str(exc)) < SHORT
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peak < per_byte * len(data) + 64 * 1024, f"{peak} bytes for a {len(data)}-byte pickle"


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
