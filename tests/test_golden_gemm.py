"""The bit-exact GEMM and output stage on hand-computed cases, plus invariants."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import golden.gemm as gemm_module
from golden.compress import compress
from golden.formats import FORMATS
from golden.gemm import dequantize_weights, gemm, gemm_raw, rdbpot, requantize, srdhm
from golden.layer import Layer, LayerError

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def make_layer(fmt, codes, *, scale_kind="none", group=None, scales=None, zeros=None,
               sparsity="dense", idx=None, K=None, **extra):
    """A layer from hand-written codes (column-major lists are given as [K, N])."""
    codes = np.asarray(codes, dtype=np.uint8)
    if codes.ndim == 1:
        codes = codes[:, None]
    N = codes.shape[1]
    if K is None:
        K = codes.shape[0]
    if group is None:
        group = K
    if scale_kind in ("none", "int") and "scale_exp" not in extra:
        extra["scale_exp"] = np.zeros(N, np.int32)
    dtype = np.uint8 if scale_kind == "pow2" else np.int32
    return Layer(
        format=fmt, sparsity=sparsity, group=group, scale_kind=scale_kind, shape=(K, N),
        codes=codes, idx=None if idx is None else np.asarray(idx, np.uint8),
        scales=None if scales is None else np.asarray(scales, dtype),
        zeros=None if zeros is None else np.asarray(zeros, np.uint8), **extra,
    )


def x8(rows):
    return np.asarray(rows, dtype=np.int8)


def one_hot_x(values, K=32):
    x = np.zeros((1, K), dtype=np.int8)
    x[0, : len(values)] = values
    return x


def codes32(values, n_cols=1):
    c = np.zeros((32, n_cols), dtype=np.uint8)
    c[: len(values)] = np.asarray(values, dtype=np.uint8).reshape(len(values), -1)
    return c


# ----------------------------------------------------------------------------- none / int


def test_int8_none_by_hand():
    w = np.array([[1, -2], [3, 4], [-5, 6], [7, -128]], dtype=np.int8)
    acc, err = gemm_raw(x8([[1, 2, 3, 4]]), make_layer("int8", w.view(np.uint8)))
    assert acc.tolist() == [[20, -488]] and acc.dtype == np.int64 and not err.any()


def test_int4_int_scales_by_hand():
    # values 7, −8 | 3, −1 ; groups of 2 with scales 3 and −2
    layer = make_layer("int4", [7, 8, 3, 15], scale_kind="int", group=2, scales=[[3], [-2]])
    acc, _ = gemm_raw(x8([[1, -1, 2, 3]]), layer)
    assert acc.tolist() == [[15 * 3 + 3 * -2]]  # P0 = 7 + 8 = 15, P1 = 6 − 3 = 3


def test_uint4_zero_points_by_hand():
    # v − z = [0−8, 15−8 | 9−4, 4−4] = [−8, 7, 5, 0]
    codes, zeros = [0, 15, 9, 4], [[8], [4]]
    x = x8([[2, 1, -1, 5]])
    layer = make_layer("uint4", codes, scale_kind="int", group=2, scales=[[2], [10]], zeros=zeros)
    assert gemm_raw(x, layer)[0].tolist() == [[-9 * 2 + -5 * 10]]
    layer = make_layer("uint4", codes, group=2, zeros=zeros)
    assert gemm_raw(x, layer)[0].tolist() == [[-14]]


def test_uint4_pruned_positions_are_real_zeros():
    # 2:4, slots at idx 1 and 3 with codes z and z+2: pruned k = 0, 2 contribute nothing
    layer = make_layer("uint4", [[5], [7]], K=4, sparsity="2:4", idx=[[1], [3]], group=4,
                       zeros=[[5]])
    assert gemm_raw(x8([[100, 100, 100, 3]]), layer)[0].tolist() == [[6]]


def test_int2_ternary_fp4_mxint8_none_by_hand():
    assert gemm_raw(x8([[3, 4, 5, 6]]), make_layer("int2", [2, 3, 1, 0]))[0].tolist() == [[-5]]
    ternary = make_layer("ternary", [1, 3, 0, 1])
    assert gemm_raw(x8([[10, 20, 30, 40]]), ternary)[0].tolist() == [[30]]
    # fp4 ×2 values: 6.0 → 12, −0.5 → −1, 1.5 → 3, −0 → 0
    fp4 = make_layer("fp4_e2m1", [0b0111, 0b1001, 0b0011, 0b1000])
    assert gemm_raw(x8([[1, 2, 3, 4]]), fp4)[0].tolist() == [[12 - 2 + 9 + 0]]
    mx = make_layer("mxint8", np.array([64, -64, 127, -128], np.int8).view(np.uint8))
    assert gemm_raw(x8([[1, 1, 1, 1]]), mx)[0].tolist() == [[-1]]


def test_sparse_2_4_by_hand():
    # K = 8, one column: slots (idx 1: 3), (idx 2: −1) in block 0; (idx 0: 2), (idx 3: 1) in 1
    layer = make_layer("int4", [[3], [15], [2], [1]], K=8, sparsity="2:4",
                       idx=[[1], [2], [0], [3]])
    x = x8([[9, 1, 2, 9, 4, 9, 9, 5]])
    assert gemm_raw(x, layer)[0].tolist() == [[1 * 3 + 2 * -1 + 4 * 2 + 5 * 1]]


def test_ternary_invalid_code_flags_whole_column():
    layer = make_layer("ternary", [[1, 1], [0b10, 3], [0, 0], [1, 1]])
    acc, err = gemm_raw(x8([[1, 2, 3, 4], [0, 0, 0, 0]]), layer)
    assert acc.tolist() == [[5, 3], [0, 0]]  # invalid code counts as 0
    assert err.tolist() == [[True, False], [True, False]]


# ----------------------------------------------------------------------------- pow2


def test_pow2_int8_left_shift_by_hand():
    layer = make_layer("int8", codes32([7, 0xFE]), scale_kind="pow2", group=32, scales=[[129]])
    x = one_hot_x([3, 5])  # P = 21 − 10 = 11, t = 2
    assert gemm_raw(x, layer)[0].tolist() == [[11 << 18]]
    assert gemm_raw(x, layer, frac_bits=0)[0].tolist() == [[44]]


def test_pow2_right_shift_floors_negative_products():
    # column 0: P = 3·7 + 5·(−2) = 11; column 1: P = 3·(−7) + 5·2 = −11; t = −20, shift −4
    codes = codes32(np.array([[7, -7], [-2, 2]], np.int8).view(np.uint8), n_cols=2)
    layer = make_layer("int8", codes, scale_kind="pow2", group=32, scales=[[107, 107]])
    acc, err = gemm_raw(one_hot_x([3, 5]), layer)
    assert acc.tolist() == [[0, -1]] and not err.any()  # floor(11/16) = 0, floor(−11/16) = −1


def test_pow2_fp4_and_mxint8_adjustments():
    fp4 = make_layer("fp4_e2m1", codes32([0b0101]), scale_kind="pow2", group=32, scales=[[127]])
    x = one_hot_x([5])  # 5 · 3.0 = 15.0; P = 5 · 6 = 30 with t = −1
    assert gemm_raw(x, fp4)[0].tolist() == [[15 << 16]]
    assert gemm_raw(x, fp4, frac_bits=0)[0].tolist() == [[15]]
    mx = make_layer("mxint8", codes32([64]), scale_kind="pow2", group=32, scales=[[127]])
    assert gemm_raw(one_hot_x([3]), mx)[0].tolist() == [[3 << 16]]  # P = 192, t = −6


def test_pow2_mxint8_activations_with_x_exp():
    # x = 64/64 · 2**1 = 2.0 ; w = 3 · 2**0 ; t = 0 + 1 + 0 − 6 = −5 ; P = 192
    layer = make_layer("int8", codes32([3]), scale_kind="pow2", group=32, scales=[[127]])
    x_exp = np.array([[128]], np.uint8)
    acc, err = gemm_raw(one_hot_x([64]), layer, x_exp=x_exp)
    assert acc.tolist() == [[6 << 16]] and not err.any()


def test_pow2_x_exp_rows_groups_and_nan():
    # K = 64: two groups; row 1 has a NaN exponent in group 0 only
    codes = np.zeros((64, 1), np.uint8)
    codes[0, 0], codes[32, 0] = 1, 2
    layer = make_layer("int8", codes, scale_kind="pow2", group=32, scales=[[127], [128]])
    x = np.zeros((2, 64), np.int8)
    x[:, 0], x[:, 32] = 64, 64
    x_exp = np.array([[127, 126], [255, 127]], np.uint8)
    acc, err = gemm_raw(x, layer, x_exp=x_exp, frac_bits=0)
    # row 0: 64·1·2**−6 + 64·2·2**(1 − 1 − 6) = 1 + 2 ; row 1: NaN group → 0, then 64·2·2**−5 = 4
    assert acc.tolist() == [[3], [4]]
    assert err.tolist() == [[False], [True]]


def test_pow2_nan_weight_scale_flags_and_contributes_zero():
    codes = np.zeros((64, 1), np.uint8)
    codes[0, 0], codes[32, 0] = 1, 1
    layer = make_layer("int8", codes, scale_kind="pow2", group=32, scales=[[255], [127]])
    x = np.zeros((1, 64), np.int8)
    x[0, 0], x[0, 32] = 100, 7
    acc, err = gemm_raw(x, layer, frac_bits=0)
    assert acc.tolist() == [[7]] and err.tolist() == [[True]]


def test_pow2_exponent_window_edges():
    x = one_hot_x([1])
    for e_w, t, flagged in [(135, 8, False), (136, 9, True), (95, -32, False), (94, -33, True)]:
        layer = make_layer("int8", codes32([1]), scale_kind="pow2", group=32, scales=[[e_w]])
        acc, err = gemm_raw(x, layer, frac_bits=40)
        assert err.tolist() == [[flagged]], t
        assert acc.tolist() == [[0 if flagged else 1 << (t + 40)]]
    layer = make_layer("int8", codes32([1]), scale_kind="pow2", group=32, scales=[[136]])
    assert not gemm_raw(x, layer, t_max=9)[1].any()


def test_x_exp_refused_without_pow2():
    layer = make_layer("int8", np.zeros((32, 1)))
    with pytest.raises(ValueError, match="pow2"):
        gemm_raw(one_hot_x([1]), layer, x_exp=np.zeros((1, 1), np.uint8))


def test_activation_checks():
    layer = make_layer("int8", np.zeros((4, 1)))
    with pytest.raises(ValueError, match="int8"):
        gemm_raw(np.zeros((1, 4), np.int16), layer)
    with pytest.raises(ValueError, match=r"\[M, 4\]"):
        gemm_raw(np.zeros((1, 5), np.int8), layer)
    with pytest.raises(LayerError, match="'codes'"):
        gemm_raw(np.zeros((1, 4), np.int8), layer.copy(codes=np.zeros((4, 1), np.int8)))


# ----------------------------------------------------------------------------- output stage


def test_srdhm_ties_both_signs():
    b = np.full(6, 2**30)  # multiply by one half
    a = np.array([1, -1, 3, -3, 5, -5])
    # gemmlowp: nudge 2**30 or 1 − 2**30 then truncate: +ties go up, −ties go towards zero
    assert srdhm(a, b).tolist() == [1, 0, 2, -1, 3, -2]
    assert srdhm([-3], [2**30 + 1]).tolist() == [-2]  # just past the tie
    assert srdhm([I32_MIN], [I32_MIN]).tolist() == [I32_MAX]  # the one overflow case
    assert srdhm([I32_MIN], [I32_MAX]).tolist() == [-(2**31) + 1]


def test_rdbpot_ties_half_away_from_zero():
    x = np.array([5, -5, 6, -6, -7, -5, 7, 0])
    e = np.array([1, 1, 2, 2, 2, 2, 0, 5])
    assert rdbpot(x, e).tolist() == [3, -3, 2, -2, -2, -1, 7, 0]


def test_requantize_by_hand():
    ones = np.ones(1, np.int32)
    # 105 · 2**30 → SRDHM = 53 (52.5 up), RDBPOT(53, 1) = 27 (26.5 away), + 3 → 30 (double rounding)
    y, err = requantize(np.array([[100]]), bias=[5], out_mult=ones * 2**30, out_shift=[-1],
                        out_zp=3)
    assert y.tolist() == [[30]] and y.dtype == np.int8 and not err.any()
    y, _ = requantize(np.array([[3]]), out_mult=ones * 2**30, out_shift=[2])
    assert y.tolist() == [[6]]  # 3·4 = 12, half → 6
    y, err = requantize(np.array([[1000, -1000]]), out_mult=[2**30, 2**30], out_shift=[0, 0])
    assert y.tolist() == [[127, -128]] and not err.any()


def test_requantize_int32_saturation_sets_error():
    m0, sh = np.array([2**30] * 5), np.array([0, 1, 1, 1, 1])
    acc = np.array([[2**31, 2**30, 2**30 - 1, -(2**30), -(2**30) - 1]])
    y, err = requantize(acc, out_mult=m0, out_shift=sh)
    assert err.tolist() == [[True, True, False, False, True]]
    assert y.tolist() == [[127, 127, 127, -128, -128]]


def test_requantize_parameter_checks_and_layer_source():
    layer = make_layer("int8", np.ones((4, 1)), bias=np.array([1], np.int64),
                       out_mult=np.array([2**30], np.int32), out_shift=np.array([0], np.int32))
    y, err = gemm(x8([[1, 1, 1, 1]]), layer, out_stage="requant")
    assert y.tolist() == [[3]] and not err.any()  # acc 4, + bias 1 = 5, · ½ = 2.5 → 3
    with pytest.raises(ValueError, match="out_mult"):
        requantize(np.zeros((1, 1), np.int64), out_mult=[2**29], out_shift=[0])
    with pytest.raises(ValueError, match="out_shift"):
        requantize(np.zeros((1, 1), np.int64), out_mult=[2**30], out_shift=[31])
    with pytest.raises(ValueError, match="requant"):
        gemm(x8([[1, 1, 1, 1]]), make_layer("int8", np.ones((4, 1))), out_stage="requant")


def _requant_reference(acc, bias, m0, sh, zp):
    """Scalar pure-Python gemmlowp/TFLite reference with NUMERICS.md int32 saturation."""
    v = (acc + bias) * 2 ** max(sh, 0)
    err = not I32_MIN <= v <= I32_MAX
    v = min(max(v, I32_MIN), I32_MAX)
    ab = v * m0
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    num = ab + nudge
    high = abs(num) // 2**31 * (1 if num >= 0 else -1)  # C++ truncating division
    e = max(-sh, 0)
    mask = (1 << e) - 1
    rem, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
    r = (high >> e) + (1 if rem > threshold else 0)
    return min(max(r + zp, -128), 127), err


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(2**40), 2**40),
    st.integers(-(2**20), 2**20),
    st.integers(2**30, 2**31 - 1),
    st.integers(-31, 30),
    st.integers(-200, 200),
)
def test_requantize_matches_scalar_reference(acc, bias, m0, sh, zp):
    y, err = requantize(np.array([[acc]]), bias=[bias], out_mult=[m0], out_shift=[sh], out_zp=zp)
    assert (int(y[0, 0]), bool(err[0, 0])) == _requant_reference(acc, bias, m0, sh, zp)


# ----------------------------------------------------------------------------- invariants


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 5), st.data())
def test_dense_none_int8_is_plain_matmul(M, K, N, data):
    x = data.draw(hnp.arrays(np.int8, (M, K)))
    w = data.draw(hnp.arrays(np.int8, (K, N)))
    acc, err = gemm_raw(x, make_layer("int8", w.view(np.uint8)))
    np.testing.assert_array_equal(acc, x.astype(np.int64) @ w.astype(np.int64))
    assert not err.any()


CASES = [(f, k) for f, info in FORMATS.items() for k in info.allowed_scales]


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(CASES),
    st.sampled_from(["dense", "1:4", "2:4", "2:8", "4:8"]),
    st.integers(1, 2),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)
def test_gemm_equals_dequantized_float_product(case, sparsity, n_blocks, N, seed):
    """Raw · 2**(scale_exp − frac) equals x @ dequantize_weights exactly (no floor loss)."""
    fmt, kind = case
    rng = np.random.default_rng(seed)
    K = 32 * n_blocks
    w = rng.normal(size=(K, N)) * rng.choice([1e-3, 1.0, 50.0])
    layer = compress(w, fmt=fmt, sparsity=sparsity, scale_kind=kind,
                     group=32 if kind == "pow2" else 16 * n_blocks)
    x = rng.integers(-128, 128, size=(3, K)).astype(np.int8)
    frac, t_min, t_max = 0, -32, 8
    if kind == "pow2":  # a window and frac_bits that make every shift a left shift
        t = layer.scales.astype(int) - 127 + FORMATS[fmt].pow2_adj
        t_min, t_max = int(t.min()), int(t.max())
        frac = max(-t_min, 0)
    scale_exp = np.zeros(N) if layer.scale_exp is None else layer.scale_exp
    acc, err = gemm_raw(x, layer, frac_bits=frac, t_min=t_min, t_max=t_max)
    assert not err.any()
    expected = x.astype(np.float64) @ dequantize_weights(layer)
    np.testing.assert_array_equal(acc * 2.0 ** (scale_exp[None, :] - frac), expected)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["int8", "int4", "fp4_e2m1", "mxint8", "ternary"]), st.booleans(),
       st.integers(0, 4), st.booleans(), st.integers(0, 2**32 - 1))
def test_pow2_fold_matches_group_by_group(fmt, use_x_exp, spread, nan, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(64, 5)) * 2.0 ** rng.integers(-3 * spread, spread + 1, size=(1, 5))
    layer = compress(w, fmt=fmt, scale_kind="pow2")
    if nan:
        scales = layer.scales.copy()
        scales[rng.random(scales.shape) < 0.1] = 255
        layer = layer.copy(scales=scales)
    x = rng.integers(-128, 128, size=(4, 64)).astype(np.int8)
    x_exp = rng.integers(127 - spread, 130 + spread, size=(4, 2)).astype(np.uint8)
    x_exp = x_exp if use_x_exp else None
    kwargs = dict(x_exp=x_exp, frac_bits=int(rng.integers(0, 20)), t_min=-20, t_max=4)
    acc, err = gemm_raw(x, layer, **kwargs)
    xf = x.astype(np.float64)
    w_mac, _ = gemm_module.mac_weights(layer)
    xmax = float(np.abs(xf).max())
    ref_acc = np.zeros_like(acc)
    ref_err = np.zeros_like(err)
    for g in range(2):  # independent scalar-shift reference, one group at a time
        sl = slice(32 * g, 32 * g + 32)
        p = (x[:, sl].astype(np.int64) @ w_mac[sl].astype(np.int64))
        e_x = np.full((4, 1), 127) if x_exp is None else x_exp[:, g : g + 1].astype(int)
        adj = FORMATS[fmt].pow2_adj - (6 if x_exp is not None else 0)
        t = (layer.scales[g].astype(int) - 127)[None, :] + (e_x - 127) + adj
        bad = (layer.scales[g] == 255)[None, :] | (e_x == 255) | (t < -20) | (t > 4)
        for m, n in np.ndindex(p.shape):
            s = int(t[m, n]) + kwargs["frac_bits"]
            c = int(p[m, n]) << s if s >= 0 else int(p[m, n]) >> -s
            ref_acc[m, n] += 0 if bad[m, n] else c
        ref_err |= bad
    np.testing.assert_array_equal(acc, ref_acc)
    np.testing.assert_array_equal(err, ref_err)
    unfolded, err2 = gemm_module._accumulate_pow2(
        xf, w_mac, layer, None if x_exp is None else x_exp.astype(np.int64), xmax,
        kwargs["frac_bits"], -20, 4, fold=False,
    )
    np.testing.assert_array_equal(unfolded, acc)


def test_int_path_group_by_group_matches_single_product(monkeypatch):
    rng = np.random.default_rng(5)
    layer = compress(rng.normal(size=(64, 6)), fmt="uint4", sparsity="2:4", group=16,
                     scale_kind="int")
    x = rng.integers(-128, 128, size=(3, 64)).astype(np.int8)
    single, _ = gemm_raw(x, layer)
    monkeypatch.setattr(gemm_module, "_EXACT_FLOAT_BOUND", 0.0)
    grouped, _ = gemm_raw(x, layer)
    np.testing.assert_array_equal(single, grouped)


def test_bits_floor_values_and_metadata():
    """Ternary values at log2 3 bits, 2:4 metadata at log2(6)/4, scales not counted."""
    import math

    from golden.metrics import bits_floor

    rng = np.random.default_rng(3)
    w = rng.normal(size=(64, 4))
    assert bits_floor(compress(w, fmt="int8", scale_kind="int")) == 8.0
    tern = compress(w, fmt="ternary", sparsity="2:4", scale_kind="int")
    assert bits_floor(tern) == pytest.approx(math.log2(3) / 2 + math.log2(6) / 4)


# ----------------------------------------------------------------------------- MX activations


def fp8(fmt, values):
    """fp8 codes of exact values (by the codec's encoder, RNE)."""
    from golden.formats import encode

    return encode(fmt, values)


def test_fp8_activations_times_fp8_weights_by_hand():
    """E4M3 × E4M3: x = 1.5·2**1, w = −0.75, both as value·2**9; t = −9 − 9 + 1 + 0."""
    layer = make_layer("fp8_e4m3", codes32(fp8("fp8_e4m3", [-0.75])), scale_kind="pow2",
                       group=32, scales=[[127]])
    x = codes32(fp8("fp8_e4m3", [1.5]))[:, 0][None, :]
    x_exp = np.array([[128]], np.uint8)
    acc, err = gemm_raw(x, layer, x_exp=x_exp, x_format="fp8_e4m3", frac_bits=4)
    # P = (1.5·512)·(−0.75·512) = −294912 ; t = 0 + 1 − 18 = −17 ; floor(P · 2**(−17 + 4))
    assert acc.tolist() == [[-294912 >> 13]] and not err.any()
    assert acc[0, 0] * 2.0**-4 == 1.5 * 2 * -0.75


def test_fp8_e5m2_squared_needs_more_than_int64_and_stays_exact():
    """E5M2 × E5M2 group sums reach 2**69: the exact path, then the floor shift."""
    big = fp8("fp8_e5m2", [57344.0] * 32)
    layer = make_layer("fp8_e5m2", big[:, None], scale_kind="pow2", group=32, scales=[[127]])
    x = big[None, :]
    acc, err = gemm_raw(x, layer, x_exp=np.array([[127]], np.uint8), x_format="fp8_e5m2",
                        frac_bits=0, t_min=-40)
    p = 32 * (57344 * 2**16) ** 2  # > 2**63
    assert p > 2**63 and acc.tolist() == [[p >> 32]] and not err.any()
    assert acc[0, 0] == 32 * 57344**2


def test_fp8_invalid_activation_codes_count_zero_and_flag_their_row():
    layer = make_layer("int8", codes32([1, 1], n_cols=1), scale_kind="pow2", group=32,
                       scales=[[127]])
    x = np.zeros((2, 32), np.uint8)
    x[0, 0], x[0, 1] = 0x7F, fp8("fp8_e4m3", [2.0])[0]  # NaN, 2.0
    x[1, 0] = fp8("fp8_e4m3", [1.0])[0]
    acc, err = gemm_raw(x, layer, x_exp=np.full((2, 1), 127, np.uint8), x_format="fp8_e4m3",
                        frac_bits=9, t_min=-40)
    # t = −9, frac_bits 9: shift 0; the NaN counts 0, 2.0·2**9 remains
    assert acc.tolist() == [[1024], [512]] and err.tolist() == [[True], [False]]
    x[1, 1] = 0x7C  # E5M2 +Inf (0x7F is an E5M2 NaN too)
    _, err = gemm_raw(x, layer, x_exp=np.full((2, 1), 127, np.uint8), x_format="fp8_e5m2",
                      t_min=-40)
    assert err.tolist() == [[True], [True]]
    _, invalid = gemm_module.decode_activations(x, "fp8_e5m2")
    assert invalid.sum() == 2 and invalid[0, 0] and invalid[1, 1]


def test_fp8_weight_nan_code_flags_its_column():
    codes = codes32([0x7F, 0x38], n_cols=1)  # NaN, 1.0
    codes = np.concatenate([codes, codes32([0x38])], axis=1)
    layer = make_layer("fp8_e4m3", codes, scale_kind="pow2", group=32, scales=[[127, 127]])
    acc, err = gemm_raw(one_hot_x([3, 5]), layer, frac_bits=9)  # t = −9: shift 0
    assert acc.tolist() == [[5 * 512, 3 * 512]]  # the NaN weight counts 0
    assert err.tolist() == [[True, False]]


def test_mx_activation_argument_errors():
    layer = make_layer("int8", codes32([1]), scale_kind="pow2", group=32, scales=[[127]])
    x_exp = np.full((1, 1), 127, np.uint8)
    with pytest.raises(ValueError, match="fp8_e4m3 activations need their block exponents"):
        gemm_raw(np.zeros((1, 32), np.uint8), layer, x_format="fp8_e4m3")
    with pytest.raises(ValueError, match=r"\(fp8_e5m2 codes\) must be an array of uint8, got int8"):
        gemm_raw(np.zeros((1, 32), np.int8), layer, x_exp=x_exp, x_format="fp8_e5m2")
    with pytest.raises(ValueError, match="plain int8"):
        gemm_raw(np.zeros((1, 32), np.int8), layer, x_exp=x_exp, x_format="int8")
    with pytest.raises(ValueError, match="unknown activation format 'fp16'"):
        gemm_raw(np.zeros((1, 32), np.int8), layer, x_exp=x_exp, x_format="fp16")
    with pytest.raises(ValueError, match=r"x_exp must have shape \(1, 1\)"):
        gemm_raw(np.zeros((1, 32), np.uint8), layer, x_exp=np.zeros((1, 2), np.uint8),
                 x_format="fp8_e4m3")


POW2_FORMATS = [f for f, info in FORMATS.items() if "pow2" in info.allowed_scales]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(POW2_FORMATS), st.sampled_from(["mxint8", "fp8_e4m3", "fp8_e5m2"]),
       st.sampled_from(["dense", "2:4"]), st.booleans(), st.integers(0, 2**32 - 1))
def test_mx_activations_match_a_python_int_reference(fmt, x_format, sparsity, nan, seed):
    """Every weight format × MX activation format against exact Python integers, group by
    group: P_g, t = (e_w − 127) + (e_x − 127) + adj_w + adj_x, floor shift, NaN and window."""
    from golden.quant import quantize_activations_mx

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(64, 3)) * 2.0 ** rng.integers(-4, 5, size=(1, 3))
    layer = compress(w, fmt=fmt, sparsity=sparsity, scale_kind="pow2")
    x = rng.normal(size=(3, 64)) * 2.0 ** rng.integers(-6, 7, size=(3, 1))
    x_q, x_exp = quantize_activations_mx(x, x_format)
    if nan:
        x_exp = x_exp.copy()
        x_exp[rng.random(x_exp.shape) < 0.2] = 255
        if x_format != "mxint8":
            bad = FORMATS[x_format].invalid_codes[0]
            x_q = x_q.copy()
            x_q[rng.random(x_q.shape) < 0.02] = bad
    frac, t_min, t_max = int(rng.integers(0, 24)), -48, 4
    acc, err = gemm_raw(x_q, layer, x_exp=x_exp, x_format=x_format, frac_bits=frac,
                        t_min=t_min, t_max=t_max)
    xv, x_bad = gemm_module.decode_activations(x_q, x_format)
    w_mac, _ = gemm_module.mac_weights(layer)
    xi = xv.astype(np.int64).astype(object)
    wi = w_mac.astype(np.int64).astype(object)
    adj = FORMATS[fmt].pow2_adj + FORMATS[x_format].pow2_adj
    ref = np.zeros((3, 3), dtype=object)
    ref_err = np.broadcast_to(x_bad.any(axis=1)[:, None], (3, 3)).copy()
    for g in range(2):
        sl = slice(32 * g, 32 * g + 32)
        p = xi[:, sl].dot(wi[sl])
        for m, n in np.ndindex(3, 3):
            e_w, e_x = int(layer.scales[g, n]), int(x_exp[m, g])
            t = (e_w - 127) + (e_x - 127) + adj
            if e_w == 255 or e_x == 255 or not t_min <= t <= t_max:
                ref_err[m, n] = True
                continue
            s = t + frac
            ref[m, n] += p[m, n] << s if s >= 0 else p[m, n] >> -s
    np.testing.assert_array_equal(acc, ref.astype(np.int64))
    np.testing.assert_array_equal(err, ref_err)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.sampled_from([1, 2**20, 2**31, 2**40, 2**52]),
       st.sampled_from([1, 2**17, 2**32, 2**50]), st.integers(0, 2**32 - 1))
def test_exact_matmul_equals_python_integers(K, amax, bmax, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-amax, amax, size=(3, K), endpoint=True, dtype=np.int64)
    b = rng.integers(-bmax, bmax, size=(K, 2), endpoint=True, dtype=np.int64)
    got = gemm_module.exact_matmul(a.astype(np.float64), b.astype(np.float64))
    want = a.astype(object).dot(b.astype(object))
    assert (got.astype(object) == want).all()
