"""npgpt.io's hand-written safetensors reader/writer: round trips, dtypes, hostile headers."""

import json
import os
import struct

import numpy as np
import pytest

from npgpt.io import CheckpointError, read_safetensors, write_safetensors
from helpers import skip_without


def raw_file(path, header, data=b"", header_len=None):
    """Write a safetensors file by hand: any header (dict or raw bytes), any data, any length."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(blob) if header_len is None else header_len
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", n) + blob + data)
    return path


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_write_read_round_trip_is_bit_exact_for_every_writable_dtype(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f64": rng.normal(size=(3, 2)), "f32": rng.normal(size=(4,)).astype(np.float32),
        "f16": rng.normal(size=(2, 2)).astype(np.float16),
        "i64": np.array([-(2 ** 40), 7]), "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "i8": np.array([-128, 127], dtype=np.int8), "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False]), "scalar": np.float32(2.5),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "transposed": np.arange(6, dtype=np.float32).reshape(2, 3).T,
        "big_endian": np.arange(3, dtype=">f4"),
    }
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, {"k": "v"})
    back, meta = read_safetensors(path)
    assert meta == {"k": "v"}
    assert list(back) == list(tensors)
    for name, value in tensors.items():
        value = np.asarray(value)
        assert back[name].shape == value.shape, name
        assert back[name].dtype == value.dtype.newbyteorder("="), name
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    # header padded so the data buffer starts 8-byte aligned
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert n % 8 == 0


def test_written_arrays_are_writeable_and_independent_of_the_file(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"a": np.ones(3, np.float32)})
    back, _ = read_safetensors(path)
    back["a"][0] = 5.0
    assert read_safetensors(path)[0]["a"][0] == 1.0


def test_bf16_is_read_as_float32_exactly(tmp_path):
    values = np.array([1.0, -2.5, 0.15625, 2.0 ** 100], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")   # these values are exact in bf16
    path = raw_file(tmp_path / "b.safetensors", {"x": entry("BF16", [4], 0, 8)}, bits.tobytes())
    got = read_safetensors(path)[0]["x"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


def test_write_refuses_unsupported_dtypes_and_bad_metadata(tmp_path):
    with pytest.raises(ValueError, match="complex128"):
        write_safetensors(tmp_path / "x", {"c": np.zeros(2, complex)})
    with pytest.raises(ValueError, match="metadata"):
        write_safetensors(tmp_path / "x", {"a": np.zeros(2)}, {"k": 1})
    assert not os.listdir(tmp_path)   # nothing half-written


@skip_without("safetensors")
def test_files_agree_with_the_safetensors_library_both_ways(tmp_path):
    from safetensors.numpy import load_file, save_file
    rng = np.random.default_rng(1)
    tensors = {"w": rng.normal(size=(3, 5)).astype(np.float32), "b": np.arange(4, dtype=np.int64),
               "h": rng.normal(size=(2,)).astype(np.float16), "d": rng.normal(size=(2, 2))}
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    write_safetensors(ours, tensors, {"format": "np"})
    save_file(tensors, str(theirs), metadata={"format": "np"})
    for name, value in load_file(str(ours)).items():
        np.testing.assert_array_equal(value, tensors[name])
    back, meta = read_safetensors(theirs)
    assert meta == {"format": "np"}
    for name, value in tensors.items():
        np.testing.assert_array_equal(back[name], value)


# --------------------------------------------------------------- hostile and broken files
HOSTILE = {
    # name: (header, data, header_len override, expected message fragment)
    "empty file": (None, b"", None, "too short"),
    "header length past the end": ({"a": entry("F32", [1], 0, 4)}, b"\0" * 4, 10_000, "past the end"),
    "header length over the cap": ({}, b"", 2 ** 40, "exceeds"),
    "not JSON": (b"{not json}", b"", None, "not valid JSON"),
    "not UTF-8": (b"{\xff\xfe}", b"", None, "UTF-8"),
    "JSON but a list": (b"[1, 2]", b"", None, "start with"),
    "duplicate key": (b'{"a": 1, "a": 2}', b"", None, "twice"),
    "unknown dtype": ({"a": entry("F128", [1], 0, 16)}, b"\0" * 16, None, "unknown or unsupported dtype"),
    "shape x dtype != bytes": ({"a": entry("F32", [3], 0, 8)}, b"\0" * 8, None, "needs 12 bytes"),
    "offset out of range": ({"a": entry("F32", [2], 0, 8)}, b"\0" * 4, None, "out of range"),
    "begin after end": ({"a": entry("U8", [0], 4, 2)}, b"\0" * 4, None, "out of range"),
    "overlap": ({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, b"\0" * 12, None, "overlap"),
    "gap": ({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, b"\0" * 12, None, "gap"),
    "trailing bytes": ({"a": entry("F32", [1], 0, 4)}, b"\0" * 9, None, "trailing"),
    "negative shape": ({"a": entry("F32", [-1], 0, 4)}, b"\0" * 4, None, "non-negative"),
    "float offset": ({"a": entry("F32", [1], 0.0, 4)}, b"\0" * 4, None, "non-negative integer"),
    "bool shape": ({"a": entry("F32", [True], 0, 4)}, b"\0" * 4, None, "non-negative integer"),
    "extra key": ({"a": {**entry("F32", [1], 0, 4), "x": 1}}, b"\0" * 4, None, "exactly the keys"),
    "metadata not str": ({"__metadata__": {"a": 1}}, b"", None, "__metadata__"),
    "huge zero-size shape": ({"a": entry("F32", [0, 2 ** 61, 2 ** 61], 0, 0)}, b"", None, "shape"),
    "deep nesting": (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"", None, "JSON"),
    "NaN in shape": (b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}',
                     b"\0" * 4, None, "non-negative integer"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_malformed_safetensors_raise_checkpoint_error_saying_what_is_wrong(tmp_path, case):
    header, data, header_len, message = HOSTILE[case]
    path = tmp_path / "bad.safetensors"
    if header is None:
        path.write_bytes(data)
    else:
        raw_file(path, header, data, header_len)
    with pytest.raises(CheckpointError, match=message):
        read_safetensors(path)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_a_valid_file_truncated_anywhere_raises_checkpoint_error(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"a": np.arange(5, dtype=np.float32), "b": np.ones((2, 2))})
    blob = path.read_bytes()
    for cut in range(len(blob)):
        path.write_bytes(blob[:cut])
        with pytest.raises(CheckpointError):
            read_safetensors(path)
