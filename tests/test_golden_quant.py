"""Quantizers (SPEC §4) and scale conversions, on hand-computed cases."""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.formats import FORMATS, decode, decode_float
from golden.quant import (
    column_pow2_exponents,
    group_float_scales,
    int_scales,
    quantize_activations_int8,
    quantize_activations_mx,
    quantize_activations_mxint8,
    quantize_asymmetric,
    quantize_mx,
    quantize_symmetric,
    quantize_ternary,
    quantize_uint2,
    quantize_uint4,
    shared_exponents,
    zero_points,
)


def test_symmetric_int8_per_channel_rne_and_clamp():
    u = 2.0**-7  # column 0 has amax 127·u, so s = u exactly
    w = np.array([[127 * u, 63.5], [0.5 * u, -127.0], [-1.5 * u, 31.75], [2.5 * u, 0.0]])
    q, s = quantize_symmetric(w, 8, group=4)
    assert s.tolist() == [[u, 1.0]]
    assert q[:, 0].tolist() == [127, 0, -2, 2]  # ties to even: 0.5 → 0, −1.5 → −2, 2.5 → 2
    assert q[:, 1].tolist() == [64, -127, 32, 0]


def test_symmetric_int4_groups_and_int2_clamp():
    w = np.array([[7.0], [3.5], [-1.0], [0.25]])
    q, s = quantize_symmetric(w, 4, group=2)
    assert s[:, 0].tolist() == [1.0, 1 / 7]
    assert q[:, 0].tolist() == [7, 4, -7, 2]  # 3.5 → 4; 0.25·7 = 1.75 → 2
    q2, s2 = quantize_symmetric(np.array([[2.0], [-2.0], [0.9], [-1.1]]), 2, group=4)
    assert s2[0, 0] == 2.0 and q2[:, 0].tolist() == [1, -1, 0, -1]  # clamp ±1, 0.45 → 0
    with pytest.raises(ValueError, match="8, 4 or 2"):
        quantize_symmetric(w, 3, group=2)


def test_uint4_gptq_by_hand():
    w = np.array([[-1.0], [2.0], [0.5], [1.0]])
    q, s, z = quantize_uint4(w, group=4)
    assert s[0, 0] == pytest.approx(0.2)  # (2 − (−1)) / 15
    assert z[0, 0] == 5  # round(1 / 0.2)
    assert q[:, 0].tolist() == [0, 15, 7, 10]  # round(w/s) + 5: −5, 10, 2.5→2, 5
    # GPTQ keeps 0 inside the range: all-positive weights still have min = 0, z = 0
    q, s, z = quantize_uint4(np.array([[1.5], [3.0]]), group=2)
    assert s[0, 0] == pytest.approx(0.2) and z[0, 0] == 0 and q[:, 0].tolist() == [8, 15]
    # an all-zero group gets GPTQ's [−1, 1]: s = 2/15, z = round(7.5) = 8 (even)
    q, s, z = quantize_uint4(np.zeros((2, 1)), group=2)
    assert s[0, 0] == pytest.approx(2 / 15) and z[0, 0] == 8 and q[:, 0].tolist() == [8, 8]


def test_ternary_bitnet_by_hand():
    w = np.array([[0.9], [-0.2], [0.1], [-1.2]])
    q, gamma = quantize_ternary(w, group=4)
    assert gamma[0, 0] == pytest.approx(0.6)
    assert q[:, 0].tolist() == [1, 0, 0, -1]  # 1.5 → 2 → 1, −0.33 → 0, 0.17 → 0, −2 → −1


def test_group_statistics_use_kept_weights_only():
    w = np.array([[1.0], [100.0], [3.0], [0.0]])
    keep = np.array([[True], [False], [True], [True]])
    gamma, _ = group_float_scales("ternary", w, 4, keep)
    assert gamma[0, 0] == pytest.approx(4.0 / 3.0)  # mean over the 3 kept weights
    s, _ = group_float_scales("int8", w, 4, keep)
    assert s[0, 0] == pytest.approx(3.0 / 127)


def test_int_scales_use_full_range():
    s, e = int_scales(np.array([[0.75, 1e-3], [0.3, 2e-3]]), scale_bits=16)
    # column 0: 0.75 / 2**-15 = 24576 ≤ 32767 and 0.75 / 2**-16 would overflow
    assert e.tolist()[0] == -15 and s[:, 0].tolist() == [24576, round(0.3 * 2**15)]
    assert s.dtype == np.int32 and e.dtype == np.int32
    assert 16384 <= np.abs(s[:, 1]).max() <= 32767
    s8, e8 = int_scales(np.array([[127.0]]), scale_bits=8)
    assert (s8[0, 0], e8[0]) == (127, 0)
    s8, e8 = int_scales(np.array([[127.5]]), scale_bits=8)
    assert (s8[0, 0], e8[0]) == (64, 1)  # 63.75 → 64
    s0, e0 = int_scales(np.zeros((2, 1)))
    assert s0.tolist() == [[0], [0]] and e0.tolist() == [0]


@settings(max_examples=50, deadline=None)
@given(st.floats(1e-30, 1e30), st.integers(2, 32))
def test_int_scales_exponent_is_smallest_that_fits(scale, bits):
    s, e = int_scales(np.array([[scale]]), bits)
    qs = 2 ** (bits - 1) - 1
    assert scale <= qs * 2.0 ** int(e[0]) and scale > qs * 2.0 ** (int(e[0]) - 1)
    assert abs(int(s[0, 0])) <= qs


def test_column_pow2_exponent_rounds_up():
    e = column_pow2_exponents(np.array([[0.3, 0.25, 0.0], [0.1, 0.125, 0.0]]))
    assert e.tolist() == [-1, -2, 0]


def test_ocp_floor_and_rceil_shared_exponents():
    # fp4: emax_elem 2. amax 6.0 → floor(log2 6) − 2 = 0; amax 7 → 0 too (saturates to 6)
    amax = np.array([6.0, 7.0, 0.75, 0.0])
    assert shared_exponents("fp4_e2m1", amax).tolist() == [0, 0, -3, 0]
    # RCEIL: smallest e with amax ≤ 6·2**e
    assert shared_exponents("fp4_e2m1", amax, rceil=True).tolist() == [0, 1, -3, 0]
    # mxint8: emax 0; element max 127/64
    assert shared_exponents("mxint8", np.array([1.0, 2.0, 1.99])).tolist() == [0, 1, 0]
    assert shared_exponents("mxint8", np.array([1.99]), rceil=True).tolist() == [1]
    assert shared_exponents("int8", np.array([127.0, 128.0])).tolist() == [0, 1]
    assert shared_exponents("ternary", np.array([0.3, 0.25])).tolist() == [-2, -2]
    assert shared_exponents("ternary", np.array([0.3]), rceil=True).tolist() == [-1]
    assert shared_exponents("int8", np.array([1e-300])).tolist() == [-127]


def test_quantize_mx_fp4_by_hand():
    w = np.zeros((32, 1))
    w[:4, 0] = [7.0, 2.5, -0.3, 6.0]
    codes, e8m0 = quantize_mx(w, "fp4_e2m1")
    assert e8m0.tolist() == [[127]]
    # 7 saturates to 6; 2.5 tie → 2; −0.3 → −0.5; 6 → 6; zeros stay code 0 (never −0)
    assert codes[:4, 0].tolist() == [7, 4, 0b1001, 7] and not codes[4:].any()
    codes, e8m0 = quantize_mx(w, "fp4_e2m1", rceil=True)
    assert e8m0.tolist() == [[128]] and codes[:4, 0].tolist() == [6, 2, 0, 5]  # 3.5→4, 1.25→1


def test_quantize_mx_refuses_uint4():
    with pytest.raises(ValueError, match="uint4"):
        quantize_mx(np.zeros((32, 1)), "uint4")


def test_activations_int8_per_token():
    x = np.array([[1.0, -0.5, 0.25, 2.0], [0.0, 0.0, 0.0, 0.0], [-3.0, 1.0, 0.0, 0.0]])
    x_q, scale = quantize_activations_int8(x)
    assert x_q.dtype == np.int8
    # row 0: x·127/2: 63.5 → 64, −31.75 → −32, 15.875 → 16, 127
    assert x_q[0].tolist() == [64, -32, 16, 127]
    assert x_q[1].tolist() == [0, 0, 0, 0] and scale[1] == 1.0
    assert x_q[2].tolist() == [-127, 42, 0, 0]  # 42.33 → 42
    assert scale[0] == 2.0 / 127


def test_activations_mxint8_by_hand():
    x = np.zeros((1, 64))
    x[0, 0], x[0, 1], x[0, 32] = 3.0, -1.0, 0.015625
    x_q, x_exp = quantize_activations_mxint8(x)
    assert x_q.dtype == np.int8 and x_exp.dtype == np.uint8 and x_exp.shape == (1, 2)
    # block 0: amax 3 → e = 1; 3/2·64 = 96, −1/2·64 = −32; block 1: 2**−6 → e = −6, code 64
    assert x_exp.tolist() == [[128, 121]]
    assert (x_q[0, 0], x_q[0, 1], x_q[0, 32]) == (96, -32, 64)
    values = x_q.astype(float) / 64 * 2.0 ** (x_exp.astype(int) - 127).repeat(32, axis=1)
    np.testing.assert_array_equal(values, x)


def test_decode_of_quantized_ternary_never_invalid():
    rng = np.random.default_rng(1)
    q, _ = quantize_ternary(rng.normal(size=(64, 8)), group=16)
    assert set(np.unique(q)) <= {-1, 0, 1}
    assert not decode("ternary", np.array([0, 1, 3]))[1].any()


def test_uint2_gptq_by_hand():
    """SPEC §4: the uint4 rule with 3 for 15."""
    w = np.array([[-1.0], [2.0], [0.5], [1.0]])
    q, s, z = quantize_uint2(w, group=4)
    assert s[0, 0] == 1.0 and z[0, 0] == 1  # s = (2 − (−1)) / 3, z = round(1 / 1)
    assert q[:, 0].tolist() == [0, 3, 1, 2]  # round(w/s) + 1: −1+1, 2+1, 0.5→0 (+1), 1+1
    q, s, z = quantize_uint2(np.array([[-4.5], [1.5], [9.0], [0.0]]), group=2)
    assert s[:, 0].tolist() == [2.0, 3.0] and z[:, 0].tolist() == [2, 0]  # 2.25 → 2
    assert q[:, 0].tolist() == [0, 3, 3, 0]  # −2.25→−2, 0.75→1, clamp; 3, 0
    q, s, z = quantize_uint2(np.zeros((2, 1)), group=2)  # GPTQ's [−1, 1]: s = 2/3, z = 2
    assert s[0, 0] == pytest.approx(2 / 3) and z[0, 0] == 2 and q[:, 0].tolist() == [2, 2]
    assert zero_points(np.array([-10.0]), np.array([1.0]), "uint2").tolist() == [3]  # clamp
    with pytest.raises(ValueError, match="int4 has no zero points"):
        zero_points(np.array([0.0]), np.array([1.0]), "int4")
    with pytest.raises(ValueError, match="zero-point format, not int8"):
        quantize_asymmetric(w, 4, fmt="int8")


def test_ocp_emax_elem_of_every_mx_format():
    """SPEC §4: emax_elem 2 (fp4), 0 (mxint8), 8 (fp8_e4m3), 15 (fp8_e5m2)."""
    for fmt, emax in (("fp4_e2m1", 2), ("mxint8", 0), ("fp8_e4m3", 8), ("fp8_e5m2", 15)):
        for k in (-20, 0, 3):
            amax = np.array([2.0**k, 2.0**k * 1.99])
            assert shared_exponents(fmt, amax).tolist() == [k - emax, k - emax], fmt


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
def test_quantize_mx_fp8_is_rne_saturating_against_ml_dtypes(fmt):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 5)) * np.exp(rng.uniform(-8, 8, (64, 5)))
    dtype = {"fp8_e4m3": ml_dtypes.float8_e4m3fn, "fp8_e5m2": ml_dtypes.float8_e5m2}[fmt]
    top = FORMATS[fmt].symmetric_max
    for rceil in (False, True):
        codes, e8m0 = quantize_mx(w, fmt, rceil=rceil)
        scale = np.ldexp(1.0, e8m0.astype(int) - 127).repeat(32, axis=0)
        ratio = w / scale
        assert (np.abs(ratio) <= top).all() == rceil or not rceil  # RCEIL never saturates
        ref = np.clip(ratio, -top, top).astype(dtype).view(np.uint8)
        ref = np.where(ref == 0x80, 0, ref)  # −0 → +0
        np.testing.assert_array_equal(codes, ref)
        assert not decode(fmt, codes)[1].any()  # never a NaN / Inf code
    # floor rule: the block maximum lands in [2**emax, 2**(emax+1)) and may saturate
    w = np.zeros((32, 1))
    w[0, 0], w[1, 0] = 500.0, -2.0**-20
    codes, e8m0 = quantize_mx(w, "fp8_e4m3")
    assert e8m0[0, 0] == 127 + 0  # floor(log2 500) − 8 = 0
    assert decode_float("fp8_e4m3", codes[:2, 0]).tolist() == [448.0, 0.0]  # saturate; −0 → 0
    assert codes[1, 0] == 0
    codes, e8m0 = quantize_mx(w, "fp8_e4m3", rceil=True)
    assert e8m0[0, 0] == 128 and decode_float("fp8_e4m3", codes[:1, 0]).tolist() == [256.0]


@pytest.mark.parametrize("fmt", ["mxint8", "fp8_e4m3", "fp8_e5m2"])
def test_activations_mx_reconstruct_within_element_precision(fmt):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 64)) * 10
    x_q, x_exp = quantize_activations_mx(x, fmt)
    assert x_q.dtype == (np.int8 if fmt == "mxint8" else np.uint8) and x_exp.shape == (3, 2)
    values = decode_float(fmt, x_q.view(np.uint8)) * np.ldexp(1.0, x_exp.astype(int) - 127).repeat(
        32, axis=1)
    amax = np.abs(x).reshape(3, 2, 32).max(axis=2).repeat(32, axis=1)
    if fmt == "mxint8":  # fixed point: half a step, or saturation at 127/64, below amax/64
        assert (np.abs(values - x) <= amax / 64).all()
    else:  # half an ulp (2**-4 / 2**-3) or saturation (448/512, 57344/65536): 1/8 of |x|
        assert (np.abs(values - x) <= np.maximum(np.abs(x) / 8, amax * 2.0**-12)).all()
    x_q2, x_exp2 = quantize_activations_mx(x, fmt, rceil=True)
    assert (x_exp2 >= x_exp).all()
    if fmt == "mxint8":
        np.testing.assert_array_equal(quantize_activations_mxint8(x)[0], x_q)


def test_activations_mx_bad_inputs():
    with pytest.raises(ValueError, match="int8 is not an MX activation format"):
        quantize_activations_mx(np.zeros((1, 32)), "int8")
    with pytest.raises(ValueError, match="unknown activation format"):
        quantize_activations_mx(np.zeros((1, 32)), "fp16")
    with pytest.raises(ValueError, match="K a multiple of 32, got K=48"):
        quantize_activations_mx(np.zeros((1, 48)), "fp8_e4m3")
    with pytest.raises(ValueError, match="NaN or infinity"):
        quantize_activations_mx(np.full((1, 32), np.inf), "fp8_e5m2")
