"""Command line: compress → info → gemm, exit statuses, one-line errors without tracebacks."""

import subprocess
import sys

import numpy as np
import pytest

from golden.__main__ import main
from golden.compress import compress
from golden.gemm import gemm_raw
from golden.layer import load_layer, save_layer


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(64, 8)).astype(np.float32)
    x = rng.integers(-127, 128, size=(5, 64)).astype(np.int8)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "x.npy", x)
    return tmp_path


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_compress_info_gemm_round_trip(files, capsys):
    layer_path = files / "l.npz"
    status, out, _ = run(["compress", files / "w.npy", "--format", "int4", "--sparsity", "2:4",
                          "--group", "16", "--scale", "int", "-o", layer_path], capsys)
    assert status == 0 and "bits/weight" in out and "SQNR" in out and out.count("\n") == 1
    status, out, _ = run(["info", layer_path], capsys)
    assert status == 0
    assert "int4" in out and "2:4" in out and "floor 0.646" in out and "valid" in out
    status, _, _ = run(["gemm", "--x", files / "x.npy", "--layer", layer_path,
                        "-o", files / "y.npy", "--err-out", files / "e.npy"], capsys)
    assert status == 0
    y = np.load(files / "y.npy")
    expected, _ = gemm_raw(np.load(files / "x.npy"), load_layer(layer_path))
    assert y.dtype == np.int64 and np.array_equal(y, expected)
    assert not np.load(files / "e.npy").any()


def test_gemm_requant_and_pow2_options(files, capsys):
    layer = compress(np.load(files / "w.npy"), fmt="fp4_e2m1", scale_kind="pow2")
    layer.out_mult = np.full(8, 2**30, np.int32)
    layer.out_shift = np.full(8, -20, np.int32)
    save_layer(files / "p.npz", layer)
    status, _, err = run(["gemm", "--x", files / "x.npy", "--layer", files / "p.npz",
                          "--out-stage", "requant", "--t-window=-40:8", "--frac-bits", "12",
                          "-o", files / "y.npy"], capsys)
    assert status == 0, err
    assert np.load(files / "y.npy").dtype == np.int8


def test_gemm_error_flag_exit_3(files, capsys):
    layer = compress(np.load(files / "w.npy"), fmt="int8", scale_kind="pow2")
    layer.scales[0, 0] = 255
    save_layer(files / "nan.npz", layer)
    status, _, err = run(["gemm", "--x", files / "x.npy", "--layer", files / "nan.npz",
                          "-o", files / "y.npy", "--err-out", files / "e.npy"], capsys)
    assert status == 3 and "error flag set on 5 of 40 outputs" in err
    assert np.load(files / "e.npy")[:, 0].all()


def test_info_reports_invalid_ternary_codes(files, capsys):
    layer = compress(np.load(files / "w.npy"), fmt="ternary", scale_kind="int")
    layer.codes[:3, 1] = 0b10
    save_layer(files / "t.npz", layer)
    status, out, _ = run(["info", files / "t.npz"], capsys)
    assert status == 0 and "3 invalid ternary codes" in out and "flag 1 columns" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compress", "{d}/missing.npy", "--format", "int4", "--scale", "int", "-o", "{d}/o.npz"],
         "does not exist"),
        (["compress", "{d}/w.npy", "--format", "int4", "--scale", "int", "--group", "48",
          "-o", "{d}/o.npz"], "not divisible by group"),
        (["compress", "{d}/w.npy", "--format", "uint4", "--scale", "pow2", "-o", "{d}/o.npz"],
         "not allowed for uint4"),
        (["compress", "{d}/w.npy", "--format", "int4", "--scale", "int", "--zero-points",
          "-o", "{d}/o.npz"], "uint4, uint2 only"),
        (["compress", "{d}/w.npy", "--format", "int4", "--sparsity", "3:4", "--scale", "int",
          "-o", "{d}/o.npz"], "invalid choice"),
        (["gemm", "--x", "{d}/w.npy", "--layer", "{d}/l.npz", "-o", "{d}/y.npy"], "int8"),
        (["gemm", "--x", "{d}/x.npy", "--layer", "{d}/w.npy", "-o", "{d}/y.npy"],
         "layer key 'file'"),
        (["gemm", "--x", "{d}/x.npy", "--layer", "{d}/l.npz", "--t-window", "8", "-o",
          "{d}/y.npy"], "LO:HI"),
        (["gemm", "--x", "{d}/x.npy", "--layer", "{d}/l.npz", "--x-exp", "{d}/x.npy",
          "-o", "{d}/y.npy"], "pow2"),
        (["info", "{d}/nothing.npz"], "layer key 'file'"),
    ],
)
def test_user_errors_exit_2_with_one_line(files, capsys, argv, message):
    save_layer(files / "l.npz", compress(np.load(files / "w.npy"), fmt="int8", scale_kind="int"))
    argv = [a.format(d=files) for a in argv]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse errors
        status = exc.code
    _, err = capsys.readouterr()
    assert status == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_shape_mismatch_between_x_and_layer(files, capsys):
    save_layer(files / "l.npz", compress(np.load(files / "w.npy"), fmt="int8", scale_kind="int"))
    np.save(files / "x_bad.npy", np.zeros((2, 63), np.int8))
    status, _, err = run(["gemm", "--x", files / "x_bad.npy", "--layer", files / "l.npz",
                          "-o", files / "y.npy"], capsys)
    assert status == 2 and "[M, 64]" in err


def _subprocess(argv, cwd):
    return subprocess.run([sys.executable, "-m", "golden", *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("breakage", ["idx", "codes"])
def test_subprocess_refuses_broken_layer_without_traceback(files, breakage):
    layer = compress(np.load(files / "w.npy"), fmt="int4", sparsity="2:4", scale_kind="int")
    arrays = layer.to_arrays()
    if breakage == "idx":
        arrays["idx"] = arrays["idx"][::-1].copy()
    else:
        arrays["codes"] = np.full_like(arrays["codes"], 200)
    np.savez(files / "broken.npz", **arrays)
    result = _subprocess(["info", files / "broken.npz"], files)
    assert result.returncode == 2
    assert f"layer key '{breakage}'" in result.stderr and "Traceback" not in result.stderr
    result = _subprocess(["gemm", "--x", files / "x.npy", "--layer", files / "broken.npz",
                          "-o", files / "y.npy"], files)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_subprocess_help_for_every_subcommand(files):
    for sub in ("compress", "gemm", "info"):
        result = _subprocess([sub, "--help"], files)
        assert result.returncode == 0 and "usage" in result.stdout


def test_mx_activations_quantize_then_gemm(files, capsys, tmp_path):
    """Quantize with --kind fp8_e4m3 etc., then gemm with --x-format and --x-exp."""
    rng = np.random.default_rng(4)
    np.save(tmp_path / "xf.npy", rng.normal(size=(5, 64)))
    layer = compress(np.load(files / "w.npy"), fmt="fp8_e5m2", scale_kind="pow2")
    save_layer(tmp_path / "l.npz", layer)
    for kind in ("mxint8", "fp8_e4m3", "fp8_e5m2"):
        status, out, _ = run(["quantize", tmp_path / "xf.npy", "--kind", kind, "-o",
                              tmp_path / f"xq_{kind}.npy"], capsys)
        assert status == 0 and f"--x-format {kind}" in out
        x_q = np.load(tmp_path / f"xq_{kind}.npy")
        x_exp = np.load(tmp_path / f"xq_{kind}.exp.npy")
        assert x_q.dtype == (np.int8 if kind == "mxint8" else np.uint8)
        status, _, _ = run(["gemm", "--x", tmp_path / f"xq_{kind}.npy", "--layer",
                            tmp_path / "l.npz", "--x-format", kind, "--x-exp",
                            tmp_path / f"xq_{kind}.exp.npy", "--t-window=-80:8", "-o",
                            tmp_path / "y.npy"], capsys)
        assert status == 0
        want, _ = gemm_raw(x_q, layer, x_exp=x_exp, x_format=kind, t_min=-80)
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    status, _, err = run(["quantize", tmp_path / "xf.npy", "--kind", "int8", "--rceil", "-o",
                          tmp_path / "q.npy"], capsys)
    assert status == 2 and "--rceil applies to the MX kinds only" in err


def test_compress_nvfp4_and_info(files, capsys):
    status, out, _ = run(["compress", files / "w.npy", "--nvfp4", "-o", files / "n.npz"], capsys)
    assert status == 0 and "fp4_e2m1 dense G=16 scale=int" in out and "tensor scale" in out
    t = float(np.load(files / "n.tscale.npy"))
    assert np.load(files / "n.tscale.npy").dtype == np.float32 and t > 0
    layer = load_layer(files / "n.npz")
    assert layer.scale_bits == 19 and (layer.scale_exp == -10).all()
    status, out, _ = run(["info", files / "n.npz"], capsys)
    assert status == 0 and "19-bit scales" in out and "bits (int8 activations)" in out
    for argv, message in [
        (["--nvfp4", "--format", "int4"], "--nvfp4 means --format fp4_e2m1, not int4"),
        (["--nvfp4", "--scale-bits", "16"], "--scale-bits >= 19"),
        (["--nvfp4", "--group", "32"], "--nvfp4 means --group 16, not 32"),
        (["--nvfp4", "--rceil"], "--rceil and --zero-points do not apply"),
        (["--scale", "int"], "required: --format (or give --nvfp4)"),
    ]:
        status, _, err = run(["compress", files / "w.npy", *argv, "-o", files / "o.npz"], capsys)
        assert status == 2 and message in err and err.count("\n") == 1, argv


def test_info_reports_fp8_group_sum_widths(files, capsys):
    layer = compress(np.load(files / "w.npy"), fmt="fp8_e4m3", scale_kind="pow2")
    save_layer(files / "f.npz", layer)
    status, out, _ = run(["info", files / "f.npz"], capsys)
    # G = 32: 32 · 229376 · 128 < 2**30 → 31 bits; × E4M3: 32 · 229376**2 → 42 bits
    assert status == 0 and "31 bits (int8 activations)" in out
    assert "42 bits (fp8_e4m3 activations)" in out and "-9 (fp8_e4m3)" in out
