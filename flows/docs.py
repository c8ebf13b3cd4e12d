"""``python -m flows.docs``: generate ``docs/INTERFACE.md`` and its pictures.

Every width, offset, code and latency comes from the manifest of the configuration
(`gen.emit.manifest`); the handshake picture is a trace of a real 2-tile GEMM on the Amaranth
simulator under backpressure on every stream, checked bit for bit against the golden model
before it is drawn. Pictures are WaveDrom sources (``docs/interface/*.json``) rendered to SVG
with ``yowasp-wavedrom``; the two block diagrams are drawn here as SVG.

``--check`` regenerates into a temporary directory and fails when the checked-in Markdown or
picture sources differ (``tests/test_docs.py`` does the same).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from gen.cli import Parser, add_config_args, config_from_args
from hw.config import ConfigError

__all__ = ["generate", "handshake_trace", "main"]

ROOT = Path(__file__).resolve().parent.parent
PICTURES = "interface"  # subdirectory of the docs directory


# -- WaveDrom sources ------------------------------------------------------------------------

#: Bits per row of a bit-field picture wider than 64 bits.
LANE_BITS = 32


def _reg(fields: list[tuple[str, int]], hspace: int = 900) -> dict:
    """A WaveDrom bit-field ("reg") picture, LSB first: ``fields`` = (name, bits). Beats wider
    than 64 bits are drawn in rows of `LANE_BITS`, the last row filled with grey (no bits).
    """
    total = sum(bits for _, bits in fields)
    reg = [{"bits": bits, "name": name} if name else {"bits": bits} for name, bits in fields]
    lanes = 1
    if total > 64:
        lanes = -(-total // LANE_BITS)
        if lanes * LANE_BITS > total:
            reg.append({"bits": lanes * LANE_BITS - total, "type": 1})
        total = lanes * LANE_BITS
    return {"reg": reg, "config": {"bits": total, "lanes": lanes, "hspace": hspace,
                                   "fontsize": 11}}


def _struct_fields(layout: dict) -> list[tuple[str, int, int]]:
    """(name, offset, width) of a manifest struct layout, by offset."""
    return sorted(((name, f["offset"], f["width"]) for name, f in layout.items()),
                  key=lambda t: t[1])


def _expand(layout: dict) -> list[tuple[str, int]]:
    """Fields of a manifest layout with arrays unrolled (``x[0]``, ``x[1]``, ...)."""
    out = []
    for name, _off, width in _struct_fields(layout):
        sub = layout[name]["layout"]
        if isinstance(sub, dict) and "array" in sub:
            n, w = sub["array"], sub["elem_width"]
            if n <= 16:
                out += [(f"{name}[{i}]", w) for i in range(n)]
            else:
                out.append((f"{name}[0..{n - 1}] ({w} b each)", width))
        else:
            out.append((name, width))
    return out


def register_pictures(man: dict) -> dict[str, dict]:
    """WaveDrom bit-field sources of the mode word and every beat."""
    lay = man["layouts"]
    pics = {}
    mode = [(n, w) for n, _, w in _struct_fields(lay["mode"])]
    pics["mode"] = _reg(mode)
    act = _expand(lay["act_beat"])
    pics["act_beat"] = _reg(act)
    pkt = _expand(lay["packet"])
    pics["wgt_packet"] = _reg(pkt)
    prm = [(n, w) for n, _, w in _struct_fields(lay["col_params"])]
    pics["prm_column"] = _reg(prm)
    res = _expand(lay["res_beat"])
    pics["res_beat"] = _reg(res)
    for fmt, info in man["slot_lanes"].items():
        bits, lps = info["bits"], info["lanes_per_slot"]
        pics[f"slot_{fmt}"] = _reg([(f"lane {j}", bits) for j in range(lps)], hspace=420)
    return pics


# -- the handshake trace ----------------------------------------------------------------------

#: Offer patterns of the trace (1: the source may raise valid this cycle; once raised, valid
#: stays until the beat is taken) and the result stream's ready pattern.
ACT_OFFER = "1101101111"
WGT_OFFER = "1011011101"
PRM_OFFER = "0001"
RES_READY = "0110100111"


def handshake_trace(cfg) -> dict:
    """Run a 2-tile requant GEMM (int8, one n-tile, two m-tiles, k_beats = 2) on the Amaranth
    simulator with independent act/wgt sources and backpressure on res; return the per-cycle
    signal samples and the check against the golden model.
    """
    from amaranth.sim import Simulator

    from gen.pack import Packer
    from golden.compress import compress
    from golden.gemm import gemm
    from golden.host import requant_params
    from hw.core import Core

    step = cfg.step_k("int8", "dense")
    K, M, N = 2 * step, 2 * cfg.rows, cfg.cols
    rng = np.random.default_rng(17)
    layer = compress(rng.standard_normal((K, N)), fmt="int8", sparsity="dense",
                     scale_kind="int")
    x = rng.integers(-127, 128, size=(M, K)).astype(np.int8)
    layer = requant_params(layer, 1.0, 4.0)
    packer = Packer(cfg)
    prog = packer.pack(layer, x, out_stage="requant")
    dut = Core(cfg)
    names = ("act_valid", "act_ready", "wgt_valid", "wgt_ready", "prm_valid", "prm_ready",
             "res_valid", "res_ready", "res_last", "busy")
    samples = {n: [] for n in names}
    labels = {"act": [], "wgt": [], "prm": [], "res": []}
    words: list[int] = []
    takes: list[int] = []  # cycle of every act/wgt beat taken
    n_res = len(prog.tiles) * cfg.rows

    async def bench(ctx):
        ctx.set(dut.mode.as_value(), prog.mode_word)
        ai = wi = pi = 0
        a_up = w_up = p_up = False
        cycle = 0
        while len(words) < n_res:
            if cycle > 400:
                raise RuntimeError("handshake trace did not finish")
            a_up = a_up or (ACT_OFFER[cycle % len(ACT_OFFER)] == "1" and ai < prog.beats)
            w_up = w_up or (WGT_OFFER[cycle % len(WGT_OFFER)] == "1" and wi < prog.beats)
            p_up = p_up or (PRM_OFFER[min(cycle, len(PRM_OFFER) - 1)] == "1"
                            and pi < len(prog.prm_beats))
            ctx.set(dut.act.valid, a_up)
            ctx.set(dut.wgt.valid, w_up)
            ctx.set(dut.prm.valid, p_up)
            if a_up:
                ctx.set(dut.act.payload.as_value(), prog.act_beats[ai])
            if w_up:
                ctx.set(dut.wgt.payload.as_value(), prog.wgt_beats[wi])
            if p_up:
                ctx.set(dut.prm.payload.as_value(), prog.prm_beats[pi])
            r_ready = RES_READY[cycle % len(RES_READY)] == "1"
            ctx.set(dut.res.ready, r_ready)
            vals = {"act_valid": a_up, "act_ready": ctx.get(dut.act.ready),
                    "wgt_valid": w_up, "wgt_ready": ctx.get(dut.wgt.ready),
                    "prm_valid": p_up, "prm_ready": ctx.get(dut.prm.ready),
                    "res_valid": ctx.get(dut.res.valid), "res_ready": r_ready,
                    "busy": ctx.get(dut.busy)}
            r_word = ctx.get(dut.res.payload.as_value())
            vals["res_last"] = bool(vals["res_valid"]) and packer.unpack_result(r_word)[2] == 1
            for n in names:
                samples[n].append(int(bool(vals[n])))
            labels["act"].append(f"a{ai}" if a_up else None)
            labels["wgt"].append(f"w{wi % prog.k_beats}" if w_up else None)
            labels["prm"].append(f"p{pi}" if p_up else None)
            labels["res"].append(f"r{len(words)}" if vals["res_valid"] else None)
            a_take = a_up and vals["act_ready"]
            w_take = w_up and vals["wgt_ready"]
            p_take = p_up and vals["prm_ready"]
            r_take = vals["res_valid"] and r_ready
            await ctx.tick()
            cycle += 1
            if a_take:
                ai, a_up = ai + 1, False
                takes.append(cycle - 1)
            if w_take:
                wi, w_up = wi + 1, False
            if p_take:
                pi, p_up = pi + 1, False
            if r_take:
                words.append(r_word)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    y, err = packer.assemble(prog, words)
    y_ref, err_ref = gemm(x, layer, frac_bits=cfg.frac_bits, t_min=cfg.t_min, t_max=cfg.t_max,
                          out_stage="requant")
    exact = bool(np.array_equal(y, y_ref) and np.array_equal(err, err_ref))
    if not exact:
        raise RuntimeError("the handshake trace's GEMM does not match the golden model")
    return {"samples": samples, "labels": labels, "cycles": len(samples["busy"]),
            "tiles": len(prog.tiles), "k_beats": prog.k_beats, "M": M, "N": N, "K": K,
            "exact": exact,
            "last_beat_gap": takes[2 * prog.k_beats - 1] - takes[prog.k_beats - 1]}


def _bit_wave(bits: list[int]) -> str:
    out, prev = [], None
    for b in bits:
        out.append("." if b == prev else str(b))
        prev = b
    return "".join(out)


def _data_wave(labels: list[str | None]) -> tuple[str, list[str]]:
    wave, data, prev = [], [], object()
    for lab in labels:
        if lab is None:
            wave.append("x" if prev is not None else ".")
        elif lab == prev:
            wave.append(".")
        else:
            wave.append("=")
            data.append(lab)
        prev = lab
    return "".join(wave), data


def handshake_picture(trace: dict) -> dict:
    s, lab = trace["samples"], trace["labels"]
    sig = [{"name": "clk", "wave": "p" + "." * (trace["cycles"] - 1)}]
    for stream, valid, ready in (("act", "act_valid", "act_ready"),
                                 ("wgt", "wgt_valid", "wgt_ready"),
                                 ("prm", "prm_valid", "prm_ready")):
        wave, data = _data_wave(lab[stream])
        sig.append([stream,
                    {"name": f"{stream}__payload", "wave": wave, "data": data},
                    {"name": f"{stream}__valid", "wave": _bit_wave(s[valid])},
                    {"name": f"{stream}__ready", "wave": _bit_wave(s[ready])}])
    wave, data = _data_wave(lab["res"])
    sig.append(["res",
                {"name": "res__payload", "wave": wave, "data": data},
                {"name": "res__valid", "wave": _bit_wave(s["res_valid"])},
                {"name": "res__ready", "wave": _bit_wave(s["res_ready"])},
                {"name": "last (payload)", "wave": _bit_wave(s["res_last"])}])
    sig.append({"name": "busy", "wave": _bit_wave(s["busy"])})
    return {"signal": sig, "config": {"hscale": 1},
            "head": {"text": f"2-tile GEMM (M={trace['M']}, N={trace['N']}, K={trace['K']}, "
                             f"int8 requant), Amaranth simulation"}}


# -- block diagrams ---------------------------------------------------------------------------

_SVG_HEAD = ('<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">'
             '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" '
             'orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>'
             '<rect width="{w}" height="{h}" fill="white"/>')


def _box(x, y, w, h, text, sub="") -> str:
    out = (f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="#eef3fb" '
           f'stroke="#345"/><text x="{x + w / 2}" y="{y + h / 2 - (6 if sub else -4)}" '
           f'text-anchor="middle">{text}</text>')
    if sub:
        out += (f'<text x="{x + w / 2}" y="{y + h / 2 + 12}" text-anchor="middle" '
                f'font-size="10" fill="#555">{sub}</text>')
    return out


def _arrow(x1, y1, x2, y2, label="") -> str:
    out = (f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#345" '
           f'marker-end="url(#a)"/>')
    if label:
        out += (f'<text x="{(x1 + x2) / 2}" y="{(y1 + y2) / 2 - 4}" text-anchor="middle" '
                f'font-size="10">{label}</text>')
    return out


def pe_stages() -> list[tuple[str, str]]:
    """One (name, note) box per PE register stage, from `hw.pe.ProcessingElement.STAGES`
    (docs/ARCHITECTURE.md describes each component)."""
    from hw.pe import BeatRegister, LaneDecode, ProcessingElement, ScaleOperand

    notes = {LaneDecode: "at the column edge", BeatRegister: f"∥ {ScaleOperand.__name__}"}
    return [(stage.__name__, f"cycle {cycle + 1} of {stage.latency}" if stage.latency > 1
             else notes.get(stage, ""))
            for stage in (LaneDecode, *ProcessingElement.STAGES)
            for cycle in range(stage.latency)]


def pe_pipeline_svg(man: dict) -> str:
    stages = pe_stages()
    n = len(stages)
    if n != man["latency"]["pe"]:
        raise RuntimeError(f"the PE's components add up to {n} stages, the manifest says "
                           f"{man['latency']['pe']}")
    bw, gap = 118, 22
    w = 20 + n * (bw + gap) + 120
    parts = [_SVG_HEAD.format(w=w, h=170)]
    parts.append('<text x="10" y="20" font-weight="bold">PE pipeline '
                 f'({n} stages, one beat per cycle)</text>')
    parts.append('<text x="10" y="70" font-size="11">window</text>')
    parts.append('<text x="10" y="100" font-size="11">packet</text>')
    for i, (name, sub) in enumerate(stages):
        x = 70 + i * (bw + gap)
        parts.append(_box(x, 55, bw, 56, f"{i + 1}. {name}", sub))
        if i:
            parts.append(_arrow(x - gap, 83, x, 83))
    parts.append(_arrow(50, 66, 70, 76))
    parts.append(_arrow(50, 96, 70, 90))
    xe = 70 + n * (bw + gap) - gap
    parts.append(_arrow(xe, 83, xe + 40, 83))
    parts.append(f'<text x="{xe + 44}" y="80" font-size="11">result</text>')
    parts.append(f'<text x="{xe + 44}" y="94" font-size="11">(shadow reg)</text>')
    parts.append('<text x="70" y="140" font-size="11">window and packet are also forwarded '
                 'one register later to the right and lower neighbours (systolic).</text>')
    parts.append("</svg>")
    return "".join(parts) + "\n"


def systolic_svg(man: dict) -> str:
    rows, cols = man["rows"], man["cols"]
    cw, ch, gx, gy = 110, 56, 50, 40
    x0, y0 = 150, 90
    w = x0 + cols * (cw + gx) + 60
    h = y0 + rows * (ch + gy) + 90
    parts = [_SVG_HEAD.format(w=w, h=h)]
    parts.append(f'<text x="10" y="20" font-weight="bold">Output-stationary {rows}x{cols} '
                 'array: activations flow right, weights down</text>')
    for c in range(cols):
        x = x0 + c * (cw + gx)
        parts.append(f'<text x="{x + cw / 2}" y="{y0 - 46}" text-anchor="middle" '
                     f'font-size="11">wgt packet col {c}</text>')
        parts.append(f'<text x="{x + cw / 2}" y="{y0 - 34}" text-anchor="middle" '
                     f'font-size="10" fill="#555">+{c} cycles skew</text>')
        parts.append(_arrow(x + cw / 2, y0 - 28, x + cw / 2, y0))
    for r in range(rows):
        y = y0 + r * (ch + gy)
        parts.append(f'<text x="10" y="{y + ch / 2 - 2}" font-size="11">act row {r}</text>')
        parts.append(f'<text x="10" y="{y + ch / 2 + 12}" font-size="10" fill="#555">'
                     f'+{r} cycles skew</text>')
        parts.append(_arrow(100, y + ch / 2, x0, y + ch / 2))
        for c in range(cols):
            x = x0 + c * (cw + gx)
            parts.append(_box(x, y, cw, ch, f"PE({r},{c})", f"y[m0+{r}, n0+{c}]"))
            if c + 1 < cols:
                parts.append(_arrow(x + cw, y + ch / 2, x + cw + gx, y + ch / 2))
            if r + 1 < rows:
                parts.append(_arrow(x + cw / 2, y + ch, x + cw / 2, y + ch + gy))
    yb = y0 + rows * (ch + gy) + 10
    parts.append(f'<text x="{x0}" y="{yb + 20}" font-size="11">drain: one result row per '
                 'cycle, row 0 first, through the output stage (raw or requant) to res; '
                 'last on the tile\'s last row.</text>')
    parts.append("</svg>")
    return "".join(parts) + "\n"


# -- the Markdown -----------------------------------------------------------------------------

def _table(head: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _bits(offset: int, width: int) -> str:
    return f"[{offset + width - 1}:{offset}]" if width > 1 else f"[{offset}]"


def interface_markdown(man: dict, trace: dict, preset: str) -> str:
    lay, lat = man["layouts"], man["latency"]
    rows, cols = man["rows"], man["cols"]
    name = man["module"]
    widths = {p["name"]: p["width"] for p in man["ports"]}
    ctl_lo = lay["wgt_beat"]["ctl"]["offset"]
    L = [
        "# Interface of the generated core",
        "",
        "<!-- Generated by `make docs` (python -m flows.docs) from the manifest of the "
        f"`{preset}` preset and a simulation trace; do not edit by hand. -->",
        "",
        f"Facts below are those of the `{preset}` preset (`{name}`: {rows}×{cols} PEs, "
        f"`acc_bits` = {man['acc_bits']}); every other configuration has the same structure "
        "with the widths, offsets and latencies of its own manifest, `<name>.json`, which "
        "`python -m gen verilog` writes beside `<name>.v`. The host-side reference "
        "implementation of everything here is `gen/pack.py` (`Packer.pack`, "
        "`Packer.unpack_result`); [the tutorial](TUTORIAL.md) drives it end to end, and "
        "`tests/test_interface_rules.py` builds the beats from this page's rules and the "
        "manifest alone and checks them against the packer bit for bit.",
        "",
        "Files beside the Verilog: `<name>.json` (manifest), `<name>.vlt` (Verilator waivers), "
        "`<name>_inst.vh` (instantiation template); with `--axi-names` (`make verilog AXI=1`) "
        "also `<name>_axis.v`, the core under AXI4-Stream names, and `<name>_axis_inst.vh`.",
        "",
        "## Ports",
        "",
        *_table(["port", "dir", "width", "meaning"],
                [[f"`{p['name']}`", p["direction"], p["width"], _port_meaning(p["name"])]
                 for p in man["ports"]]),
        "",
        "A stream `s` is `s__payload`, `s__valid`, `s__ready`: a beat moves on a rising clock "
        "edge where `valid` and `ready` are both high (AXI4-Stream semantics).",
        "",
        "## Clock and reset",
        "",
        "One clock, `clk`; every register updates on its rising edge. `rst` is **synchronous "
        "and active high**: hold it high for at least one rising edge. It clears the beat "
        "control only (beat counters, valid bits, drain and parameter state); datapath "
        "registers are reset-less and are overwritten before use. A reset in the middle of a "
        "GEMM abandons it: restart from the first beat of a tile.",
        "",
        "## The mode word",
        "",
        "`mode` describes the whole GEMM. Set it before the first beat and **hold it stable "
        "while `busy` is high** (a tile in flight or draining); change it only when `busy` is "
        "low.",
        "",
        "![mode word](interface/mode.svg)",
        "",
        *_table(["field", "bits", "value"],
                [[f"`{n}`", _bits(o, w), _mode_meaning(n, man)]
                 for n, o, w in _struct_fields(lay["mode"])]),
        "",
        "with `step` the K elements a PE covers per beat in this mode (table below). K must "
        "be a multiple of `step` and of G; for `pow2` G is 32 (one E8M0 scale per block). "
        "A mode word naming a format, pattern or scale kind the configuration does not enable, "
        "MX activations or requant the build lacks, `group_beats` of 0 or above `k_beats`, "
        "`k_beats · step` above `k_max`, or a `pow2` group other than one MX block is illegal: "
        "the core still takes the GEMM's beats and returns all its rows, every one with the "
        "error flag set (`k_beats` = 0 closes a tile on every beat). Check modes on the host "
        "too (`ArrayConfig.check_mode`, done by `Packer.pack`).",
        "",
        "Codes:",
        "",
        *_table(["field", "codes"],
                [[f"`{k}`", ", ".join(f"{n} = {v}" for n, v in
                                      sorted(man["codes"][k].items(), key=lambda t: t[1]))]
                 for k in ("format", "sparsity", "scale")]),
        "",
        "## Beats",
        "",
        "### Activation beat (`act__payload`, "
        f"{widths['act__payload']} bits)",
        "",
        "![activation beat](interface/act_beat.svg)",
        "",
        "`x[r][p]` (int8, `window` = "
        f"{man['config']['window']} per row): activation `X[m0 + r, b·step + v]` sits at "
        "window position `p = k_pos[v]` of the mode's lane order (manifest `lane_map`, "
        "below), every other position is 0; `x_exp[r]` (only with `pow2` enabled) is the E8M0 "
        "exponent of the MXINT8 block (32 K elements) that beat falls in, 127 when MX "
        "activations are off.",
        "",
        "### Weight beat (`wgt__payload`, "
        f"{widths['wgt__payload']} bits: `col`, one packet per column, column 0 at bit 0, "
        f"{sum(f['width'] for f in lay['packet'].values())} bits each)",
        "",
        "![weight packet of one column](interface/wgt_packet.svg)",
        "",
        "* `codes[s]`: 8-bit slots. Beat `b` carries the layer's code rows "
        "`b·lanes … b·lanes + lanes − 1` of column `n0 + c` (`lanes` = lanes used in the "
        "mode); row `b·lanes + l` goes to the multiplier `(slot, quarter) = lane_mult[l]` "
        "of the mode's lane order, i.e. slot `slot` at bits `(quarter // (4 / "
        "lanes_per_slot)) · bits` (pictures below); unused positions are 0.",
        "* `idx[lane_idx[l]]` (with N:M enabled): the layer's `idx` of row `b·lanes + l`, its "
        "position inside its block of M; dense modes ignore it. That row is element "
        "`k = ((b·lanes + l) // N)·M + idx`, whose activation the activation beat holds at "
        "`k_pos[k mod step]`. The rows of a block keep the layer's order, indices strictly "
        "increasing (SPEC §3), so the block's `j`-th row has `j ≤ idx ≤ M − N + j`; the "
        "hardware wires only those positions and reports any other index as an invalid code "
        "(the error flag of the outputs the beat reaches).",
        "* The **lane order** (`lane_map` in the manifest, one entry `\"<format>/<sparsity>\"` "
        "per mode: `lane_mult`, `lane_idx`, `k_pos`) is chosen so that every multiplier reads "
        "only a few window positions (docs/ARCHITECTURE.md); a host packs by it and nothing "
        "else. Example, `int8/2:4`: `lane_mult` = "
        f"{man['lane_map'].get('int8/2:4', {}).get('lane_mult', '—')}, `k_pos` = "
        f"{man['lane_map'].get('int8/2:4', {}).get('k_pos', '—')}.",
        "* `scale`: the column's group scale for the group this beat falls in (signed int "
        "scale, or E8M0 exponent in the low 8 bits for `pow2`); `zero`: the uint4 zero point "
        "of that group.",
        f"* `ctl` (bits {ctl_lo}…{ctl_lo + 2} of the beat, after the packets): `group_last` "
        "(bit 0) and `tile_last` (bit 1) of a scheduled GEMM (`mode.sched` = 1, block "
        "sparsity): the beat closes its scale group / its tile. Ignored with `sched` = 0, "
        "where the beat counters place the ends; set them to 0 there. `gemm_last` (bit 2): "
        "the GEMM's last beat, read only in-band (`mode.inband`, below).",
        "",
        "Lanes of one slot byte per format:",
        "",
    ]
    for fmt in man["slot_lanes"]:
        L += [f"`{fmt}`: ![{fmt} slot](interface/slot_{fmt}.svg)", ""]
    L += [
        "Modes of this configuration (`step` = dense-equivalent K per beat, `lanes` = lanes "
        "used per packet):",
        "",
        *_table(["mode", "step", "lanes", "peak MACs/cycle"],
                [[f"`{m['name']}`", m["step_k"], m["lanes_used"], m["peak_macs_per_cycle"]]
                 for m in man["modes"] if not m["mx_act"]]),
        "",
        "`-mxact` variants of the `pow2` modes (MXINT8 activations, `mode.mx_act` = 1) have "
        "the same step and lanes.",
        "",
        f"### Requant parameters (`prm__payload`, {widths['prm__payload']} bits: one record "
        "per column, column 0 at bit 0)",
        "",
        "![requant parameters of one column](interface/prm_column.svg)",
        "",
        "`bias` (int32, accumulator units), `mult` (M0 in [2^30, 2^31)), `shift` (−31…30, "
        "positive = left), `zp` (int32): `golden requant-params` computes them from float "
        "scales, see [NUMERICS.md](NUMERICS.md).",
        "",
        f"### Result beat (`res__payload`, {widths['res__payload']} bits)",
        "",
        "![result beat](interface/res_beat.svg)",
        "",
        f"`value[c]` is signed `acc_bits` = {man['acc_bits']} wide: the raw accumulator, or in "
        "requant mode the int8 output sign-extended. `err[c]` is the column's error flag, "
        "`last` marks the tile's last row.",
        "",
        "## Stream order of a GEMM",
        "",
        "`Y[M, N] = X[M, K] · W[K, N]` runs as tiles of `rows × cols` outputs; M and N are "
        "padded up to whole tiles (zero activations, zero-valued weight columns). The host "
        "streams:",
        "",
        "```",
        "for n0 in 0, cols, 2·cols, ...          # n-tiles outer",
        "    for m0 in 0, rows, 2·rows, ...      # m-tiles inner",
        "        prm: one beat (requant mode only) with the parameters of columns n0 … n0+cols−1",
        "        for b in 0 … k_beats−1:          # one tile = k_beats beats",
        "            act: beat b of rows m0 … m0+rows−1",
        "            wgt: beat b of columns n0 … n0+cols−1   # re-streamed for every m-tile",
        "```",
        "",
        "Results come back in the same tile order: per tile `rows` result beats, row 0 first "
        "(outputs `Y[m0 + r, n0 … n0 + cols − 1]`), `last` = 1 on row `rows − 1` only.",
        "",
        "**Block sparsity** (SPEC §3; `mode.sched` = 1, `k_beats` and `group_beats` still "
        "those of the whole K): a tile streams only the beats `b` whose k-range "
        "`b·step … b·step + step − 1` meets a kept block of some column of its column tile, "
        "in increasing `b`, with the same act and wgt contents as above; the weight beat's "
        "`ctl.group_last` marks the last streamed beat of each scale group, `ctl.tile_last` "
        "the tile's last. A tile streams at least one beat (beat 0 when all its blocks are "
        "dropped), so its rows still come out. With `pow2` scales the host also streams the "
        "beats of a group whose canonical scale (127) would raise an error flag with some "
        "row's activation exponent (NaN, or outside the exponent window), so the flags equal "
        "the golden model's. `Packer.pack` does all of this.",
        "",
        "**In-band modes** (`mode` port = only `inband` = 1): every GEMM's mode word (the "
        "same layout, `sched`, `k_beats`, `group_beats`, `requant` included) is one beat of "
        "the `dsc` stream, and the GEMMs' beats follow each other on `act`/`wgt` without a "
        "gap: the weight beat with `ctl.gemm_last` = 1 ends a GEMM, and `dsc` is ready while "
        "no descriptor is loaded or as that beat is taken. The mode travels through the array "
        "with the beats (each column decoder and PE reads a delayed copy), a tile's output "
        "stage and mode check are captured with its last beat, so consecutive GEMMs may "
        "differ in every field; results come out in GEMM order. The only cost is one cycle: a "
        "beat is never taken in the cycle after the mode changed (static or in-band). `prm` "
        "beats of all requant GEMMs follow each other in tile order.",
        "",
        "## Handshakes and the rule a DMA must follow",
        "",
        "`act` and `wgt` are **joined**: a beat is taken from both at once, when both are "
        "valid, so `act__ready` = `wgt__ready` and each depends combinationally on the "
        "*other* stream's `valid`:",
        "",
        "```",
        "act__ready = wgt__ready = act__valid & wgt__valid & ~(last beat of a tile & previous "
        "tile still draining)",
        "```",
        "",
        "A DMA (or any source) must therefore:",
        "",
        "1. raise `valid` when it has a beat, **without waiting for `ready`** (AXI4-Stream's "
        "own rule; a source that waits for `act__ready` before raising `act__valid` "
        "deadlocks), and keep the beat and `valid` until the beat is taken;",
        "2. send exactly the same number of beats on `act` and `wgt`, in the stream order "
        "above: beat `i` of `act` pairs with beat `i` of `wgt`;",
        "3. in requant mode, send the tile's `prm` beat at any time before or during the "
        "tile: `prm` is a one-deep register, ready while empty, emptied when the tile's last "
        "row is drained; the drain waits for it.",
        "",
        "`res` may be back-pressured freely (`res__ready` low); nothing is lost or duplicated. "
        "The next tile's *last* beat is held back while the previous tile is still draining.",
        "",
        f"Trace of a real 2-tile GEMM (M = {trace['M']}, N = {trace['N']}, K = {trace['K']}, "
        f"int8 requant, `k_beats` = {trace['k_beats']}) on the Amaranth simulator, with the "
        "`act` and `wgt` sources raising `valid` on different cycles, a late `prm` and a "
        f"throttled `res__ready`; {trace['cycles']} cycles, results bit-exact against the "
        "golden model. Payload labels: `aI` act beat I, `wJ` weight beat J of the tile, `pT` "
        "the parameters of tile T, `rR` result beat R.",
        "",
        "![2-tile handshake](interface/handshake.svg)",
        "",
        "## Latencies",
        "",
        *_table(["quantity", "cycles"], [
            ["PE pipeline", lat["pe"]],
            ["last beat of a tile taken → the drain starts, row 0 holds the result "
             "(`drain_delay`)",
             lat["drain_delay"]],
            ["last beat taken → first result row valid, no backpressure", lat["first_result"]],
            ["requant pipeline (inside the above)", lat["requant"]],
        ]),
        "",
        f"A tile takes `k_beats` cycles of beats when both streams are valid; its {rows} "
        "result rows leave one per cycle while `res__ready` is high. Beats of the next tile "
        "flow while a tile drains, except its last beat, which waits until the previous "
        "tile's last row has entered the output stage: at least `drain_delay + rows + 1` = "
        f"{lat['drain_delay'] + rows + 1} cycles after the previous tile's last beat (more "
        "when `res` back-pressure fills the output stage; the trace above measures "
        f"{trace['last_beat_gap']}). Tiles with `k_beats` at least that long stream back to "
        "back.",
        "",
        "## The error flag",
        "",
        "`err[c]` of a result row is set when the output of that column is not a number the "
        "contract defines: an invalid ternary code (`0b10`), a NaN E8M0 scale (`0xFF`), a "
        "`pow2` exponent outside the window `[t_min, t_max]`, or (requant) an `acc + bias` "
        "that saturates int32 when shifted left. The value stays defined (an erroneous "
        "contribution counts 0, a saturated requant input is the int32 bound), so it matches "
        "the golden model bit for bit, but it is not the product the layer stands for. "
        "Details: [NUMERICS.md](NUMERICS.md). The flag is also set by a weight beat no valid "
        "layer produces: an N:M index outside its block slot's reach (`j ≤ idx ≤ M − N + j` "
        "for the block's `j`-th row, SPEC §3); that row's value is then unspecified.",
        "",
        "## Block diagrams",
        "",
        "![PE pipeline](interface/pe_pipeline.svg)",
        "",
        "![systolic dataflow](interface/systolic.svg)",
        "",
    ]
    return "\n".join(L)


def _port_meaning(name: str) -> str:
    return {
        "clk": "clock, rising edge", "rst": "synchronous reset, active high",
        "mode": "mode word of the GEMM (hold while `busy`)",
        "dsc__payload": "in-band mode word of the next GEMM (`mode.inband`)",
        "prm__payload": "requant parameters of every column (one beat per tile)",
        "act__payload": "activation beat", "wgt__payload": "weight beat",
        "res__payload": "result row", "busy": "a tile in flight or draining",
    }.get(name, "stream handshake")


def _mode_meaning(field: str, man: dict) -> str:
    return {
        "fmt": "format code (table below)", "sparsity": "sparsity code",
        "scale": "scale kind code", "mx_act": "1: MXINT8 activations (`x_exp` used)",
        "requant": "1: int8 requant output stage (needs `prm`)",
        "group_beats": "beats per scale group, `G / step`",
        "k_beats": "beats per tile, `K / step`",
        "sched": "1: group and tile ends from the weight beats' `ctl` (block sparsity), "
                 "0: from the beat counters",
        "inband": "`mode` port only: 1, every GEMM's mode word comes from `dsc` (in-band)",
    }[field]


# -- driver -----------------------------------------------------------------------------------

def generate(cfg, docs_dir: Path, preset: str, *, render: bool = True) -> dict[str, Path]:
    """Write ``INTERFACE.md`` and ``interface/*.{json,svg}`` into ``docs_dir``."""
    from gen.emit import manifest

    man = manifest(cfg)
    trace = handshake_trace(cfg)
    pics = register_pictures(man)
    pics["handshake"] = handshake_picture(trace)
    out = docs_dir / PICTURES
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, source in pics.items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(source, indent=1, sort_keys=True) + "\n")
        written[name] = path
        if render:
            import yowasp_wavedrom
            (out / f"{name}.svg").write_text(yowasp_wavedrom.render(source))
    (out / "pe_pipeline.svg").write_text(pe_pipeline_svg(man))
    (out / "systolic.svg").write_text(systolic_svg(man))
    md = docs_dir / "INTERFACE.md"
    md.write_text(interface_markdown(man, trace, preset))
    written["markdown"] = md
    return written


def stale_files(cfg, docs_dir: Path, preset: str) -> list[str]:
    """Generated files that differ from what the generator writes now (sources and Markdown;
    block diagrams too, SVG renderings of the WaveDrom sources are not compared).
    """
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(cfg, fresh, preset, render=False)
        stale = []
        for path in sorted(fresh.rglob("*")):
            if path.is_dir():
                continue
            rel = path.relative_to(fresh)
            old = docs_dir / rel
            if not old.exists() or old.read_bytes() != path.read_bytes():
                stale.append(str(rel))
        return stale


def main(argv=None) -> int:
    """Command-line entry point (``make docs``)."""
    p = Parser(prog="python -m flows.docs", description=__doc__.splitlines()[0])
    add_config_args(p)
    p.set_defaults(preset="tiny")
    p.add_argument("-o", "--out", default=str(ROOT / "docs"), metavar="DIR",
                   help="docs directory (default: the repository's docs/)")
    p.add_argument("--check", action="store_true",
                   help="only check that the files in DIR are up to date (exit 1 if not)")
    args = p.parse_args(argv)
    try:
        cfg = config_from_args(args)
        docs_dir = Path(args.out)
        if args.check:
            stale = stale_files(cfg, docs_dir, args.preset)
            if stale:
                print(f"python -m flows.docs: out of date (run `make docs`): "
                      f"{', '.join(stale)}", file=sys.stderr)
                return 1
            print("docs up to date")
            return 0
        for name, path in generate(cfg, docs_dir, args.preset).items():
            print(f"[docs] wrote {name:12s} {path}")
        return 0
    except ConfigError as exc:
        print(f"python -m flows.docs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
