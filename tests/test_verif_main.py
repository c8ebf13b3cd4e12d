"""``python -m verif run``: --check compares with the golden model (exit 1 on a mismatch),
--waves without the lz4 headers is a one-line error, not a traceback.
"""

import numpy as np
import pytest

import verif.__main__ as vmain
from golden.compress import compress
from golden.gemm import gemm
from golden.layer import save_layer
from verif.runner import RunResult


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(2)
    layer = compress(rng.standard_normal((32, 2)), fmt="int8", scale_kind="int")
    save_layer(tmp_path / "L.npz", layer)
    x = rng.integers(-127, 128, (2, 32)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    return tmp_path, layer, x


def _argv(tmp, *extra):
    return ["run", "--preset", "tiny", "--x", str(tmp / "x.npy"), "--layer",
            str(tmp / "L.npz"), "-o", str(tmp / "y.npy"), *extra]


def _fake_run(y, err):
    def run_layer(cfg, layer, x, **kw):
        rep = {"mode": "m", "M": 2, "N": 2, "K": 32, "rows": 2, "cols": 2, "cycles": 10,
               "ideal_cycles": 4.0, "utilization": 0.4, "errors": int(err.sum()),
               "engine": "native", "sim": "verilator", "cycles_per_second": 1e5}
        return RunResult(y=y, err=err, report=rep)
    return run_layer


def test_check_passes_and_fails(files, monkeypatch, capsys):
    tmp, layer, x = files
    y, err = gemm(x, layer)
    monkeypatch.setattr("verif.runner.run_layer", _fake_run(y, err))
    assert vmain.main(_argv(tmp, "--check")) == 0
    assert "bit-exact" in capsys.readouterr().out
    bad = y.copy()
    bad[1, 1] += 1
    monkeypatch.setattr("verif.runner.run_layer", _fake_run(bad, err))
    assert vmain.main(_argv(tmp, "--check")) == 1
    assert "1 of 4 outputs" in capsys.readouterr().err


def test_waves_without_lz4_is_one_line(files, monkeypatch, capsys):
    tmp, _, _ = files
    monkeypatch.setattr(vmain, "fst_support_missing",
                        lambda: "--waves needs liblz4 for FST dumps (Debian: apt-get install "
                                "liblz4-dev)")
    assert vmain.main(_argv(tmp, "--waves")) == 2
    err = capsys.readouterr().err
    assert "liblz4" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_fst_support_probe_runs():
    why = vmain.fst_support_missing()
    assert why is None or "apt-get install" in why


def test_missing_compiler_is_one_line(files, monkeypatch, capsys):
    tmp, _, _ = files
    monkeypatch.setattr(vmain.shutil, "which", lambda name: None)
    assert vmain.main(_argv(tmp)) == 2
    err = capsys.readouterr().err
    assert "C++ compiler" in err and len(err.strip().splitlines()) == 1
