"""Hostile GGUF files: every count, length, dimension and offset is checked against the
file's size before anything is allocated; whatever the bytes, only a short CheckpointError
naming the field comes out, in bounded time and memory."""

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.io import CheckpointError, read_gguf, read_gguf_metadata
from gguf_files import gguf_bytes, string, tiny_llama_gguf

SHORT = 1000


def refused(path, match, reader=read_gguf):
    """The CheckpointError reading ``path`` raises (nothing else), short and matching."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=match) as info:
            reader(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(str(info.value)) < SHORT
    assert peak < 20 * 2 ** 20, f"{peak / 2 ** 20:.0f} MB"
    return str(info.value)


def header(n_tensors=0, n_kv=1, version=3):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def write(tmp_path, data):
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    return path


CASES = {
    "a metadata string of 2**63 bytes": (
        header() + string("k") + struct.pack("<IQ", 8, 2 ** 63) + b"x" * 64,
        r"metadata 'k' \(a string of 9223372036854775808 bytes\)"),
    "a key of 2**64-1 bytes": (header() + struct.pack("<Q", 2 ** 64 - 1) + b"x" * 64,
                               "metadata key 0"),
    "an array of 2**62 numbers": (
        header() + string("k") + struct.pack("<IIQ", 9, 6, 2 ** 62) + bytes(64),
        r"metadata 'k' \(4611686018427387904 float32 items\)"),
    "an array of 2**40 strings": (
        header() + string("k") + struct.pack("<IIQ", 9, 8, 2 ** 40) + bytes(64),
        r"1099511627776 string items"),
    "2**60 metadata entries": (header(n_kv=2 ** 60) + bytes(64), "metadata_kv_count"),
    "2**60 tensors": (header(n_tensors=2 ** 60, n_kv=0) + bytes(64), "tensor_count"),
    "an unknown value type": (header() + string("k") + struct.pack("<I", 13) + bytes(16),
                              "metadata 'k': unknown value type 13"),
    "an unknown array item type": (header() + string("k") + struct.pack("<IIQ", 9, 77, 1)
                                   + bytes(16), "item type: unknown value type 77"),
    "arrays nested too deep": (header() + string("k") + struct.pack("<I", 9)
                               + struct.pack("<IQ", 9, 1) * 6 + bytes(16), "nested"),
    "a repeated key": (header(n_kv=2) + (string("k") + struct.pack("<IB", 0, 1)) * 2,
                       "metadata key 'k': appears twice"),
    "bad UTF-8": (header() + string(b"\xff\xfe") + struct.pack("<IB", 0, 1), "not valid UTF-8"),
    "version 1": (header(version=1) + bytes(16), "version: 1 is not supported"),
    "a big-endian file": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
    "a wrong magic": (b"GGUX" + bytes(40), "magic"),
    "a truncated header": (b"GGUF" + bytes(19), "too short"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_defect_is_one_short_error_naming_the_field(tmp_path, case):
    data, match = CASES[case]
    refused(write(tmp_path, data), match, read_gguf_metadata)


def tensor_file(tensors, metadata=(), alignment=32):
    """A file of tensors given as (name, dims, type, offset, nbytes of data to append)."""
    out = header(len(tensors), len(metadata))
    for key, kind, value in metadata:
        out += string(key) + struct.pack("<I", kind) + struct.pack("<I", value)
    for name, dims, kind, offset, _ in tensors:
        out += string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", kind, offset)
    out += bytes(-len(out) % alignment)
    return out + bytes(sum(t[4] for t in tensors))


TENSOR_CASES = {
    "n_dims 5": ([("t", (1, 1, 1, 1, 1), 0, 0, 4)], r"n_dims: 5 is not in \[1, 4\]"),
    "a zero dimension": ([("t", (4, 0), 0, 0, 16)], "zero dimension"),
    "dimensions past the file": ([("t", (2 ** 32, 2 ** 32), 0, 0, 64)], "more than a file"),
    "an unknown tensor type": ([("t", (4,), 99, 0, 16)], "unknown ggml type 99"),
    "a row not a multiple of the block": ([("t", (48,), 8, 0, 64)],
                                          "48 is not a multiple of Q8_0's block of 32"),
    "a misaligned offset": ([("t", (4,), 0, 8, 32)], "offset 8 is not a multiple"),
    "an offset past the end": ([("t", (4,), 0, 2 ** 63, 16)], "runs past the end"),
    "data past the end": ([("t", (64,), 0, 0, 16)], "runs past the end"),
    "overlapping tensors": ([("a", (16,), 0, 0, 64), ("b", (16,), 0, 32, 64)],
                            "tensors 'a' and 'b' overlap"),
    "a repeated tensor": ([("a", (4,), 0, 0, 16), ("a", (4,), 0, 32, 16)], "'a': appears twice"),
}


@pytest.mark.parametrize("case", sorted(TENSOR_CASES))
def test_each_tensor_table_defect_is_one_short_error(tmp_path, case):
    tensors, match = TENSOR_CASES[case]
    refused(write(tmp_path, tensor_file(tensors)), match)


@pytest.mark.parametrize("alignment", [0, 3, 48, 2 ** 31])
def test_an_alignment_that_is_not_a_small_power_of_two_is_refused(tmp_path, alignment):
    data = tensor_file([("t", (4,), 0, 0, 16)], [("general.alignment", 4, alignment)])
    refused(write(tmp_path, data), "general.alignment must be a power of two")


def test_a_block_count_beyond_the_tensors_is_refused_before_any_table_is_built(tmp_path):
    data = tiny_llama_gguf().replace(string("llama.block_count") + struct.pack("<II", 4, 1),
                                     string("llama.block_count") + struct.pack("<II", 4, 2 ** 31 - 1))
    refused(write(tmp_path, data), "block_count=2147483647 but the file holds only 11 tensors",
            npgpt.load)


@pytest.mark.parametrize("key, kind, value, match", [
    ("llama.embedding_length", 4, 0, "must be a positive integer"),
    ("llama.attention.head_count", 6, 2.0, "must be a positive integer"),
    ("llama.attention.layer_norm_rms_epsilon", 8, "x", "must be a positive number"),
    ("llama.rope.scaling.type", 8, "yarn", "'yarn' is not"),
])
def test_config_values_of_the_wrong_kind_are_refused_naming_the_key(tmp_path, key, kind, value,
                                                                     match):
    base = [("general.architecture", 8, "llama"), ("llama.context_length", 4, 16),
            ("llama.embedding_length", 4, 32), ("llama.block_count", 4, 1),
            ("llama.feed_forward_length", 4, 64), ("llama.attention.head_count", 4, 2),
            ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5)]
    meta = [m for m in base if m[0] != key] + [(key, kind, value)]
    data = gguf_bytes(meta, [("token_embd.weight", (32, 8), 0, bytes(32 * 8 * 4))])
    message = refused(write(tmp_path, data), match, npgpt.load)
    assert key in message


VALID = tiny_llama_gguf(f32=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, len(VALID))))
def test_mutated_bytes_load_or_raise_only_a_short_checkpoint_error(tmp_path, edits, cut):
    data = bytearray(VALID)
    for position, byte in edits:
        data[position] = byte
    if cut is not None:
        data = data[:cut]
    path = write(tmp_path, bytes(data))
    tracemalloc.start()
    try:
        npgpt.load(path)
    except CheckpointError as err:
        assert len(str(err)) < SHORT
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20, f"{peak / 2 ** 20:.0f} MB"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 200), value=st.sampled_from([0, 1, 0xFF, 0x7F, 0x80]),
       width=st.sampled_from([1, 8]))
def test_mutated_counts_and_lengths_in_the_header_region_are_refused_briefly(tmp_path, position,
                                                                             value, width):
    """Lengths and counts live in the first bytes: overwrite whole 8-byte words with extremes."""
    data = bytearray(VALID)
    data[position:position + width] = bytes([value]) * width
    try:
        read_gguf(write(tmp_path, bytes(data)))
    except CheckpointError as err:
        assert len(str(err)) < SHORT


def test_the_fuzzed_file_is_valid_to_begin_with(tmp_path):
    assert npgpt.load(write(tmp_path, VALID)).config.num_layers == 1
    assert np.isfinite(npgpt.load(write(tmp_path, VALID))([1, 2])).all()
