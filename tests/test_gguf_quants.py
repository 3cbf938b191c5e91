"""GGUF's tensor types: npgpt's dequantisers against the format's definition (hand-built
blocks), against the ``gguf`` package's ``quants.dequantize`` bit for bit (a recorded fixture
always; random blocks live when ``gguf`` is installed), and Q8_0 quantisation likewise."""

import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.io import gguf_quants as Q
from helpers import FIXTURES, skip_without

sys.path.insert(0, FIXTURES)
from make_gguf_fixtures import EDGE_F16, SCALE_OFFSETS, edge_blocks  # noqa: E402

FIXTURE = np.load(os.path.join(FIXTURES, "gguf_quants.npz"))
TYPES = {name: number for number, (name, *_) in Q.DEQUANTIZERS.items()}


def bits(x):
    """float32 values as their bit patterns, so that NaN == NaN and 0.0 != -0.0."""
    return np.asarray(x, np.float32).view(np.uint32)


def ours(raw, name):
    _, per_block, block_bytes, _ = Q.DEQUANTIZERS[TYPES[name]]
    with np.errstate(all="ignore"):
        return Q.dequantize(raw.reshape(-1), TYPES[name], (raw.size // block_bytes * per_block,))


def f16_bytes(x):
    return list(np.array([x], "<f2").view(np.uint8))


# ---------------------------------------------------------------- from the definitions
def test_q4_0_low_nibbles_are_the_first_sixteen_weights_centred_on_eight():
    block = np.array([f16_bytes(0.5) + [0x1F] * 16], np.uint8)       # low 15, high 1
    np.testing.assert_array_equal(Q.dequantize_q4_0(block)[0],
                                  [0.5 * (15 - 8)] * 16 + [0.5 * (1 - 8)] * 16)


def test_q4_1_adds_the_minimum():
    block = np.array([f16_bytes(2.0) + f16_bytes(-1.0) + [0x30] * 16], np.uint8)
    np.testing.assert_array_equal(Q.dequantize_q4_1(block)[0], [-1.0] * 16 + [5.0] * 16)


def test_q5_0_takes_the_fifth_bit_of_weight_j_from_bit_j_of_qh():
    qh = (1 << 0) | (1 << 17)                                        # weights 0 and 17
    block = np.array([f16_bytes(1.0) + list(qh.to_bytes(4, "little")) + [0] * 16], np.uint8)
    expected = np.full(32, -16.0)
    expected[[0, 17]] = 0.0
    np.testing.assert_array_equal(Q.dequantize_q5_0(block)[0], expected)


def test_q5_1_and_q8_0_follow_their_formulas():
    b51 = np.array([f16_bytes(0.25) + f16_bytes(3.0) + [0xFF] * 4 + [0xFF] * 16], np.uint8)
    np.testing.assert_array_equal(Q.dequantize_q5_1(b51)[0], [0.25 * 31 + 3.0] * 32)
    q = np.arange(-16, 16, dtype=np.int8)
    b80 = np.array([f16_bytes(-2.0) + list(q.view(np.uint8))], np.uint8)
    np.testing.assert_array_equal(Q.dequantize_q8_0(b80)[0], -2.0 * q)


def test_q6_k_weight_order_and_scales():
    """Weight 128h + 32j + l: nibble (j // 2) of ql[64h + 32(j % 2) + l], bits 2j of
    qh[32h + l], scale s = index // 16; x = d · scale_s · (q − 32)."""
    rng = np.random.default_rng(0)
    ql, qh = rng.integers(0, 256, 128), rng.integers(0, 256, 64)
    scales = rng.integers(-128, 128, 16)
    block = np.array([list(ql) + list(qh) + list(scales.astype(np.int8).view(np.uint8))
                      + f16_bytes(0.5)], np.uint8)
    expected = np.empty(256)
    for h in range(2):
        for j in range(4):
            for l in range(32):
                i = 128 * h + 32 * j + l
                low = (ql[64 * h + 32 * (j % 2) + l] >> (4 * (j // 2))) & 15
                high = (qh[32 * h + l] >> (2 * j)) & 3
                expected[i] = 0.5 * scales[i // 16] * ((low | high << 4) - 32)
    np.testing.assert_array_equal(Q.dequantize_q6_k(block)[0], expected)


def test_q4_k_six_bit_scales_and_mins_unpack_as_defined():
    rng = np.random.default_rng(1)
    packed = rng.integers(0, 256, (1, 12)).astype(np.uint8)
    scales, mins = Q._scales_and_mins_k4(packed)
    b = packed[0].astype(int)
    for s in range(8):
        if s < 4:
            want = (b[s] & 63, b[s + 4] & 63)
        else:
            want = ((b[s + 4] & 15) | (b[s - 4] >> 6) << 4, (b[s + 4] >> 4) | (b[s] >> 6) << 4)
        assert (scales[0, s], mins[0, s]) == want


def test_unknown_type_names():
    assert Q.type_name(16) == "IQ2_XXS" and Q.type_name(1000) == "unknown type 1000"


def test_dequantize_writes_a_column_major_out_in_place():
    raw = np.random.default_rng(2).integers(0, 256, 4 * 34, dtype=np.uint8)
    out = np.empty((2, 64), np.float32, order="F")
    Q.dequantize(raw, TYPES["Q8_0"], (2, 64), out=out)
    np.testing.assert_array_equal(out, Q.dequantize(raw, TYPES["Q8_0"], (2, 64)))


def test_dequantize_refuses_bytes_that_do_not_hold_the_shape():
    with pytest.raises(ValueError, match="Q8_0: 33 bytes"):
        Q.dequantize(np.zeros(33, np.uint8), TYPES["Q8_0"], (32,))


# ---------------------------------------------------------------- the recorded reference
@pytest.mark.parametrize("name", sorted(SCALE_OFFSETS))
def test_each_type_equals_the_gguf_reference_bit_for_bit_with_edge_scales(name):
    np.testing.assert_array_equal(bits(ours(FIXTURE[f"{name}/raw"], name)),
                                  bits(FIXTURE[f"{name}/ref"]))


def test_edge_scales_zero_subnormal_inf_nan_give_zero_exact_inf_nan():
    """The documented decision: no special case; ggml's arithmetic (inf · 0 = NaN)."""
    raw = FIXTURE["Q8_0/raw"]
    x = ours(raw, "Q8_0").reshape(-1, 32)
    q = raw[:, 2:].view(np.int8).astype(np.float32)
    assert np.all(x[0] == 0) and np.all(x[1] == 0)                    # 0, -0
    np.testing.assert_array_equal(x[2], q[2] * np.float32(2.0 ** -24))  # smallest subnormal
    assert np.array_equal(np.isnan(x[5]), q[5] == 0)                  # +inf: inf·q, NaN at 0
    assert np.all(np.isnan(x[7]))                                     # NaN


def test_q8_0_quantisation_equals_the_gguf_reference_bit_for_bit():
    with np.errstate(all="ignore"):
        got = Q.quantize_q8_0(FIXTURE["q8_0/values"])
    np.testing.assert_array_equal(got, FIXTURE["q8_0/ref"])


def test_round_half_away_from_zero_is_exact_next_to_one_half():
    x = np.array([0.49999997, 0.5, -0.5, 1.5, -2.5, 2.4999998], np.float32)
    np.testing.assert_array_equal(Q._round_half_away(x), [0, 1, -1, 2, -3, 2])


# ---------------------------------------------------------------- live, random blocks
@skip_without("gguf")
@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(SCALE_OFFSETS)), seed=st.integers(0, 2 ** 32 - 1),
       n=st.integers(1, 24))
def test_random_blocks_equal_gguf_dequantize_bit_for_bit(name, seed, n):
    from gguf import GGMLQuantizationType, quants
    _, _, block_bytes, _ = Q.DEQUANTIZERS[TYPES[name]]
    raw = edge_blocks(np.random.default_rng(seed), block_bytes, SCALE_OFFSETS[name], n)
    with np.errstate(all="ignore"):
        ref = quants.dequantize(raw.reshape(-1), GGMLQuantizationType[name]).reshape(-1)
    np.testing.assert_array_equal(bits(ours(raw, name)), bits(ref))


@skip_without("gguf")
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), scale=st.sampled_from([1e-30, 1e-6, 1.0, 1e3, 1e6]),
       rows=st.integers(1, 8))
def test_random_rows_quantise_to_q8_0_as_gguf_does(seed, scale, rows):
    from gguf import GGMLQuantizationType, quants
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal((rows, 64)) * scale).astype(np.float32)
    values[rng.random(values.shape) < 0.1] = 0.0
    with np.errstate(all="ignore"):
        ref = quants.quantize(values, GGMLQuantizationType.Q8_0)
        got = Q.quantize_q8_0(values.reshape(-1, 32)).reshape(ref.shape)
    np.testing.assert_array_equal(got, ref)


def test_the_fixture_holds_every_type_npgpt_reads():
    assert set(SCALE_OFFSETS) == set(TYPES) and len(EDGE_F16) == 8
