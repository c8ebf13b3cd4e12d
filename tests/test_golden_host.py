"""golden.host: TFLite's QuantizeMultiplier, requant parameters from float scales and the
dequantization of results.
"""

import math

import numpy as np
import pytest

from golden.compress import compress
from golden.gemm import gemm, gemm_raw
from golden.host import dequantize_output, output_scales, quantize_multiplier, requant_params
from golden.quant import quantize_activations_int8


@pytest.mark.parametrize("real, m0, shift", [
    (0.5, 1 << 30, 0),
    (1.0, 1 << 30, 1),
    (0.75, 3 << 29, 0),
    (2.0 ** -20, 1 << 30, -19),
    # q = 1 - 2^-40 rounds to 2^31: halved, shift + 1
    (1 - 2.0 ** -40, 1 << 30, 1),
])
def test_quantize_multiplier_known_values(real, m0, shift):
    got_m0, got_shift = quantize_multiplier(real)
    assert (int(got_m0[0]), int(got_shift[0])) == (m0, shift)


def test_quantize_multiplier_is_close_and_in_range():
    rng = np.random.default_rng(3)
    real = np.exp(rng.uniform(-20, 4, 500))
    m0, shift = quantize_multiplier(real)
    assert ((m0 >= 1 << 30) & (m0 < 1 << 31)).all()
    approx = m0 * np.ldexp(1.0, shift - 31)
    assert np.all(np.abs(approx / real - 1) <= 2.0 ** -31)


@pytest.mark.parametrize("real", [0.0, -1.0, math.inf, 2.0 ** -40, 2.0 ** 31])
def test_quantize_multiplier_refuses(real):
    with pytest.raises(ValueError):
        quantize_multiplier(real)


def _layer_and_x(scale_kind="int"):
    rng = np.random.default_rng(11)
    w = rng.standard_normal((64, 8))
    x = rng.standard_normal((6, 64))
    layer = compress(w, fmt="int8", sparsity="dense", group=32 if scale_kind == "pow2" else None,
                     scale_kind=scale_kind)
    return layer, w, x


def test_requant_matches_float_rounding_of_the_accumulator():
    layer, _, x = _layer_and_x()
    xq, xs = quantize_activations_int8(x.reshape(1, -1))
    xq = xq.reshape(x.shape)
    acc, _ = gemm_raw(xq, layer)
    y_scale = float(np.abs(acc * output_scales(layer) * xs[0]).max()) / 127
    bias = np.linspace(-1, 1, layer.N)
    lr = requant_params(layer, float(xs[0]), y_scale, bias=bias, zp=3)
    y, err = gemm(xq, lr, out_stage="requant")
    assert not err.any()
    real = output_scales(layer) * xs[0] / y_scale
    expect = np.clip(np.round((acc + lr.bias) * real) + 3, -128, 127)
    # M0 carries 31 bits: the fixed-point result is the float one up to ties (off by <= 1).
    assert np.abs(y.astype(np.int64) - expect).max() <= 1
    assert (y.astype(np.int64) == expect).mean() > 0.9


def test_dequantize_raw_and_requant():
    layer, w, x = _layer_and_x()
    xq, xs = quantize_activations_int8(x)
    acc, _ = gemm_raw(xq, layer)
    yf = dequantize_output(acc, layer, x_scale=xs)
    ref = x @ w
    assert np.abs(yf - ref).max() < 0.05 * np.abs(ref).max()
    lr = requant_params(layer, 1.0, 2.0, zp=-5)
    y8 = np.array([[-5, 0, 127, -128, 1, 2, 3, 4]], np.int8)
    np.testing.assert_array_equal(dequantize_output(y8, lr, y_scale=2.0)[0],
                                  (y8[0].astype(np.int64) + 5) * 2.0)
    with pytest.raises(ValueError, match="output scale"):
        dequantize_output(y8, lr)


def test_pow2_unit_includes_frac_bits():
    layer, _, _ = _layer_and_x("pow2")
    assert np.allclose(output_scales(layer, 16) * 2 ** 16, output_scales(layer, 0))
