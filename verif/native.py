"""The native simulation path: the core inside a Verilog harness, stimulus and results in files.

`gen.pack.Packer.write_beat_files` writes every stream's beats as ``$readmemh`` files; the
harness (``verif/harness/upe_harness.v``) streams them into the core under seeded LFSR
valid/ready traffic and writes the result rows and the cycle count; Python only packs, launches
and checks. Built once per configuration (and memory depth) with Verilator and a small C++ main
(``verif/harness/main.cpp``), or with Icarus Verilog, cached like the cocotb models.

The traffic of a run is a `Traffic`: an LFSR seed and a duty per stream. `Traffic.patterns`
gives the same gates as the cyclic patterns of the cocotb testbench, so both paths see the
same handshakes and count the same cycles.

A run can also sit behind a weight bandwidth of W bits per cycle (``wgt_bw``): the harness then
presents a weight beat only once a credit counter, earning W bits a cycle, holds the beat's
compressed size, which the host writes per weight word (`write_wgt_bits`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gen.pack import BeatFiles, Packer
from hw.config import ArrayConfig
from verif.toolchain import BUILD, _locked, _log, hardware_digest, simulator_missing, verilator_env

__all__ = ["STREAMS", "LFSR_PERIOD", "Traffic", "NativeModel", "NativeRun", "NativeError",
           "lfsr_gates", "build_native", "run_native", "run_gemms_native", "run_gemm_native",
           "sched_beats", "write_wgt_bits"]

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
HARNESS = HARNESS_DIR / "upe_harness.v"
MAIN_CPP = HARNESS_DIR / "main.cpp"
NATIVE_RECIPE = "8"  # bump when the way native models are built changes
STREAMS = ("act", "wgt", "prm", "res")
LFSR_POLY = 0xB400   # x^16 + x^14 + x^13 + x^11 + 1, Galois form, shifting right
LFSR_PERIOD = (1 << 16) - 1
FULL_DUTY = 256
#: Memory depths (words) of the Verilator build, as powers of two; a program that needs more
#: gets a deeper build (two bits at a time, each depth built once): a 4096 × 4096 int8 layer
#: on a 4 × 4 array needs 2^20 weight words. The model zeroes its memories when it starts,
#: so a depth beyond the program's is start-up time (2^20 weight words: 40 ms on `default`,
#: a seventh of a 65 536-cycle run).
VERILATOR_DEPTH_BITS = {"act": 16, "wgt": 16, "prm": 12, "gemms": 12}
MIN_DEPTH_BITS = 8


class NativeError(RuntimeError):
    """The native simulation did not complete (timeout, X on a control output, crash)."""


def lfsr_gates(seed: int, duty: int) -> tuple[int, ...]:
    """One period of the harness's gate for a stream: ``(state & 0xFF) < duty`` per LFSR step.

    The harness draws a step exactly when the cocotb testbench calls ``next`` on its cyclic
    pattern, so this tuple, cycled, reproduces the harness's traffic there.
    """
    if duty >= FULL_DUTY:
        return (1,)
    state = seed & 0xFFFF or 1
    out = []
    for _ in range(LFSR_PERIOD):
        out.append(int((state & 0xFF) < duty))
        state = (state >> 1) ^ LFSR_POLY if state & 1 else state >> 1
    return tuple(out)


@dataclass(frozen=True)
class Traffic:
    """Valid/ready traffic of a run: an LFSR seed and a duty (1..256 of 256) per stream."""

    seeds: dict = field(default_factory=lambda: dict.fromkeys(STREAMS, 1))
    duties: dict = field(default_factory=lambda: dict.fromkeys(STREAMS, FULL_DUTY))

    def __post_init__(self):
        for s in STREAMS:
            duty = self.duties.get(s, FULL_DUTY)
            if not 1 <= duty <= FULL_DUTY:
                raise ValueError(f"duty of {s} must be 1..{FULL_DUTY}, not {duty}")

    @classmethod
    def full(cls) -> Traffic:
        """Every stream at full rate."""
        return cls()

    @classmethod
    def random(cls, rng: np.random.Generator) -> Traffic:
        """Random seeds and duties.

        Duties of 30-100 % (sources) and 20-100 % (prm, res); a quarter of the runs have act
        and res at full rate.
        """
        full = rng.random() < 0.25
        seeds = {s: int(rng.integers(1, 1 << 16)) for s in STREAMS}
        duties = {"act": FULL_DUTY if full else int(rng.integers(77, FULL_DUTY + 1)),
                  "wgt": int(rng.integers(77, FULL_DUTY + 1)),
                  "prm": int(rng.integers(51, FULL_DUTY + 1)),
                  "res": FULL_DUTY if full else int(rng.integers(51, FULL_DUTY + 1))}
        return cls(seeds=seeds, duties=duties)

    def to_dict(self) -> dict:
        """Seeds and duties, as JSON."""
        return {"seeds": dict(self.seeds), "duties": dict(self.duties)}

    def plusargs(self) -> list[str]:
        """The harness's plusargs for this traffic."""
        args = []
        for s in STREAMS:
            args += [f"+{s}_seed={self.seeds.get(s, 1)}",
                     f"+{s}_duty={self.duties.get(s, FULL_DUTY)}"]
        return args

    def patterns(self) -> dict[str, tuple[int, ...]]:
        """The cocotb testbench's gate patterns giving this traffic.

        Keys ``in_pattern`` (act), ``wgt_pattern``, ``prm_pattern`` and ``out_pattern`` (res).
        """
        keys = {"act": "in_pattern", "wgt": "wgt_pattern", "prm": "prm_pattern",
                "res": "out_pattern"}
        return {keys[s]: lfsr_gates(self.seeds.get(s, 1), self.duties.get(s, FULL_DUTY))
                for s in STREAMS}


@dataclass(frozen=True)
class NativeModel:
    """A built harness + core of one configuration."""

    cfg: ArrayConfig
    sim: str
    base: Path
    executable: Path
    depth_bits: dict
    build_seconds: float

    def fits(self, files: list[BeatFiles]) -> bool:
        """Whether the model's memories hold these GEMMs."""
        need = _need(files)
        return all(need[s] <= 1 << self.depth_bits[s] for s in need)


@dataclass
class NativeRun:
    """What one native simulation returned."""

    words: list[list[int]]   # result beats per GEMM
    cycles: list[int]        # per GEMM: first beat taken to last result row
    firsts: list[int]        # per GEMM: the cycle its first beat was taken
    lasts: list[int]         # per GEMM: the cycle its last result row was taken
    sim_cycles: int          # every cycle the harness ran, reset included
    seconds: float           # wall time of the simulator process


def _need(files: list[BeatFiles]) -> dict[str, int]:
    return {"act": sum(f.m_tiles * f.k_beats for f in files),
            "wgt": sum(f.wgt_words for f in files),
            "prm": sum(f.n_tiles for f in files), "gemms": len(files)}


def _depth_for(sim: str, files: list[BeatFiles] | None) -> dict[str, int]:
    base = dict(VERILATOR_DEPTH_BITS) if sim == "verilator" else dict.fromkeys(
        VERILATOR_DEPTH_BITS, MIN_DEPTH_BITS)
    if files is not None:
        for s, n in _need(files).items():
            while n > 1 << base[s]:
                base[s] += 2 if sim == "verilator" else 1
    return base


def _defines(cfg: ArrayConfig, depth_bits: dict) -> dict[str, int | str]:
    packer = Packer(cfg)
    lay = packer.lay
    inband_bit = lay.mode["inband"].offset
    gemm_last_bit = lay.wgt_beat["ctl"].offset + lay.wgt_ctl["gemm_last"].offset
    return {"UPE_CORE": cfg.name, "UPE_ROWS": cfg.rows, "UPE_ACT_BITS": packer.act_bits,
            "UPE_MODE_INBAND_BIT": inband_bit, "UPE_WGT_GEMM_LAST_BIT": gemm_last_bit,
            "UPE_WGT_BITS": packer.wgt_bits, "UPE_PRM_BITS": packer.prm_bits,
            "UPE_RES_BITS": packer.res_bits, "UPE_MODE_BITS": packer.mode_bits,
            "UPE_ACT_DEPTH": 1 << depth_bits["act"], "UPE_WGT_DEPTH": 1 << depth_bits["wgt"],
            "UPE_PRM_DEPTH": 1 << depth_bits["prm"], "UPE_MAX_GEMMS": 1 << depth_bits["gemms"]}


def _run_logged(cmd: list[str], log: Path, cwd: Path, what: str) -> None:
    with open(log, "ab") as fh:
        fh.write(("$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); end of {log}:\n{tail}")


def native_cxx() -> str:
    """The C++ compiler of the native Verilator builds.

    ``UPE_NATIVE_CXX`` if set (a command on PATH), else ``clang++`` where it is installed
    (Debian's ``clang``), else ``g++``. On `default`, clang's model ran a 262 144-cycle GEMM
    in 0.88 of g++'s time (docs/VERIFICATION.md); the results are the same.
    """
    chosen = os.environ.get("UPE_NATIVE_CXX")
    if chosen:
        if shutil.which(chosen) is None:
            raise RuntimeError(f"UPE_NATIVE_CXX={chosen!r} is not a command on PATH")
        return chosen
    return "clang++" if shutil.which("clang++") else "g++"


def _compiler_make_vars(cxx: str) -> str:
    """The make variables that put ``cxx`` into the wheel's verilated.mk (configured for gcc)."""
    words = [f"CXX={cxx}", f"LINK={cxx}"]
    if "clang" in Path(cxx).name:
        # clang reads a precompiled header through -include-pch and the .gch name itself;
        # verilated_threads.cpp needs libatomic explicitly.
        words += ["CFG_CXXFLAGS_PCH_I=-include-pch", "CFG_GCH_IF_CLANG=.gch",
                  "USER_LDLIBS=-latomic"]
    return " ".join(words)


def build_native(cfg: ArrayConfig, *, sim: str = "verilator",
                 files: list[BeatFiles] | None = None, quiet: bool = False) -> NativeModel:
    """Emit the core and compile it with the harness once; later calls reuse the build.

    ``files`` picks memories deep enough for those GEMMs (else the default depths). The
    environment variable ``UPE_NATIVE_OPT`` (default ``-O2``; several flags separated by
    spaces) sets the C++ optimisation of a Verilator build, ``UPE_NATIVE_VERILATOR_FLAGS``
    (default none) adds Verilator options (``--threads 2``, ``-O3``, ...) and `native_cxx`
    picks its compiler; all three are part of its cache key.
    """
    from gen.emit import emit

    why = simulator_missing(sim)
    if why:
        raise RuntimeError(f"cannot simulate on {sim}: {why}")
    depth_bits = _depth_for(sim, files)
    opt = os.environ.get("UPE_NATIVE_OPT", "-O2")
    vflags = os.environ.get("UPE_NATIVE_VERILATOR_FLAGS", "").split()
    cxx = native_cxx() if sim == "verilator" else ""
    h = hashlib.sha256()
    for part in (cfg.to_json(), sim, opt, cxx, NATIVE_RECIPE, " ".join(vflags),
                 json.dumps(depth_bits, sort_keys=True), hardware_digest(), HARNESS.read_text(),
                 MAIN_CPP.read_text()):
        h.update(part.encode() + b"\0")
    key = h.hexdigest()[:12]
    base = BUILD / "native" / f"{cfg.name}-{sim}-{key}"
    stamp = base / "built.json"
    exe = base / ("obj" if sim == "verilator" else "") / (
        "Vupe_harness" if sim == "verilator" else "harness.vvp")
    with _locked(BUILD / "native" / f".{cfg.name}-{sim}-{key}.lock"):
        if not stamp.exists():
            t0 = time.monotonic()
            if not quiet:
                _log(f"building the native {sim} model of {cfg.name} ({cfg.rows}x{cfg.cols}"
                     f"{', ' + cxx if cxx else ''}), once per configuration ...")
            if base.exists():
                shutil.rmtree(base)
            paths = emit(cfg, base / "rtl")
            defines = _defines(cfg, depth_bits)
            log = base / "build.log"
            if sim == "verilator":
                env = verilator_env()
                jobs = str(max(1, min(2, os.cpu_count() or 1)))
                cmd = ["verilator", "--cc", "--exe", "--build", "-j", jobs, "-Wno-fatal",
                       "--x-initial", "fast", *vflags,
                       "--top-module", "upe_harness", "-Mdir", str(base / "obj"),
                       "-CFLAGS", "-std=c++17",
                       # Memory widths for main.cpp's loader.
                       "-CFLAGS", " ".join(f"-D{k}={defines[k]}" for k in
                                           ("UPE_ACT_BITS", "UPE_WGT_BITS", "UPE_PRM_BITS")),
                       *[f"-D{k}={v}" for k, v in defines.items()],
                       str(paths["waivers"]), str(paths["verilog"]), str(HARNESS),
                       str(MAIN_CPP)]
                saved = env["MAKEFLAGS"]
                flags = opt.replace(" ", "\\ ")  # MAKEFLAGS escapes spaces in a value
                os.environ["MAKEFLAGS"] = (f"{saved} OPT_FAST={flags} OPT_SLOW=-O0 "
                                           f"OPT_GLOBAL={flags} {_compiler_make_vars(cxx)}")
                try:
                    _run_logged(cmd, log, base, "the Verilator build of the native harness")
                finally:
                    os.environ["MAKEFLAGS"] = saved
            else:
                # Verilog-2005 rules, as for the cocotb models (verif.toolchain): under
                # SystemVerilog rules a declaration initialiser raises no event, so a Yosys
                # combinational process whose inputs keep their initial value stays X.
                cmd = ["iverilog", "-g2005", "-o", str(exe), "-s", "upe_harness_tb",
                       *[f"-D{k}={v}" for k, v in defines.items()],
                       str(paths["verilog"]), str(HARNESS)]
                _run_logged(cmd, log, base, "the Icarus build of the native harness")
            stamp.write_text(json.dumps({"seconds": round(time.monotonic() - t0, 1),
                                         "depth_bits": depth_bits, "cxx": cxx}))
            if not quiet:
                _log(f"built the native {sim} model of {cfg.name} in "
                     f"{time.monotonic() - t0:.0f} s -> {base}")
    built = json.loads(stamp.read_text())
    return NativeModel(cfg=cfg, sim=sim, base=base, executable=exe, depth_bits=depth_bits,
                       build_seconds=built["seconds"])


def sched_beats(files: list[BeatFiles]) -> list[np.ndarray]:
    """Per GEMM, the beat index within its tile of every weight word (from ``sched.hex``)."""
    words = np.array([int(v, 16) for v in
                      (files[0].directory / "sched.hex").read_text().split()], np.int64)
    return [words[f.offsets[1]:f.offsets[1] + f.wgt_words] & 0x7FFF_FFFF for f in files]


def write_wgt_bits(files: list[BeatFiles],
                   beat_bits: Callable[[BeatFiles, np.ndarray], np.ndarray]) -> Path:
    """Write ``wbits.hex``: the compressed size in bits of every weight word, for ``+wgt_bw``.

    ``beat_bits(f, beats)`` gives the sizes of GEMM ``f``'s weight words from their beat
    indices within the tile (`sched_beats`); sizes must be 1 .. 2^31.
    """
    out = []
    for f, beats in zip(files, sched_beats(files), strict=True):
        bits = np.asarray(beat_bits(f, beats), np.int64)
        if bits.shape != beats.shape or (bits < 1).any() or (bits >= 1 << 31).any():
            raise ValueError(f"beat_bits must give {beats.size} sizes of 1 .. 2^31 bits")
        out.append(bits)
    path = files[0].directory / "wbits.hex"
    path.write_text("".join(f"{int(v):08x}\n" for v in np.concatenate(out)))
    return path


def run_native(model: NativeModel, files: list[BeatFiles], traffic: Traffic | None = None, *,
               max_idle: int = 100_000, timeout: float | None = None,
               inband: bool = False, wgt_bw: int | None = None) -> NativeRun:
    """Run the GEMMs written to one directory (`Packer.write_gemms`) on ``model``.

    ``inband``: the modes travel on the core's descriptor stream and the GEMMs stream back to
    back (else each starts when the previous one's results are out). ``wgt_bw``: a weight
    bandwidth in bits per cycle (needs ``wbits.hex``, `write_wgt_bits`); None for none.
    """
    if not files:
        raise ValueError("no GEMM to run")
    directory = files[0].directory
    if not model.fits(files):
        raise NativeError(f"the GEMMs need {_need(files)} words, more than the model's "
                          f"memories (2^{model.depth_bits}); build with files= to size them")
    traffic = traffic or Traffic.full()
    args = [*traffic.plusargs(), f"+max_idle={max_idle}", f"+inband={int(inband)}"]
    if wgt_bw is not None:
        if isinstance(wgt_bw, bool) or not isinstance(wgt_bw, int) or not 1 <= wgt_bw < 1 << 31:
            raise ValueError(f"wgt_bw must be a positive integer (bits per cycle), not {wgt_bw!r}")
        if not (directory / "wbits.hex").exists():
            raise ValueError(f"wgt_bw needs the weight beat sizes, {directory / 'wbits.hex'} "
                             f"(write_wgt_bits)")
        args.append(f"+wgt_bw={wgt_bw}")
    if model.sim == "verilator":
        cmd = [str(model.executable), *args]
    else:
        cmd = ["vvp", "-n", str(model.executable), *args]
    result = directory / "result.txt"
    result.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=directory, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    if proc.returncode or not result.exists():
        raise NativeError(f"the native {model.sim} simulation failed (exit {proc.returncode}): "
                          f"{(proc.stdout + proc.stderr)[-2000:]}")
    words: list[list[int]] = [[]]
    cycles: list[int] = []
    firsts: list[int] = []
    lasts: list[int] = []
    last = 0
    for line in result.read_text().splitlines():
        if line.startswith("cycles "):
            fields = line.split()
            cycles.append(int(fields[1]))
            firsts.append(int(fields[3]))
            last = int(fields[5])
            lasts.append(last)
            words.append([])
        elif line.startswith("error"):
            raise NativeError(f"{model.sim} harness, GEMM {len(cycles)}: {line} "
                              f"(in {directory})")
        else:
            words[-1].append(int(line, 16))
    words.pop()
    if len(cycles) != len(files):
        raise NativeError(f"{model.sim} harness finished {len(cycles)} of {len(files)} GEMMs "
                          f"(in {directory})")
    for i, (f, w) in enumerate(zip(files, words, strict=True)):
        if len(w) != f.result_rows:
            raise NativeError(f"{model.sim} harness wrote {len(w)} result rows for GEMM {i}, "
                              f"expected {f.result_rows}")
    return NativeRun(words=words, cycles=cycles, firsts=firsts, lasts=lasts, sim_cycles=last,
                     seconds=seconds)


def run_gemms_native(cfg: ArrayConfig, gemms: list[dict], *, traffic: Traffic | None = None,
                     sim: str = "verilator", workdir: str | Path | None = None,
                     quiet: bool = True, max_idle: int = 100_000, inband: bool = False,
                     wgt_bw: int | None = None,
                     wgt_beat_bits: Callable[[BeatFiles, np.ndarray], np.ndarray] | None = None
                     ) -> dict:
    """Pack GEMMs, run them one after the other in one simulation, assemble the results.

    Each GEMM is a dict of ``layer``, ``x``, ``x_exp``, ``out_stage`` (and ``x_format``, as
    `Packer.pack` takes it). With ``inband`` their
    modes travel as descriptors and the GEMMs stream back to back (`run_native`). With
    ``wgt_bw`` the weight stream is limited to that many bits per cycle, a beat costing
    ``wgt_beat_bits(f, beats)`` bits (`write_wgt_bits`).

    Returns ``results`` (a list of ``(y, err)``), ``cycles`` (a list), ``total_cycles`` (the
    first GEMM's first beat to the last GEMM's last result row), ``sim_seconds`` (simulator
    wall time), ``pack_seconds`` and the ``model``.
    """
    packer = Packer(cfg)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="upe-native-")
        workdir = tmp.name
    try:
        t0 = time.monotonic()
        files = packer.write_gemms(gemms, workdir)
        if wgt_bw is not None:
            if wgt_beat_bits is None:
                raise ValueError("wgt_bw needs wgt_beat_bits (the size of every weight beat)")
            write_wgt_bits(files, wgt_beat_bits)
        pack_seconds = time.monotonic() - t0
        model = build_native(cfg, sim=sim, files=files, quiet=quiet)
        run = run_native(model, files, traffic, max_idle=max_idle, inband=inband,
                         wgt_bw=wgt_bw)
        results = [packer.assemble(f, w) for f, w in zip(files, run.words, strict=True)]
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"results": results, "cycles": run.cycles, "sim_seconds": run.seconds,
            "sim_cycles": run.sim_cycles, "pack_seconds": pack_seconds, "model": model,
            "beats": [f.beats for f in files],
            "total_cycles": run.lasts[-1] - run.firsts[0] + 1}


def run_gemm_native(cfg: ArrayConfig, layer, x, *, x_exp=None, out_stage: str = "raw",
                    traffic: Traffic | None = None, sim: str = "verilator",
                    workdir: str | Path | None = None, quiet: bool = True,
                    max_idle: int = 100_000, x_format: str | None = None) -> dict:
    """One GEMM through `run_gemms_native`: ``y``, ``err``, ``cycles``, ``sim_seconds``, ..."""
    out = run_gemms_native(cfg, [{"layer": layer, "x": x, "x_exp": x_exp,
                                  "out_stage": out_stage, "x_format": x_format}],
                           traffic=traffic, sim=sim,
                           workdir=workdir, quiet=quiet, max_idle=max_idle)
    (y, err), = out.pop("results")
    out.update(y=y, err=err, cycles=out["cycles"][0], beats=out["beats"][0])
    return out
