"""The native harness (verif.native) against the cocotb testbench and the golden model.

The same GEMMs under the same seeded LFSR traffic run on both paths: results must equal the
golden model's and the cycle counts must be equal. One native and one cocotb build of ``tiny``
(shared with the other tests through the build cache); Icarus runs the harness too.
"""

import math
import subprocess
import sys

import numpy as np
import pytest
from amaranth.lib import data

from gen.pack import Packer
from gen.presets import preset
from golden.gemm import gemm
from hw.config import Mode
from hw.core import core_drain_delay, output_latency
from verif.cases import block_case, random_case
from verif.native import LFSR_PERIOD, Traffic, lfsr_gates, run_gemms_native
from verif.toolchain import simulator_missing

pytestmark = pytest.mark.sim

TINY = preset("tiny")
#: (mode, M, K, N): raw and requant, N:M patterns, integer and MX scales with MX activations.
CASES = [
    (Mode("int8", "dense", "none", out_stage="requant"), 5, 64, 3),
    (Mode("int4", "2:4", "int"), 3, 128, 5),
    (Mode("ternary", "1:4", "int"), 4, 128, 4),
    (Mode("int8", "4:8", "none", out_stage="requant"), 2, 64, 5),
    (Mode("fp4_e2m1", "dense", "pow2", mx_act=True), 3, 96, 3),
    (Mode("uint4", "2:8", "int"), 5, 64, 2),
]


def _golden(cfg, mode, layer, x, x_exp):
    y, err = gemm(x, layer, x_exp=x_exp, x_format=mode.activation_format,
                  frac_bits=cfg.frac_bits, t_min=cfg.t_min, t_max=cfg.t_max,
                  out_stage=mode.out_stage)
    return y, np.asarray(err, bool)


#: Block-sparse: (mode, M, K, N, block); the MX case has a NaN activation exponent in a
#: group every column drops (the host must stream it so the flag matches golden).
BLOCK_CASES = [
    (Mode("int4", "2:4", "int", out_stage="requant"), 3, 256, 4, (32, 1)),
    (Mode("fp4_e2m1", "dense", "pow2", mx_act=True), 3, 256, 4, (32, 4)),
]


def _cases():
    out = []
    for i, (mode, M, K, N) in enumerate(CASES):
        layer, x, x_exp = random_case(100 + i, TINY, mode, M, K, N)
        out.append({"name": f"{i}-{mode.name}", "mode": mode, "layer": layer, "x": x,
                    "x_exp": x_exp, "out_stage": mode.out_stage})
    for i, (mode, M, K, N, block) in enumerate(BLOCK_CASES):
        layer, x, x_exp = block_case(200 + i, TINY, mode, M, K, N, block, 0.5,
                                     group=64 if mode.scale_kind == "int" else None)
        if x_exp is not None:
            dropped = np.flatnonzero(layer.block_mask.max(axis=1) == 0)
            x_exp = x_exp.copy()
            x_exp[1, dropped[0]] = 0xFF
        out.append({"name": f"block{i}-{mode.name}", "mode": mode, "layer": layer, "x": x,
                    "x_exp": x_exp, "out_stage": mode.out_stage})
    return out


TRAFFIC = {"full": Traffic.full(), "random": Traffic.random(np.random.default_rng(15))}


def test_lfsr_gates_period_and_duty():
    gates = lfsr_gates(0xACE1, 128)
    assert len(gates) == LFSR_PERIOD
    # A maximal 16-bit LFSR visits every non-zero state once: low byte < 128 in exactly
    # 128 * 256 of them, minus the all-zero state.
    assert sum(gates) == 128 * 256 - 1
    assert lfsr_gates(7, 256) == (1,)
    assert lfsr_gates(0, 100) == lfsr_gates(1, 100)  # seed 0 counts as 1, as in the harness


def test_native_matches_cocotb_results_and_cycles(tmp_path):
    """Every case in one native simulation per traffic; the same in one cocotb job."""
    from verif.launch import run_cases
    from verif.toolchain import build_model

    cases = _cases()
    native = {}
    for tname, traffic in TRAFFIC.items():
        out = run_gemms_native(TINY, cases, traffic=traffic, workdir=tmp_path / tname)
        for case, (y, err), cycles in zip(cases, out["results"], out["cycles"], strict=True):
            gy, gerr = _golden(TINY, case["mode"], case["layer"], case["x"], case["x_exp"])
            assert np.array_equal(y, gy.astype(y.dtype)), case["name"]
            assert np.array_equal(err, gerr), case["name"]
            native[f"{tname}/{case['name']}"] = cycles
    job = []
    for tname, traffic in TRAFFIC.items():
        for case in cases:
            y, err = _golden(TINY, case["mode"], case["layer"], case["x"], case["x_exp"])
            job.append({"name": f"{tname}/{case['name']}", "layer": case["layer"],
                        "x": case["x"], "x_exp": case["x_exp"], "y": y, "err": err,
                        "out_stage": case["out_stage"], **traffic.patterns()})
    report = run_cases(build_model(TINY), job, workdir=tmp_path / "cocotb")
    assert all(c.get("checked") for c in report["cases"])
    assert {c["name"]: c["cycles"] for c in report["cases"]} == native
    # The random traffic did throttle every case.
    for case in cases:
        assert native[f"random/{case['name']}"] > native[f"full/{case['name']}"], case["name"]


def test_native_on_icarus(tmp_path):
    why = simulator_missing("icarus")
    if why:
        pytest.skip(f"icarus: {why} -- the native harness on Icarus is NOT tested")
    cases = _cases()[:3]
    traffic = TRAFFIC["random"]
    ver = run_gemms_native(TINY, cases, traffic=traffic, workdir=tmp_path / "v")
    ica = run_gemms_native(TINY, cases, traffic=traffic, sim="icarus", workdir=tmp_path / "i")
    for case, (y, err) in zip(cases, ica["results"], strict=True):
        gy, gerr = _golden(TINY, case["mode"], case["layer"], case["x"], case["x_exp"])
        assert np.array_equal(y, gy.astype(y.dtype)), case["name"]
        assert np.array_equal(err, gerr), case["name"]
    assert ica["cycles"] == ver["cycles"]


def test_pack_command_writes_the_harness_files(tmp_path):
    from golden.layer import save_layer

    mode = Mode("int8", "2:4", "int", out_stage="requant")
    layer, x, _ = random_case(3, TINY, mode, 3, 64, 5)
    save_layer(tmp_path / "L.npz", layer)
    np.save(tmp_path / "X.npy", x)
    proc = subprocess.run([sys.executable, "-m", "gen", "pack", "--preset", "tiny", "--layer",
                           str(tmp_path / "L.npz"), "--x", str(tmp_path / "X.npy"),
                           "--out-stage", "requant", "-o", str(tmp_path / "beats")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import json
    index = json.loads((tmp_path / "beats" / "index.json").read_text())["gemms"][0]
    files = Packer(TINY).write_beat_files(layer, x, tmp_path / "again", out_stage="requant")
    assert (index["m_tiles"], index["n_tiles"], index["k_beats"]) == (
        files.m_tiles, files.n_tiles, files.k_beats)
    prog = Packer(TINY).pack(layer, x, out_stage="requant")
    # Replaying the files in stream order gives exactly the beats of Packer.pack.
    act = [int(w, 16) for w in (tmp_path / "beats" / "act.hex").read_text().split()]
    wgt = [int(w, 16) for w in (tmp_path / "beats" / "wgt.hex").read_text().split()]
    prm = [int(w, 16) for w in (tmp_path / "beats" / "prm.hex").read_text().split()]
    kb, mts = files.k_beats, files.m_tiles
    for i in range(prog.beats):
        t, b = divmod(i, kb)
        assert act[(t % mts) * kb + b] == prog.act_beats[i]
        assert wgt[(t // mts) * kb + b] == prog.wgt_beats[i]
    assert [prm[t // mts] for t in range(len(prog.tiles))] == prog.prm_beats
    # The requant words read back through the layout (negative fields included).
    packer = Packer(TINY)
    rng = np.random.default_rng(5)
    prm_layout = data.ArrayLayout(packer.lay.col_params, TINY.cols)
    for _ in range(20):
        fields = (rng.integers(-(1 << 31), 1 << 31, 2), rng.integers(1 << 30, 1 << 31, 2),
                  rng.integers(-31, 31, 2), rng.integers(-128, 128, 2))
        view = prm_layout.from_bits(packer.prm_word(*fields))
        for c in range(TINY.cols):
            got = (view[c].bias, view[c].mult, view[c].shift, view[c].zp)
            assert got == tuple(int(f[c]) for f in fields)
    bad = subprocess.run([sys.executable, "-m", "gen", "pack", "--preset", "tiny", "--layer",
                          str(tmp_path / "L.npz"), "--x", str(tmp_path / "L.npz"), "-o",
                          str(tmp_path / "b2")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_inband_modes_back_to_back(tmp_path):
    """Eight GEMMs alternating modes, their modes as descriptors on `dsc`, streamed back to
    back: bit-exact under random traffic, and at full rate the whole sequence costs its ideal
    cycles plus one fill/drain plus one cycle per mode change."""
    from verif.runner import ideal_cycles

    M, K, N = 4, 256, 4
    modes = [Mode("int8", "dense", "none"), Mode("int4", "2:4", "int", out_stage="requant"),
             Mode("ternary", "dense", "int"), Mode("fp4_e2m1", "dense", "pow2", mx_act=True)]
    gemms = []
    for i in range(8):
        mode = modes[i % 4]
        layer, x, x_exp = random_case(400 + i, TINY, mode, M, K, N,
                                      group=64 if mode.scale_kind == "int" else None)
        if i == 4:  # block sparse, tiles still longer than the drain interlock
            layer, x, x_exp = block_case(400 + i, TINY, mode, M, K, N, (32, 2), 0.5)
        gemms.append({"layer": layer, "x": x, "x_exp": x_exp, "out_stage": mode.out_stage,
                      "mode": mode})
    for tname, traffic in TRAFFIC.items():
        out = run_gemms_native(TINY, gemms, traffic=traffic, inband=True,
                               workdir=tmp_path / tname)
        for i, (g, (y, err)) in enumerate(zip(gemms, out["results"], strict=True)):
            gy, gerr = _golden(TINY, g["mode"], g["layer"], g["x"], g["x_exp"])
            assert np.array_equal(y, gy.astype(y.dtype)), i
            assert np.array_equal(err, gerr), i
    full = run_gemms_native(TINY, gemms, inband=True, workdir=tmp_path / "again")
    # Whole tiles, K a multiple of every step: a GEMM's ideal is its beats (one a cycle).
    ideal = sum(ideal_cycles(TINY, g["mode"], M, N, K) for g in gemms)
    assert sum(full["beats"]) < ideal  # the block-sparse GEMM streams fewer beats
    tail = core_drain_delay(TINY) + TINY.rows + output_latency(TINY)
    assert full["total_cycles"] <= sum(full["beats"]) + tail + len(gemms) - 1


def test_inband_fp8_activation_formats(tmp_path):
    """mxfp8 (2×2): in-band GEMMs switching the weight and the activation format (E4M3 × E4M3,
    MXFP4 × E5M2, E5M2 × int8, 2:4 E4M3 × MXINT8), one block-sparse with a NaN activation
    in a k-range every column drops (streamed anyway, so the row's flag matches golden), under
    random traffic: bit-exact."""
    cfg = preset("mxfp8").replace(rows=2, cols=2, name="upe_mxfp8_2x2")
    M, K, N = 3, 128, 3
    modes = [Mode("fp8_e4m3", "dense", "pow2", mx_act=True, x_format="fp8_e4m3"),
             Mode("fp4_e2m1", "dense", "pow2", mx_act=True, x_format="fp8_e5m2",
                  out_stage="requant"),
             Mode("fp8_e5m2", "dense", "none"),
             Mode("fp8_e4m3", "2:4", "pow2", mx_act=True)]
    gemms = []
    for i, mode in enumerate(modes + modes[:1]):
        layer, x, x_exp = random_case(500 + i, cfg, mode, M, K, N, invalid_x=i == 0)
        if i == 4:
            layer, x, x_exp = block_case(500 + i, cfg, mode, M, K, N, (32, 3), 0.5)
            dropped = np.flatnonzero(~layer.block_mask.astype(bool).any(axis=1))
            assert dropped.size, "some k-range is dropped for every column"
            x[1, dropped[0] * 32] = 0x7F  # NaN in a k-range no column keeps
        gemms.append({"layer": layer, "x": x, "x_exp": x_exp, "out_stage": mode.out_stage,
                      "x_format": mode.activation_format, "mode": mode})
    for tname, traffic in TRAFFIC.items():
        out = run_gemms_native(cfg, gemms, traffic=traffic, inband=True,
                               workdir=tmp_path / tname)
        for i, (g, (y, err)) in enumerate(zip(gemms, out["results"], strict=True)):
            gy, gerr = _golden(cfg, g["mode"], g["layer"], g["x"], g["x_exp"])
            assert np.array_equal(y, gy.astype(y.dtype)), (tname, i)
            assert np.array_equal(err, gerr), (tname, i)
            if i in (0, 4):
                assert err.any(), "the NaN activation flags its row"


def test_grouped_gemm_experts_inband(tmp_path):
    """A grouped (MoE) GEMM: four experts of different modes (format, sparsity, scale kind,
    raw and requant), an uneven top-1 routing with one expert left without tokens, as one in-band
    sequence under random traffic: bit-exact with `golden.moe.grouped_gemm`."""
    from golden.moe import grouped_gemm
    from verif.moe import run_grouped

    M, K, N = 11, 128, 3
    modes = [Mode("int8", "dense", "none", out_stage="requant"), Mode("int4", "2:4", "int"),
             Mode("ternary", "dense", "int"), Mode("fp4_e2m1", "dense", "pow2")]
    experts = []
    for e, mode in enumerate(modes):
        layer, x, _ = random_case(500 + e, TINY, mode, M, K, N,
                                  group=64 if mode.scale_kind == "int" else None)
        experts.append(layer)
        if e == 0:
            x0 = x
    routing = np.array([1, 1, 0, 1, 3, 1, 1, 3, 1, 1, 0])  # expert 2: no token
    stages = [m.out_stage for m in modes]
    want, want_err = grouped_gemm(x0, experts, routing, frac_bits=TINY.frac_bits,
                                  t_min=TINY.t_min, t_max=TINY.t_max, out_stage=stages)
    res = run_grouped(TINY, experts, x0, routing, out_stage=stages,
                      traffic=Traffic.random(np.random.default_rng(21)))
    assert res.y.dtype == want.dtype and np.array_equal(res.y, want)
    assert np.array_equal(res.err, want_err)
    rep = res.report
    assert rep["gemms"] == 3 and rep["skipped_experts"] == [2]
    assert [e["tokens"] for e in rep["experts"]] == [2, 7, 0, 2]
    assert rep["total_cycles"] >= rep["ideal_cycles"] > 0

    # Top-2 with MX activations (every expert pow2), at full rate.
    modes = [Mode("fp4_e2m1", "dense", "pow2", mx_act=True),
             Mode("int8", "dense", "pow2", mx_act=True), Mode("fp4_e2m1", "dense", "pow2",
                                                                mx_act=True)]
    experts = [random_case(520 + e, TINY, mode, M, K, N)[0] for e, mode in enumerate(modes)]
    _, x, x_exp = random_case(520, TINY, modes[0], M, K, N)
    routing = np.array([[0, 1], [1, 0], [1, 2], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1],
                        [2, 0], [1, 0], [0, 1]])
    want, want_err = grouped_gemm(x, experts, routing, x_exp=x_exp, frac_bits=TINY.frac_bits,
                                  t_min=TINY.t_min, t_max=TINY.t_max)
    res = run_grouped(TINY, experts, x, routing, x_exp=x_exp)
    assert res.y.shape == (M, 2, N) and np.array_equal(res.y, want)
    assert np.array_equal(res.err, want_err)


def test_weight_bandwidth_throttle(tmp_path):
    """``+wgt_bw``: beats of 40 bits behind 16 bits a cycle take 2.5 cycles each, results
    bit-exact, also under random traffic and in-band; without the plusarg nothing changes."""
    from verif.native import run_native, sched_beats

    cases = [(Mode("int8", "dense", "none"), 4, 256, 4),
             (Mode("int4", "2:4", "int"), 3, 128, 2)]
    gemms = []
    for seed, (mode, M, K, N) in enumerate(cases):
        layer, x, x_exp = random_case(600 + seed, TINY, mode, M, K, N)
        gemms.append({"layer": layer, "x": x, "x_exp": x_exp, "out_stage": mode.out_stage,
                      "mode": mode})

    def forty(f, beats):
        return np.full(beats.shape, 40)

    def check(out):
        for i, (g, (y, err)) in enumerate(zip(gemms, out["results"], strict=True)):
            gy, gerr = _golden(TINY, g["mode"], g["layer"], g["x"], g["x_exp"])
            assert np.array_equal(y, gy.astype(y.dtype)), i
            assert np.array_equal(err, gerr), i

    free = run_gemms_native(TINY, gemms, workdir=tmp_path / "free")
    slow = run_gemms_native(TINY, gemms, wgt_bw=16, wgt_beat_bits=forty,
                            workdir=tmp_path / "slow")
    check(free)
    check(slow)
    tail = core_drain_delay(TINY) + TINY.rows + output_latency(TINY)
    for beats, cycles in zip(slow["beats"], slow["cycles"], strict=True):
        # Beat i is taken once the counter has earned (i + 1) * 40 bits: the first after 3
        # cycles (uncounted), then 2.5 cycles apart on average.
        assert cycles == math.ceil(beats * 2.5) - 2 + tail
    assert all(s > f for s, f in zip(slow["cycles"], free["cycles"], strict=True))
    for tname, traffic in TRAFFIC.items():
        check(run_gemms_native(TINY, gemms, traffic=traffic, wgt_bw=16, wgt_beat_bits=forty,
                               inband=True, workdir=tmp_path / f"inband-{tname}"))
    files = Packer(TINY).write_gemms(gemms, tmp_path / "bare")
    assert [b.size for b in sched_beats(files)] == [f.wgt_words for f in files]
    from verif.native import build_native
    with pytest.raises(ValueError, match="wbits.hex"):
        run_native(build_native(TINY, files=files), files, wgt_bw=16)
    with pytest.raises(ValueError, match="wgt_beat_bits"):
        run_gemms_native(TINY, gemms, wgt_bw=16, workdir=tmp_path / "none")


def test_verilator_memory_loader(tmp_path):
    """main.cpp's reader of the beat files: `$readmemh` syntax it takes, words it refuses."""
    from verif.native import NativeError, build_native, run_native

    cases = _cases()[:2]
    files = Packer(TINY).write_gemms(cases, tmp_path)
    model = build_native(TINY, files=files)
    ref = run_native(model, files)
    # `//` comments, blank lines, several words on a line, `_` inside a word and upper case.
    wgt = (tmp_path / "wgt.hex").read_text().split()
    first, rest = wgt[0], wgt[1:]
    (tmp_path / "wgt.hex").write_text(
        f"// weights\n\n{first[:3]}_{first[3:].upper()}  {' '.join(rest[:2])}\n"
        + "\n".join(rest[2:]) + "\n")
    assert run_native(model, files).words == ref.words
    (tmp_path / "sched.hex").write_text("0\n")
    with pytest.raises(NativeError, match="one word per wgt.hex word"):
        run_native(model, files)
    (tmp_path / "act.hex").write_text("12\nxz\n")
    with pytest.raises(NativeError, match="act.hex, word 1: 'xz' is not a hexadecimal word"):
        run_native(model, files)
    (tmp_path / "act.hex").unlink()
    with pytest.raises(NativeError, match="cannot open act.hex"):
        run_native(model, files)


def test_native_compiler_choice(monkeypatch):
    """`native_cxx`: ``UPE_NATIVE_CXX`` when it names a command, clang++ where installed."""
    import shutil

    from verif.native import native_cxx
    monkeypatch.setenv("UPE_NATIVE_CXX", "no-such-compiler++")
    with pytest.raises(RuntimeError, match="UPE_NATIVE_CXX='no-such-compiler"):
        native_cxx()
    monkeypatch.setenv("UPE_NATIVE_CXX", "g++")
    assert native_cxx() == "g++"
    monkeypatch.delenv("UPE_NATIVE_CXX")
    assert native_cxx() == ("clang++" if shutil.which("clang++") else "g++")
