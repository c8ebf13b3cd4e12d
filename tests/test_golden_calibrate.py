"""Activation-aware helpers: Wanda saliency, SmoothQuant factors, and their CLI options."""

import numpy as np
import pytest

from golden.__main__ import main
from golden.calibrate import (
    activation_channel_absmax,
    activation_channel_norms,
    smooth,
    smooth_factors,
    wanda_saliency,
)
from golden.compress import compress
from golden.gemm import dequantize_weights, gemm_raw
from golden.layer import load_layer
from golden.metrics import sqnr_db
from golden.quant import quantize_activations_int8

RNG = np.random.default_rng(11)


def outlier_activations(M=64, K=64, channel=5, gain=60.0):
    x = RNG.normal(size=(M, K))
    x[:, channel] *= gain
    return x


def test_wanda_score_is_weight_magnitude_times_channel_norm():
    x = np.array([[3.0, 0.0, 1.0], [4.0, 0.0, -1.0]])
    w = np.array([[1.0, -2.0], [5.0, 1.0], [-0.5, 0.25]])
    np.testing.assert_allclose(activation_channel_norms(x), [5.0, 0.0, np.sqrt(2.0)])
    np.testing.assert_allclose(wanda_saliency(w, x),
                               [[5.0, 10.0], [0.0, 0.0], [0.5 * np.sqrt(2), 0.25 * np.sqrt(2)]])
    # leading axes are flattened: [batch, tokens, K]
    np.testing.assert_allclose(wanda_saliency(w, x[None]), wanda_saliency(w, x))


def test_wanda_changes_which_weights_survive():
    # block of 4 inputs, 2:4: magnitude keeps inputs 0 and 1, but input 1 never fires
    w = np.array([[1.0], [0.9], [0.5], [0.4]])
    x = np.array([[1.0, 0.0, 1.0, 0.1], [1.0, 0.0, -1.0, 0.1]])
    magnitude = compress(w, fmt="int8", sparsity="2:4", scale_kind="int")
    wanda = compress(w, fmt="int8", sparsity="2:4", scale_kind="int",
                     saliency=wanda_saliency(w, x))
    assert magnitude.idx[:, 0].tolist() == [0, 1]
    assert wanda.idx[:, 0].tolist() == [0, 2]
    y_ref = x @ w
    y_mag = x @ dequantize_weights(magnitude)
    y_wanda = x @ dequantize_weights(wanda)
    assert np.abs(y_wanda - y_ref).max() < np.abs(y_mag - y_ref).max()


def test_wanda_is_invariant_under_smoothing():
    x = outlier_activations()
    w = RNG.normal(size=(64, 8))
    xs, ws, _ = smooth(x, w)
    np.testing.assert_allclose(wanda_saliency(ws, xs), wanda_saliency(w, x), rtol=1e-12)


def test_smooth_factors_formula_and_edges():
    x = np.array([[4.0, 0.0, 1.0], [-9.0, 0.0, 2.0]])
    w = np.array([[1.0, -4.0], [2.0, 0.0], [0.0, 0.0]])
    s = smooth_factors(x, w, alpha=0.5)
    # channel 0: sqrt(9) / sqrt(4); channel 1: no activation; channel 2: no weight → 1
    np.testing.assert_allclose(s, [1.5, 1.0, 1.0])
    np.testing.assert_allclose(activation_channel_absmax(x), [9.0, 0.0, 2.0])
    np.testing.assert_allclose(smooth_factors(x, w, alpha=1.0), [9.0, 1.0, 1.0])
    np.testing.assert_allclose(smooth_factors(x, w, alpha=0.0), [0.25, 1.0, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        smooth_factors(x, w, alpha=1.5)
    with pytest.raises(ValueError, match="K=2 channels"):
        smooth_factors(x[:, :2], w)
    with pytest.raises(ValueError, match="NaN"):
        smooth_factors(np.full((2, 3), np.nan), w)


def test_smooth_preserves_the_product_and_reuses_factors():
    x = outlier_activations()
    w = RNG.normal(size=(64, 16))
    xs, ws, s = smooth(x, w)
    np.testing.assert_allclose(xs @ ws, x @ w, rtol=1e-10, atol=1e-10)
    x_new = outlier_activations(M=8)
    xs2, ws2, s2 = smooth(x_new, w, s)  # calibration factors applied to new tokens
    np.testing.assert_array_equal(s2, s)
    np.testing.assert_array_equal(ws2, ws)
    np.testing.assert_allclose(xs2 @ ws2, x_new @ w, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="finite and positive"):
        smooth(x, w, np.zeros(64))
    with pytest.raises(ValueError, match="shape"):
        smooth(x, w, np.ones(3))


def _w8a8_sqnr(x, w):
    layer = compress(w, fmt="int8", scale_kind="int")
    xq, xs = quantize_activations_int8(x)
    acc, _ = gemm_raw(xq, layer)
    y = acc * np.ldexp(1.0, layer.scale_exp)[None, :] * xs[:, None]
    return sqnr_db(x @ w, y)


def test_smoothing_helps_w8a8_with_an_outlier_channel():
    x = outlier_activations()
    w = RNG.normal(size=(64, 16))
    xs, ws, _ = smooth(x, w)
    assert _w8a8_sqnr(xs, ws) > _w8a8_sqnr(x, w) + 6.0


@pytest.fixture
def cli_files(tmp_path):
    w = RNG.normal(size=(64, 8)).astype(np.float32)
    x = outlier_activations().astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "x.npy", x)
    return tmp_path, w.astype(np.float64), x.astype(np.float64)


def test_cli_saliency_from_x_and_smooth(cli_files, capsys):
    tmp, w, x = cli_files
    status = main(["compress", str(tmp / "w.npy"), "--format", "int8", "--sparsity", "2:4",
                   "--scale", "int", "--saliency-from-x", str(tmp / "x.npy"),
                   "-o", str(tmp / "wanda.npz")])
    assert status == 0
    expected = compress(w, fmt="int8", sparsity="2:4", scale_kind="int",
                        saliency=wanda_saliency(w, x))
    np.testing.assert_array_equal(load_layer(tmp / "wanda.npz").idx, expected.idx)
    capsys.readouterr()
    status = main(["compress", str(tmp / "w.npy"), "--format", "int8", "--scale", "int",
                   "--smooth", str(tmp / "x.npy"), "-o", str(tmp / "s.npz")])
    out, _ = capsys.readouterr()
    assert status == 0 and "s.smooth.npy" in out and "smoothed" in out
    s = np.load(tmp / "s.smooth.npy")
    np.testing.assert_allclose(s, smooth_factors(x, w))
    np.testing.assert_allclose(dequantize_weights(load_layer(tmp / "s.npz")),
                               dequantize_weights(compress(w * s[:, None], fmt="int8",
                                                           scale_kind="int")))
    status = main(["compress", str(tmp / "w.npy"), "--format", "int8", "--scale", "int",
                   "--smooth", str(tmp / "x.npy"), "--alpha", "0.8",
                   "--smooth-out", str(tmp / "f.npy"), "-o", str(tmp / "t.npz")])
    assert status == 0
    np.testing.assert_allclose(np.load(tmp / "f.npy"), smooth_factors(x, w, 0.8))


def test_cli_calibration_errors(cli_files, capsys):
    tmp, _, _ = cli_files
    np.save(tmp / "bad.npy", np.zeros((4, 3)))
    status = main(["compress", str(tmp / "w.npy"), "--format", "int8", "--scale", "int",
                   "--saliency-from-x", str(tmp / "bad.npy"), "-o", str(tmp / "l.npz")])
    _, err = capsys.readouterr()
    assert status == 2 and "K=3 channels" in err and "Traceback" not in err
    status = main(["compress", str(tmp / "w.npy"), "--format", "int8", "--scale", "int",
                   "--saliency-from-x", str(tmp / "x.npy"), "--saliency", str(tmp / "x.npy"),
                   "-o", str(tmp / "l.npz")])
    _, err = capsys.readouterr()
    assert status == 2 and "not both" in err
