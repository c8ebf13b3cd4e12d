"""Bad input everywhere: every entry point refuses it with a message that names the problem.

Covers ``python -m golden gemm``, ``python -m verif run`` and ``python -m gen`` with broken
layer files, activation files, configurations and arguments (exit status 2, one line, no
traceback), the two runtime error flags (invalid ternary code, NaN scale: exit status 3 with a
message), and hypothesis fuzzing of the layer-file loader and of configuration validation
(a valid object or the module's own error, never another exception).

Each case here once found a bug (an ``.npz`` given as activations, outputs under a file, a
JSON configuration that is a list, zero-row activations, K not a multiple of 32): they stay as
regressions.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golden.compress import compress
from golden.layer import Layer, LayerError, load_layer, save_layer, validate_layer
from hw.config import ArrayConfig, ConfigError
from verif.toolchain import ROOT

#: ``UPE_FUZZ_EXAMPLES=5000 pytest tests/test_bad_input.py -k fuzz`` fuzzes longer.
FUZZ = settings(max_examples=int(os.environ.get("UPE_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A valid layer and activations, and broken variants of both, on disk."""
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(7)
    w = rng.normal(size=(64, 4))
    x = rng.integers(-128, 128, (3, 64)).astype(np.int8)
    np.save(d / "x.npy", x)
    ok = compress(w, fmt="int4", sparsity="2:4", group=32, scale_kind="int")
    save_layer(d / "ok.npz", ok)
    arrays = ok.to_arrays()

    def broken(name, **changes):
        a = dict(arrays)
        for key, value in changes.items():
            if value is None:
                a.pop(key, None)
            else:
                a[key] = value
        np.savez(d / name, **a)

    broken("missing_codes.npz", codes=None)
    broken("missing_format.npz", format=None)
    broken("bad_idx.npz", idx=np.full_like(arrays["idx"], 7))
    broken("idx_order.npz", idx=np.zeros_like(arrays["idx"]))
    broken("codes_range.npz", codes=np.full_like(arrays["codes"], 200))
    broken("codes_dtype.npz", codes=arrays["codes"].astype(np.int64))
    broken("codes_shape.npz", codes=arrays["codes"][:-1])
    broken("bad_sparsity.npz", sparsity=np.array("3:4"))
    broken("sparsity_num.npz", sparsity=np.array(24))
    broken("bad_format.npz", format=np.array("int3"))
    broken("bad_group.npz", group=np.array(5))
    broken("scales_float.npz", scales=arrays["scales"].astype(np.float32))
    broken("pickled.npz", codes=np.array([None, 1], dtype=object))
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    np.save(d / "x_f32.npy", x.astype(np.float32))
    np.save(d / "x_i16.npy", x.astype(np.int16))
    np.save(d / "x_1d.npy", x[0])
    np.save(d / "x_3d.npy", x[None])
    np.save(d / "x_k32.npy", x[:, :32])
    np.savez(d / "x_npz.npz", x=x)
    (d / "x_text.npy").write_text("not an array")
    pow2 = compress(w, fmt="fp4_e2m1", scale_kind="pow2")
    save_layer(d / "pow2.npz", pow2)
    save_layer(d / "int8_pow2.npz", compress(w, fmt="int8", scale_kind="pow2"))
    np.save(d / "xexp_shape.npy", np.full((3, 3), 127, np.uint8))
    np.save(d / "xexp_i8.npy", np.full((3, 2), 127, np.int8))
    np.save(d / "xexp_ok.npy", np.full((3, 2), 127, np.uint8))
    nan = compress(w, fmt="fp4_e2m1", scale_kind="pow2")
    nan.scales[0, 0] = 0xFF
    save_layer(d / "nan.npz", nan)
    tern = compress(w, fmt="ternary", scale_kind="int")
    tern.codes[0, 1] = 0b10
    save_layer(d / "tern.npz", tern)
    big = compress(rng.normal(size=(2048, 2)), fmt="int8", scale_kind="int")
    save_layer(d / "big.npz", big)
    np.save(d / "x_big.npy", rng.integers(-128, 128, (2, 2048)).astype(np.int8))
    (d / "cfg_syntax.json").write_text("{rows: 3")
    (d / "cfg_list.json").write_text("[1, 2]")
    (d / "cfg_rows_str.json").write_text(json.dumps({"rows": "4"}))
    (d / "cfg_unknown.json").write_text(json.dumps({"rowz": 4}))
    (d / "cfg_nan.json").write_text('{"frac_bits": NaN}')
    (d / "cfg_acc.json").write_text(json.dumps({"acc_bits": 8}))
    (d / "cfg_formats.json").write_text(json.dumps({"formats": ["int8", "int9"]}))
    (d / "cfg_bad.toml").write_text("rows = [")
    (d / "a_file").write_text("")
    return d


def _golden(argv, capsys):
    from golden.__main__ import main
    return _call(main, argv, capsys)


def _verif(argv, capsys):
    from verif.__main__ import main
    return _call(main, argv, capsys)


def _gen(argv, capsys):
    from gen.__main__ import main
    return _call(main, argv, capsys)


def _call(main, argv, capsys):
    """Run a CLI in-process: (status, stderr). Any exception but SystemExit is a traceback."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    _, err = capsys.readouterr()
    return status, err


def _refused(status, err, *words, code=2):
    assert status == code, f"exit status {status}, stderr: {err}"
    assert "Traceback" not in err
    text = err.lower()
    for w in words:
        assert w.lower() in text, f"{w!r} not named in: {err}"


# ----------------------------------------------------------------------------- golden gemm

LAYER_CASES = [
    ("missing_codes.npz", ["codes", "missing"]),
    ("missing_format.npz", ["format", "missing"]),
    ("bad_idx.npz", ["idx", "[0, 3]"]),
    ("idx_order.npz", ["idx", "increasing"]),
    ("codes_range.npz", ["codes", "[0, 15]"]),
    ("codes_dtype.npz", ["codes", "uint8", "int64"]),
    ("codes_shape.npz", ["codes", "shape"]),
    ("bad_sparsity.npz", ["sparsity", "3:4"]),
    ("sparsity_num.npz", ["sparsity", "string"]),
    ("bad_format.npz", ["format", "int3"]),
    ("bad_group.npz", ["group"]),
    ("scales_float.npz", ["scales", "int32", "float32"]),
    ("pickled.npz", ["pickled.npz"]),
    ("garbage.npz", ["garbage.npz", ".npz"]),
    ("x.npy", ["x.npy", "not an .npz"]),
    ("missing.npz", ["missing.npz"]),
]

X_CASES = [
    ("x_f32.npy", ["int8", "float32"]),
    ("x_i16.npy", ["int8", "int16"]),
    ("x_1d.npy", ["shape"]),
    ("x_3d.npy", ["shape"]),
    ("x_k32.npy", ["64"]),
    ("x_npz.npz", ["x_npz.npz"]),
    ("x_text.npy", ["x_text.npy"]),
    ("missing.npy", ["missing.npy"]),
]


@pytest.mark.parametrize("name, words", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_golden_gemm_refuses_bad_layer(files, capsys, name, words):
    status, err = _golden(["gemm", "--x", files / "x.npy", "--layer", files / name,
                           "-o", files / "y.npy"], capsys)
    _refused(status, err, *words)


@pytest.mark.parametrize("name, words", X_CASES, ids=[c[0] for c in X_CASES])
def test_golden_gemm_refuses_bad_activations(files, capsys, name, words):
    status, err = _golden(["gemm", "--x", files / name, "--layer", files / "ok.npz",
                           "-o", files / "y.npy"], capsys)
    _refused(status, err, *words)


@pytest.mark.parametrize("argv, words", [
    (["--x-exp", "xexp_shape.npy"], ["x_exp", "shape", "(3, 2)"]),
    (["--x-exp", "xexp_i8.npy"], ["x_exp", "uint8", "int8"]),
    (["--t-window", "5"], ["--t-window", "LO:HI"]),
    (["--t-window=8:-8"], ["--t-window", "LO > HI"]),
    (["--frac-bits", "-3"], ["frac_bits"]),
    (["--frac-bits", "x"], ["--frac-bits"]),
    (["--out-stage", "int4"], ["--out-stage", "int4"]),
    (["--out-stage", "requant"], ["requant", "out_mult"]),
    (["--x-format", "fp8_e4m3"], ["--x-format fp8_e4m3", "--x-exp"]),
    (["--x-format", "fp8_e5m2", "--x-exp", "xexp_ok.npy"], ["fp8_e5m2", "uint8", "int8"]),
    (["--x-format", "int8", "--x-exp", "xexp_ok.npy"], ["x_exp", "plain int8"]),
    (["--x-format", "fp16"], ["--x-format", "fp16"]),
])
def test_golden_gemm_refuses_bad_arguments(files, capsys, argv, words):
    argv = [str(files / a) if a.endswith(".npy") else a for a in argv]
    status, err = _golden(["gemm", "--x", files / "x.npy", "--layer", files / "pow2.npz",
                           "-o", files / "y.npy", *argv], capsys)
    _refused(status, err, *words)


def test_golden_gemm_x_exp_needs_pow2(files, capsys):
    status, err = _golden(["gemm", "--x", files / "x.npy", "--layer", files / "ok.npz",
                           "--x-exp", files / "xexp_ok.npy", "-o", files / "y.npy"], capsys)
    _refused(status, err, "x_exp", "pow2")


@pytest.mark.parametrize("layer, words", [("nan.npz", ["error flag"]),
                                          ("tern.npz", ["error flag"])])
def test_golden_gemm_runtime_error_flags_exit_3(files, capsys, layer, words):
    status, err = _golden(["gemm", "--x", files / "x.npy", "--layer", files / layer,
                           "-o", files / "y.npy"], capsys)
    _refused(status, err, *words, code=3)


def test_golden_gemm_unwritable_output(files, capsys):
    status, err = _golden(["gemm", "--x", files / "x.npy", "--layer", files / "ok.npz",
                           "-o", files / "a_file" / "y.npy"], capsys)
    _refused(status, err, "a_file")


# ----------------------------------------------------------------------------- verif run


@pytest.mark.parametrize("name, words", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_verif_run_refuses_bad_layer(files, capsys, name, words):
    status, err = _verif(["run", "--preset", "tiny", "--x", files / "x.npy", "--layer",
                          files / name, "-o", files / "y.npy"], capsys)
    _refused(status, err, *[w for w in words if w != "not an .npz"])


@pytest.mark.parametrize("name, words", X_CASES, ids=[c[0] for c in X_CASES])
def test_verif_run_refuses_bad_activations(files, capsys, name, words):
    words = ["int8"] if words == ["shape"] else words
    status, err = _verif(["run", "--preset", "tiny", "--x", files / name, "--layer",
                          files / "ok.npz", "-o", files / "y.npy"], capsys)
    _refused(status, err, *words)


def _case_id(case) -> str:
    argv = case.values[0] if hasattr(case, "values") else case[0]
    return " ".join(a.lstrip("-") for a in argv) or "no layer"


VERIF_ARG_CASES = [
    (["--layer", "pow2.npz", "--x-exp", "xexp_shape.npy"], ["x_exp", "shape"]),
    (["--layer", "pow2.npz", "--x-exp", "xexp_i8.npy"], ["exponents", "uint8", "int8"]),
    (["--layer", "pow2.npz", "--x-exp", "x_npz.npz"], ["x_npz.npz"]),
    (["--layer", "ok.npz", "--x-exp", "xexp_ok.npy"], ["MXINT8", "pow2"]),
    (["--layer", "ok.npz", "--out-stage", "requant"], ["requant", "out_mult"]),
    (["--layer", "ok.npz", "--preset", "dense_int8"], ["int4", "not enabled"]),
    (["--layer", "ok.npz", "--preset", "mxfp4"], ["int4", "not enabled"]),
    (["--layer", "int8_pow2.npz", "--preset", "dense_int8"], ["pow2", "not enabled"]),
    (["--layer", "big.npz", "--x", "x_big.npy"], ["K=2048", "k_max=1024"]),
    (["--layer", "ok.npz", "--preset", "nosuch"], ["preset", "nosuch"]),
    (["--layer", "ok.npz", "--rows", "0"], ["rows", "at least 1"]),
    (["--layer", "ok.npz", "--rows", "abc"], ["--rows", "abc"]),
    (["--layer", "ok.npz", "--sparsity", "3:4"], ["sparsity", "3:4"]),
    (["--layer", "ok.npz", "--formats", "int9"], ["formats", "int9"]),
    (["--layer", "ok.npz", "--t-window", "5:1"], ["t_min", "t_max"]),
    (["--layer", "ok.npz", "--t-window", "abc"], ["--t-window", "LO:HI"]),
    (["--layer", "ok.npz", "--config", "cfg_list.json"], ["cfg_list.json"]),
    (["--layer", "ok.npz", "--config", "missing.json"], ["missing.json"]),
    (["--layer", "ok.npz", "--out-stage", "int4"], ["--out-stage"]),
    ([], ["--layer"]),
]


@pytest.mark.parametrize("argv, words", VERIF_ARG_CASES,
                         ids=[_case_id(c) for c in VERIF_ARG_CASES])
def test_verif_run_refuses_bad_arguments(files, capsys, argv, words):
    full = ["run", "--preset", "tiny", "--x", "x.npy", "-o", "y.npy", *argv]
    # later options win: the case's own --preset / --x replace the defaults
    full = [str(files / a) if a.endswith((".npy", ".npz", ".json")) else a for a in full]
    status, err = _verif(full, capsys)
    _refused(status, err, *words)


def test_verif_run_unwritable_output(files, capsys):
    status, err = _verif(["run", "--preset", "tiny", "--x", files / "x.npy", "--layer",
                          files / "ok.npz", "-o", files / "a_file" / "y.npy"], capsys)
    _refused(status, err, "a_file")


@pytest.mark.verilator
def test_verif_run_k_not_multiple_of_32(files, capsys):
    rng = np.random.default_rng(5)
    save_layer(files / "k80.npz", compress(rng.normal(size=(80, 2)), fmt="int8",
                                           scale_kind="int"))
    np.save(files / "x80.npy", rng.integers(-128, 128, (2, 80)).astype(np.int8))
    status, err = _verif(["run", "--preset", "tiny", "--x", files / "x80.npy", "--layer",
                          files / "k80.npz", "-o", files / "y.npy"], capsys)
    assert status == 0, err


@pytest.mark.verilator
def test_verif_run_zero_rows(files):
    np.save(files / "x_empty.npy", np.zeros((0, 64), np.int8))
    proc = subprocess.run([sys.executable, "-m", "verif", "run", "--preset", "tiny", "--x",
                           str(files / "x_empty.npy"), "--layer", str(files / "ok.npz"), "-o",
                           str(files / "y.npy")], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=600)
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.sim
@pytest.mark.parametrize("layer", ["nan.npz", "tern.npz"])
def test_verif_run_runtime_error_flags_exit_3(files, capsys, layer):
    status, err = _verif(["run", "--preset", "tiny", "--x", files / "x.npy", "--layer",
                          files / layer, "-o", files / "y.npy", "--err-out",
                          files / "e.npy"], capsys)
    _refused(status, err, "error flag", code=3)
    assert np.load(files / "e.npy").any()


# ----------------------------------------------------------------------------- gen


@pytest.mark.parametrize("name, words", [
    ("cfg_syntax.json", ["cfg_syntax.json", "not valid"]),
    ("cfg_list.json", ["cfg_list.json"]),
    ("cfg_rows_str.json", ["rows", "integer"]),
    ("cfg_unknown.json", ["rowz"]),
    ("cfg_nan.json", ["frac_bits"]),
    ("cfg_acc.json", ["acc_bits=8", "overflow"]),
    ("cfg_formats.json", ["formats", "int9"]),
    ("cfg_bad.toml", ["cfg_bad.toml", "not valid"]),
    ("missing.json", ["missing.json"]),
])
@pytest.mark.parametrize("cmd", ["config", "verilog"])
def test_gen_refuses_bad_configuration_file(files, capsys, cmd, name, words):
    out = ["-o", files / "v"] if cmd == "verilog" else []
    status, err = _gen([cmd, "--config", files / name, *out], capsys)
    _refused(status, err, *words)


@pytest.mark.parametrize("argv, words", [
    (["--rows", "-1"], ["rows", "at least 1"]),
    (["--slots", "3"], ["slots", "power of two"]),
    (["--window", "64"], ["window", "at most 32"]),
    (["--formats", "int9"], ["formats", "int9"]),
    (["--formats", ","], ["formats", "at least one"]),
    (["--sparsity", "5:4"], ["sparsity", "5:4"]),
    (["--sparsity", "4:8", "--window", "4"], ["4:8", "window"]),
    (["--scale-kinds", "foo"], ["scale_kinds", "foo"]),
    (["--t-window", "1:2:3"], ["--t-window"]),
    (["--k-max", "0"], ["k_max"]),
    (["--k-max", "100"], ["k_max", "32"]),
    (["--acc-bits", "3"], ["acc_bits=3"]),
    (["--acc-bits", "80"], ["acc_bits", "64"]),
    (["--name", "a-b"], ["name", "a-b"]),
    (["--frac-bits", "100"], ["frac_bits", "48"]),
    (["--mx-activations", "maybe"], ["--mx-activations", "maybe"]),
    (["--scale-kinds", "int", "--mx-activations", "on"], ["mx_activations", "pow2"]),
    (["--formats", "uint4", "--scale-kinds", "pow2", "--mx-activations", "off"],
     ["uint4", "pow2"]),
    (["--preset", "huge"], ["preset", "huge"]),
])
def test_gen_verilog_refuses_bad_arguments(files, capsys, argv, words):
    status, err = _gen(["verilog", *argv, "-o", files / "v"], capsys)
    _refused(status, err, *words)


def test_gen_verilog_needs_output(capsys):
    status, err = _gen(["verilog"], capsys)
    _refused(status, err, "-o")


def test_gen_verilog_output_is_a_file(files, capsys):
    status, err = _gen(["verilog", "--preset", "tiny", "-o", files / "a_file"], capsys)
    _refused(status, err, "a_file")


def test_real_command_lines_print_no_traceback(files):
    """The three entry points as a user runs them (separate processes, exit statuses)."""
    py = sys.executable
    runs = [
        ([py, "-m", "golden", "gemm", "--x", files / "x_f32.npy", "--layer", files / "ok.npz",
          "-o", files / "y.npy"], 2, "int8"),
        ([py, "-m", "golden", "gemm", "--x", files / "x.npy", "--layer", files / "tern.npz",
          "-o", files / "y.npy"], 3, "error flag"),
        ([py, "-m", "verif", "run", "--preset", "tiny", "--x", files / "x.npy", "--layer",
          files / "bad_idx.npz", "-o", files / "y.npy"], 2, "idx"),
        ([py, "-m", "gen", "verilog", "--config", files / "cfg_acc.json", "-o", files / "v"],
         2, "acc_bits"),
    ]
    for argv, code, word in runs:
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              cwd=ROOT, check=False, timeout=120)
        assert proc.returncode == code, proc.stderr
        assert "Traceback" not in proc.stderr and word in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- fuzzing

_BASE_LAYERS = None


def _base_layers() -> list[Layer]:
    global _BASE_LAYERS
    if _BASE_LAYERS is None:
        rng = np.random.default_rng(11)
        w = rng.normal(size=(64, 3))
        layers = [
            compress(w, fmt="int4", sparsity="2:4", group=32, scale_kind="int"),
            compress(w, fmt="uint4", group=32, scale_kind="int"),
            compress(w, fmt="fp4_e2m1", scale_kind="pow2"),
            compress(w, fmt="ternary", sparsity="2:8", scale_kind="none"),
            compress(w, fmt="int8", sparsity="1:4", group=64, scale_kind="int"),
        ]
        layers[0] = layers[0].copy(bias=np.arange(3, dtype=np.int32),
                                   out_mult=np.full(3, 1 << 30, np.int32),
                                   out_shift=np.zeros(3, np.int32), out_zp=np.array(0, np.int32))
        _BASE_LAYERS = layers
    return _BASE_LAYERS


_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint64, np.float32, np.float64,
           np.bool_, np.str_]
_KEYS = ["version", "format", "sparsity", "group", "scale_kind", "shape", "codes", "idx",
         "scales", "scale_exp", "zeros", "bias", "out_mult", "out_shift", "out_zp", "scale_bits",
         "extra"]


@st.composite
def _random_array(draw):
    dtype = draw(st.sampled_from(_DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    size = int(np.prod(shape)) if shape else 1
    if dtype is np.str_:
        words = st.sampled_from(["int8", "int4", "uint4", "ternary", "fp4_e2m1", "dense",
                                 "2:4", "4:8", "1:3", "none", "int", "pow2", "", "x"])
        return np.array(draw(st.lists(words, min_size=size, max_size=size)),
                        dtype=np.str_).reshape(shape)
    if dtype in (np.float32, np.float64):
        elems = st.floats(allow_nan=True, allow_infinity=True, width=32)
    elif dtype is np.bool_:
        elems = st.booleans()
    else:
        info = np.iinfo(dtype)
        elems = st.one_of(st.integers(-3, 300), st.integers(int(info.min), int(info.max)))
        elems = elems.filter(lambda v, i=info: i.min <= v <= i.max)
    values = draw(st.lists(elems, min_size=size, max_size=size))
    return np.array(values, dtype=dtype).reshape(shape)


@st.composite
def _layer_dicts(draw):
    """A valid layer's arrays with 0-4 mutations: drop, replace, retype, reshape, edit."""
    arrays = dict(draw(st.sampled_from(_base_layers())).to_arrays())
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(_KEYS))
        action = draw(st.sampled_from(["drop", "random", "retype", "reshape", "edit"]))
        if action == "drop":
            arrays.pop(key, None)
        elif action == "random" or key not in arrays:
            arrays[key] = draw(_random_array())
        elif action == "retype":
            dtype = draw(st.sampled_from(_DTYPES[:-1]))
            try:
                with np.errstate(invalid="ignore", over="ignore"):
                    arrays[key] = arrays[key].astype(dtype)
            except (ValueError, TypeError):
                arrays[key] = draw(_random_array())
        elif action == "reshape":
            a = arrays[key]
            arrays[key] = a.reshape(-1) if a.ndim != 1 else a[: max(a.size - 1, 0)]
        else:
            a = np.array(arrays[key], copy=True)
            if a.size and a.dtype.kind in "iu":
                flat = a.reshape(-1)
                info = np.iinfo(a.dtype)
                flat[draw(st.integers(0, a.size - 1))] = draw(
                    st.integers(int(info.min), int(info.max)))
            arrays[key] = a
    return arrays


@FUZZ
@given(_layer_dicts())
def test_fuzz_layer_file_loader(arrays):
    """A file of random arrays loads as a valid Layer or raises LayerError, nothing else."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    try:
        layer = load_layer(buf)
    except LayerError as exc:
        assert exc.key and exc.problem
        return
    validate_layer(layer)
    assert isinstance(layer, Layer)


_CONFIG_VALUES = st.one_of(
    st.integers(-5, 70), st.integers(-(2**70), 2**70), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.lists(st.sampled_from(["int8", "int4", "uint4", "int2", "ternary", "fp4_e2m1",
                              "mxint8", "dense", "1:4", "2:4", "2:8", "4:8", "none", "int",
                              "pow2", "bogus", ""]), max_size=5),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                        max_size=2),
)
_CONFIG_KEYS = st.sampled_from(["rows", "cols", "slots", "window", "formats", "sparsity",
                                "scale_kinds", "mx_activations", "requant", "scale_bits",
                                "k_max", "frac_bits", "t_min", "t_max", "acc_bits", "name",
                                "bogus"])


@FUZZ
@given(st.dictionaries(_CONFIG_KEYS, _CONFIG_VALUES, max_size=6))
def test_fuzz_config_validation(data):
    """Random configuration mappings give an ArrayConfig or a ConfigError, nothing else."""
    try:
        cfg = ArrayConfig.from_dict(data)
    except ConfigError as exc:
        assert str(exc)
        return
    assert cfg.acc_bits <= 64 and cfg.rows >= 1
    assert ArrayConfig.from_dict(json.loads(cfg.to_json())) == cfg


@FUZZ
@given(st.dictionaries(_CONFIG_KEYS, _CONFIG_VALUES, max_size=4))
def test_fuzz_config_file(tmp_path_factory, data):
    """The same through a JSON file (what users write)."""
    path = tmp_path_factory.mktemp("cfg") / "c.json"
    try:
        text = json.dumps(data, allow_nan=True)
    except ValueError:
        return
    path.write_text(text)
    try:
        ArrayConfig.from_file(path)
    except ConfigError as exc:
        assert str(exc)


def test_config_non_string_key_is_named():
    with pytest.raises(ConfigError, match="1"):
        ArrayConfig.from_dict({1: 2})


def test_config_float_values_are_refused():
    for value in (2.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="rows"):
            ArrayConfig.from_dict({"rows": value})


# ----------------------------------------------------------------------------- --experts

EXPERT_CASES = [
    (["--experts", "ok.npz,pow2.npz", "--routing", "r_range.npy"],
     ["routing index 2", "out of range", "2 experts"]),
    (["--experts", "ok.npz,pow2.npz", "--routing", "r_short.npy"], ["routing", "shape", "[3]"]),
    (["--experts", "ok.npz,pow2.npz", "--routing", "r_float.npy"], ["routing", "integer"]),
    (["--experts", "ok.npz,pow2.npz", "--routing", "r_twice.npy"], ["token 0", "twice"]),
    (["--experts", "ok.npz,n2.npz", "--routing", "r_ok.npy"], ["same N", "N=2"]),
    (["--experts", "ok.npz,big.npz", "--routing", "r_ok.npy"], ["expert 1", "K=2048"]),
    (["--experts", "ok.npz,missing.npz", "--routing", "r_ok.npy"], ["expert 1", "missing.npz"]),
    (["--experts", "ok.npz,pow2.npz", "--routing", "x_npz.npz"], ["x_npz.npz"]),
    (["--experts", "ok.npz,pow2.npz"], ["--routing"]),
    (["--experts", "ok.npz,pow2.npz", "--routing", "r_ok.npy", "--out-stages", "raw"],
     ["1 output stages", "2 experts"]),
    (["--experts", "ok.npz,pow2.npz", "--routing", "r_ok.npy", "--out-stage", "requant"],
     ["expert 0", "requant", "out_mult"]),
    (["--layer", "ok.npz", "--routing", "r_ok.npy"], ["--routing", "--experts"]),
    (["--layer", "ok.npz", "--experts", "ok.npz", "--routing", "r_ok.npy"],
     ["--layer", "--experts"]),
]


@pytest.fixture(scope="module")
def expert_files(files):
    np.save(files / "r_ok.npy", np.array([0, 1, 0]))
    np.save(files / "r_range.npy", np.array([0, 2, 0]))
    np.save(files / "r_short.npy", np.array([0, 1]))
    np.save(files / "r_float.npy", np.array([0.0, 1.0, 0.0]))
    np.save(files / "r_twice.npy", np.array([[0, 0], [0, 1], [1, 0]]))
    save_layer(files / "n2.npz", compress(np.random.default_rng(1).normal(size=(64, 2)),
                                          fmt="int8", scale_kind="int"))
    return files


def _with_files(files, argv):
    return [",".join(str(files / p) for p in a.split(",")) if a.endswith((".npy", ".npz"))
            else a for a in argv]


@pytest.mark.parametrize("argv, words", EXPERT_CASES, ids=[_case_id(c) for c in EXPERT_CASES])
def test_golden_gemm_experts_refuses_bad_input(expert_files, capsys, argv, words):
    status, err = _golden(["gemm", "--x", expert_files / "x.npy", "-o", expert_files / "y.npy",
                           *_with_files(expert_files, argv)], capsys)
    _refused(status, err, *words)


@pytest.mark.parametrize("argv, words", [
    *EXPERT_CASES, (["--experts", "ok.npz", "--routing", "r_ok.npy", "--cocotb"], ["native"]),
], ids=[_case_id(c) for c in [*EXPERT_CASES, (["--experts", "cocotb"],)]])
def test_verif_run_experts_refuses_bad_input(expert_files, capsys, argv, words):
    status, err = _verif(["run", "--preset", "tiny", "--x", expert_files / "x.npy", "-o",
                          expert_files / "y.npy", *_with_files(expert_files, argv)], capsys)
    _refused(status, err, *words)
