"""The PE array with its stream interfaces, drain sequencer and output stage."""


from amaranth.hdl import (
    Cat,
    ClockSignal,
    Const,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    signed,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import FORMAT_CODES, MX_BLOCK, SCALE_CODES, SPARSITY_CODES, ArrayConfig
from hw.layouts import Layouts
from hw.pe import (
    REPLICA,
    ActivationDecode,
    ExponentSum,
    LaneDecode,
    ProcessingElement,
    decoded_layout,
    pow2_offset,
)
from hw.requant import RequantStage

__all__ = ["OutputStage", "Core", "pe_module_name", "core_signature",
           "core_drain_delay", "core_latency", "output_latency", "legal_mode_terms"]

class OutputStage(wiring.Component):
    """Raw or requantized output of one drained row, as a valid/ready stream.

    A row enters through ``i`` with its ``requant`` flag (raw or requantized: the flag
    travels with the row, so consecutive tiles may differ) and leaves ``latency`` advancing
    cycles later on ``o``. Behind the pipeline's output register a skid register takes the
    row ``o`` did not take; the pipeline advances while the skid register is empty, so
    ``i.ready`` and every stage's enable come from one register instead of ``o.ready``, and
    no row is lost or duplicated under any backpressure. Nothing waits in the skid register
    while ``o`` takes every row, so the latency is unchanged; ``capacity`` rows fit inside.

    That register is kept in copies too, equal to it in every cycle: per column one for each
    pipeline stage (that stage of the column's requant pipeline and raw delay line advance
    on it), one for the column's skid register and output choice, and one for ``col_ready``
    (the core loads a column's drained value on it), so no net enables more than one stage of
    one column.
    """

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        lay = Layouts(cfg)
        super().__init__({
            "requant": In(1),
            "params": In(lay.col_params).array(cfg.cols),
            "i": In(stream.Signature(lay.res_beat)),
            "col_ready": Out(cfg.cols),
            "o": Out(stream.Signature(lay.res_beat)),
        })

    @property
    def latency(self) -> int:
        """Advancing cycles from ``i`` to ``o`` (`output_latency`)."""
        return output_latency(self._cfg)

    @property
    def capacity(self) -> int:
        """Rows the stage holds at most: one per pipeline stage and the skid register."""
        return self.latency + 1

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        lat = self.latency
        lay = Layouts(cfg)
        skid = Signal(lay.res_beat, name="skid", reset_less=True)
        # Empty rather than full: the stages' clock enable is then this register itself (an
        # inverted one is not one `flows/ecp5_dsp.py` packs into the requant's MULT18X18D).
        skid_empty = Signal(name="skid_empty", init=1)
        # Copies per column: stage k's enable (k < lat), the skid's (lat), col_ready's (lat + 1).
        copies = [[Signal(name=f"skid_empty_col{c}_{k}", init=1, attrs=REPLICA)
                   for k in range(lat + 2)] for c in range(cfg.cols)]
        adv = Signal()
        m.d.comb += [adv.eq(skid_empty), self.i.ready.eq(adv),
                     self.col_ready.eq(Cat(col[lat + 1] for col in copies))]
        # Raw path and control: a delay line of `lat` stages in step with the requant pipeline.
        stage = self.i.payload
        valid = self.i.valid
        requant = self.requant  # the row's own output stage travels with it
        for k in range(lat):
            nxt = Signal.like(self.i.payload, name=f"raw{k}", reset_less=True)
            nv = Signal(name=f"valid{k}")
            nrq = Signal(name=f"requant{k}", reset_less=True)
            with m.If(adv):
                m.d.sync += [nxt.last.eq(stage.last), nv.eq(valid), nrq.eq(requant)]
            for c, col in enumerate(copies):
                with m.If(col[k]):
                    m.d.sync += [nxt.value[c].eq(stage.value[c]), nxt.err[c].eq(stage.err[c])]
            stage, valid, requant = nxt, nv, nrq
        row = Signal(lay.res_beat, name="row")  # the output register's row
        m.d.comb += row.last.eq(stage.last)
        for c in range(cfg.cols):
            if cfg.requant:
                rq = RequantStage(cfg)
                m.submodules[f"requant{c}"] = rq
                m.d.comb += [rq.advance.eq(Cat(copies[c][:lat])),
                             rq.acc.eq(self.i.payload.value[c]),
                             rq.params.eq(self.params[c])]
                m.d.comb += [
                    row.value[c].eq(Mux(requant, rq.y, stage.value[c])),
                    row.err[c].eq(stage.err[c] | (requant & rq.err)),
                ]
            else:
                m.d.comb += [row.value[c].eq(stage.value[c]), row.err[c].eq(stage.err[c])]
        # The skid register holds the older row while it is full, so rows leave in order.
        # Each column's part of the skid register and of the output choice on its own copy.
        m.d.comb += [self.o.valid.eq(~skid_empty | valid),
                     self.o.payload.last.eq(Mux(skid_empty, row.last, skid.last))]
        for c, col in enumerate(copies):
            m.d.comb += [self.o.payload.value[c].eq(Mux(col[lat], row.value[c], skid.value[c])),
                         self.o.payload.err[c].eq(Mux(col[lat], row.err[c], skid.err[c]))]
        for c, col in enumerate(copies):
            with m.If(col[lat] & valid & ~self.o.ready):
                m.d.sync += [skid.value[c].eq(row.value[c]), skid.err[c].eq(row.err[c])]
        # Each copy's next value from its column's own copy: no net from the register that
        # drives `i.ready` (towards the core) reaches another column's copies.
        for flags, own in [([skid_empty], skid_empty), *((col, col[lat]) for col in copies)]:
            with m.If(own & valid & ~self.o.ready):
                m.d.sync += [e.eq(0) for e in flags]
            with m.Elif(~own & self.o.ready):
                m.d.sync += [e.eq(1) for e in flags]
        with m.If(skid_empty & valid & ~self.o.ready):
            m.d.sync += skid.last.eq(row.last)
        return m


class _PEInstance:
    """Signals of one ``<name>_pe`` Verilog instance, shaped like a `ProcessingElement`."""

    def __init__(self, cfg: ArrayConfig, m: Module, name: str):
        lay = Layouts(cfg)
        self.mode = Signal(lay.mode, name=f"{name}_mode")
        self.row_in = Signal(lay.row_beat, name=f"{name}_row_in")
        self.wgt_in = Signal(decoded_layout(cfg), name=f"{name}_wgt_in")
        self.row_out = Signal(lay.row_beat, name=f"{name}_row_out")
        self.wgt_out = Signal(decoded_layout(cfg), name=f"{name}_wgt_out")
        self.result = Signal(signed(cfg.acc_bits), name=f"{name}_result")
        self.result_err = Signal(name=f"{name}_result_err")
        m.submodules[name] = Instance(
            pe_module_name(cfg),
            i_clk=ClockSignal(), i_rst=ResetSignal(),
            i_mode=self.mode, i_row_in=self.row_in, i_wgt_in=self.wgt_in,
            o_row_out=self.row_out, o_wgt_out=self.wgt_out,
            o_result=self.result, o_result_err=self.result_err)


def pe_module_name(cfg: ArrayConfig) -> str:
    """Verilog module name of the PE of a configuration (``<name>_pe``)."""
    return f"{cfg.name}_pe"


def core_signature(cfg: ArrayConfig) -> wiring.Signature:
    """The ports of `Core` for a configuration (see its docstring)."""
    lay = Layouts(cfg)
    return wiring.Signature({
        "mode": In(lay.mode),
        "dsc": In(stream.Signature(lay.mode)),
        "prm": In(stream.Signature(data.ArrayLayout(lay.col_params, cfg.cols))),
        "act": In(stream.Signature(lay.act_beat)),
        "wgt": In(stream.Signature(lay.wgt_beat)),
        "res": Out(stream.Signature(lay.res_beat)),
        "busy": Out(1),
    })


def core_drain_delay(cfg: ArrayConfig) -> int:
    """`Core.drain_delay` of a configuration, without building a core."""
    # entry register + column skew + forwarding to PE(0, cols-1) + PE pipeline (which counts
    # the column decoder, LaneDecode): the last PE of row 0. Row r enters r cycles after row 0
    # and is drained r cycles after it, so every row is read as it finishes.
    return 1 + (cfg.cols - 1) + ProcessingElement.latency


def output_latency(cfg: ArrayConfig) -> int:
    """Latency of the `OutputStage`.

    The requant pipeline when generated (raw rows travel in step with it), else one register.
    """
    return RequantStage.latency if cfg.requant else 1


def core_latency(cfg: ArrayConfig) -> int:
    """`Core.latency` of a configuration, without building a core."""
    return core_drain_delay(cfg) + 1 + output_latency(cfg)


def legal_mode_terms(cfg: ArrayConfig):
    """Every legal ``(fmt, sparsity, scale)`` code triple of ``cfg`` with its beat ``step``.

    The core raises the error flag of every result of a GEMM whose mode word is not one of
    these (or breaks the beat-count rules of `Core`): a build that does not enable a mode
    never returns silent zeros for it.
    """
    seen = {}
    for mode in cfg.modes:
        key = (FORMAT_CODES[mode.fmt], SPARSITY_CODES[mode.sparsity],
               SCALE_CODES[mode.scale_kind])
        seen[key] = (mode, cfg.step_k(mode.fmt, mode.sparsity))
    return seen


class Core(wiring.Component):
    """The unified compression PE array with stream interfaces.

    Ports
    -----
    mode : In(Layouts.mode)
        Per-GEMM mode; hold it stable while ``busy``. With ``mode.inband`` the modes come
        from ``dsc`` instead.
    dsc : In(stream)
        In-band descriptors (``mode.inband``): one mode word per GEMM, taken when the previous
        GEMM's last beat (weight beat ``ctl.gemm_last``) is taken, so GEMMs with different
        modes run back to back; the mode travels through the array with the beats.
    prm : In(stream)
        Requant parameters (bias, M0, shift, zero point) of every output column, one beat per
        tile in requant mode (none in raw mode); taken when that tile starts to drain.
    act : In(stream)
        Activation beats: a window of ``window`` int8 per row (+ MX exponent per row).
    wgt : In(stream)
        Weight beats: one packet per column (codes, N:M indices, group scale, zero point) and
        the beat's group/tile ends (read with ``mode.sched``).
    res : Out(stream)
        One beat per output row of a tile, row 0 first, ``last`` on the tile's last row.
    busy : Out(1)
        A tile is in flight or draining.

    With ``pe_instances`` the PEs are instances of one Verilog module ``<name>_pe`` (emitted
    once beside the core, see ``gen.emit``) instead of elaborated copies: the Verilog stays
    small and simulators compile the PE once.

    A beat is taken when both ``act`` and ``wgt`` are valid. Beat ``b`` of a tile covers
    ``k = b·step … b·step + step − 1`` (step = peak MACs per PE per cycle in this mode); group
    and tile boundaries come from ``mode.group_beats`` and ``mode.k_beats``, or with
    ``mode.sched`` from the weight beat's ``ctl`` (``group_last``, ``tile_last``): a block-sparse
    GEMM omits the beats of k-ranges dropped for every column of a tile. Output-stationary
    systolic array: activations flow right, weights down; a tile's results drain through the
    PEs' shadow registers while the next tile computes (from ``drain_delay`` cycles after its
    last beat, ``rows`` rows, each as it finishes at the fastest, as fast as ``res`` accepts
    them).
    """

    def __init__(self, cfg: ArrayConfig, *, pe_instances: bool = False):
        self._cfg = cfg
        self._lay = Layouts(cfg)
        self._pe_instances = pe_instances
        super().__init__(core_signature(cfg))

    @property
    def config(self) -> ArrayConfig:
        """The configuration this core was built for."""
        return self._cfg

    @property
    def drain_delay(self) -> int:
        """Cycles from taking a tile's last beat until the drain starts.

        Then row 0's PEs hold that tile's result; row ``r``'s hold it ``r`` cycles later, as
        the drain reaches them (one row per cycle at the fastest).
        """
        return core_drain_delay(self._cfg)

    @property
    def latency(self) -> int:
        """Cycles from taking a tile's last beat to its first result row (no backpressure)."""
        return core_latency(self._cfg)

    #: Cycles from a beat entering a PE (``row_in``) to where the PE reads its mode.
    MODE_READ = ProcessingElement.mode_read

    def _effective_mode(self, m: Module, gemm_end):
        """The mode of the beat taken now: the ``mode`` port, or with ``mode.inband`` the
        descriptor taken from ``dsc`` (the next one loads as a GEMM's last beat is taken).

        Returns ``(mode, prev, stable, inband_stable)``: ``prev`` is ``mode`` registered;
        ``stable`` is low for one cycle after the mode changes, and no beat is taken then, so
        every beat has the mode of the cycle before it too: ``prev`` equals ``mode`` whenever a
        beat is taken. ``inband_stable`` is ``stable`` where ``mode.inband`` is set.
        """
        lay = self._lay
        inband = self.mode.inband
        cur = Signal(lay.mode)
        have = Signal()
        m.d.comb += self.dsc.ready.eq(inband & (~have | gemm_end))
        with m.If(gemm_end):
            m.d.sync += have.eq(0)
        with m.If(self.dsc.valid & self.dsc.ready):
            m.d.sync += [cur.eq(self.dsc.payload), have.eq(1)]
        mode = Signal(lay.mode)
        m.d.comb += mode.eq(Mux(inband, cur, self.mode))
        prev = Signal(lay.mode)
        m.d.sync += prev.eq(mode)
        # The port compared with the previous mode; the descriptor's compare registered a
        # cycle ahead: next cycle ``cur`` is the descriptor loaded now or itself, ``prev`` the
        # mode now, so both compares run beside ``take`` and the load picks one. (From ``prev``,
        # the wide compare in series with ``take`` and the descriptor's load enable was the
        # routed critical path of the int8 arrays.) Both start at 0: equal after reset.
        same_port = Signal()
        m.d.comb += same_port.eq(self.mode.as_value() == prev.as_value())
        same_cur = Signal(name="same_cur", init=1)
        load = self.dsc.valid & self.dsc.ready
        m.d.sync += same_cur.eq(Mux(load, self.dsc.payload.as_value() == mode.as_value(),
                                    cur.as_value() == mode.as_value()))
        stable, inband_stable = Signal(), Signal()
        m.d.comb += [inband_stable.eq(same_cur & have),
                     stable.eq(Mux(inband, inband_stable, same_port))]
        return mode, prev, stable, inband_stable

    def _mode_taps(self, m: Module, mode):
        """``mode`` delayed by 0 … the array's deepest mode read, one register per cycle."""
        depth = 1 + self.MODE_READ + (self._cfg.rows - 1) + (self._cfg.cols - 1)
        taps = [mode]
        for k in range(depth):
            nxt = Signal(self._lay.mode, name=f"mode_d{k + 1}", reset_less=True)
            m.d.sync += nxt.eq(taps[-1])
            taps.append(nxt)
        return taps

    def _pow2_offsets(self, m: Module, taps) -> list:
        """Per column, the mode's part of the pow2 shift offset (`pow2_offset`) in step with
        its decoder's packet (tap ``c + 2``); empty without pow2 scales.

        Formed once from the registered mode and delayed beside the taps, so no column
        decoder adds the mode's logic to the fan-out of its mode tap.
        """
        if "pow2" not in self._cfg.scale_kinds:
            return []
        offsets = [Signal(ExponentSum.u_shape, name="u_offset0", reset_less=True)]
        m.d.sync += offsets[0].eq(pow2_offset(m, self._cfg, taps[1]))
        for c in range(1, self._cfg.cols):
            offsets.append(Signal(ExponentSum.u_shape, name=f"u_offset{c}", reset_less=True))
            m.d.sync += offsets[c].eq(offsets[c - 1])
        return offsets

    def elaborate(self, platform):
        cfg, lay = self._cfg, self._lay
        m = Module()
        gemm_end = Signal()
        mode, mode_prev, mode_stable, inband_stable = self._effective_mode(m, gemm_end)
        # Beat b taken at t reaches column c's decoder at t + 1 + c and PE(r, c) at
        # t + 1 + r + c (its row_in); each reads the mode of its own beat from a tap.
        taps = self._mode_taps(m, mode)

        # ---- mode check -------------------------------------------------------------------
        # Read from the registered mode, which is the taken beat's mode too (`_effective_mode`):
        # from the mode mux, the in-band bit's fan-out into the compares was the routed critical
        # path of `tiny` and `dense_int8`.
        mode_ok = Signal()
        m.d.comb += mode_ok.eq(self._mode_legal(m, mode_prev))

        # ---- input join and beat counters -------------------------------------------------
        beat = Signal(lay.count_bits)
        gbeat = Signal(lay.count_bits)
        pending = Signal()  # a tile's last beat was taken and its results are not drained yet
        # k_beats = 0 is illegal (flagged); each beat then closes a tile, so nothing hangs.
        # A scheduled GEMM (mode.sched: block sparsity, beats of dropped blocks omitted) takes
        # its group and tile ends from the weight beat instead of the counters.
        # A beat's mode is also the mode of the cycle before it (`_effective_mode`), so the
        # tile and group end compares read registered copies of the counts' last values (the
        # subtractions stay out of the path to ``take``).
        wctl = self.wgt.payload.ctl
        k_last = Signal.like(mode.k_beats, name="k_last", reset_less=True)
        k_zero = Signal(name="k_zero", reset_less=True)
        g_last = Signal.like(mode.group_beats, name="g_last", reset_less=True)
        sched = Signal(name="sched", reset_less=True)
        m.d.sync += [k_last.eq(mode.k_beats - 1), k_zero.eq(mode.k_beats == 0),
                     g_last.eq(mode.group_beats - 1), sched.eq(mode.sched)]
        is_last = Signal()
        group_last = Signal()
        m.d.comb += [
            is_last.eq(Mux(sched, wctl.tile_last, (beat == k_last) | k_zero)),
            group_last.eq(Mux(sched, wctl.group_last | wctl.tile_last, gbeat == g_last)),
        ]
        take = Signal()
        can_take = Signal()
        m.d.comb += [can_take.eq(self.act.valid & self.wgt.valid & ~(is_last & pending)),
                     take.eq(can_take & mode_stable)]
        # A GEMM's end loads the next descriptor, in-band only, where `take` is `can_take`
        # with the descriptor's registered compare: written so, the port's compare (a
        # false path there) stays off the descriptor's load enable.
        m.d.comb += [self.act.ready.eq(take), self.wgt.ready.eq(take),
                     gemm_end.eq(can_take & inband_stable & wctl.gemm_last & self.mode.inband)]

        ctl = Signal(lay.ctl)
        m.d.comb += [
            ctl.valid.eq(take),
            ctl.group_first.eq(gbeat == 0),
            ctl.group_last.eq(group_last),
            ctl.tile_first.eq(beat == 0),
            ctl.tile_last.eq(is_last),
        ]
        with m.If(take):
            m.d.sync += [
                beat.eq(Mux(is_last, 0, beat + 1)),
                gbeat.eq(Mux(ctl.group_last | is_last, 0, gbeat + 1)),
            ]

        # Entry register: one row beat per row, one packet per column.
        rows_in = []
        for r in range(cfg.rows):
            # Data registers are reset-less, the beat control is reset.
            rb = Signal(lay.row_beat, name=f"row_entry{r}", reset_less=True)
            rb_ctl = Signal(lay.ctl, name=f"row_entry_ctl{r}")
            m.d.sync += rb_ctl.eq(ctl)
            if cfg.fp8_activations:  # decoded once per row, at the edge
                x_dec = ActivationDecode(cfg)
                m.submodules[f"row_decode{r}"] = x_dec
                m.d.comb += [x_dec.codes.eq(self.act.payload.x[r]), x_dec.x_fmt.eq(mode.x_fmt)]
                m.d.sync += [rb.x.eq(x_dec.window), rb.x_bad.eq(x_dec.bad)]
            else:
                m.d.sync += rb.x.eq(self.act.payload.x[r])
            if lay.has_x_exp:
                # 127 (a shift of 0) unless the mode has MX activations: the PEs' exponent
                # sum adds it as it comes (`ExponentSum`). ``mode_prev`` is the taken beat's
                # mode (`_effective_mode`).
                m.d.sync += rb.x_exp.eq(Mux(mode_prev.mx_act, self.act.payload.x_exp[r], 127))
            # Skew: row r enters r cycles later.
            for k in range(r):
                nxt = Signal(lay.row_beat, name=f"row_skew{r}_{k}", reset_less=True)
                nxt_ctl = Signal(lay.ctl, name=f"row_skew_ctl{r}_{k}")
                m.d.sync += [nxt.eq(rb), nxt_ctl.eq(rb_ctl)]
                rb, rb_ctl = nxt, nxt_ctl
            row = Signal(lay.row_beat, name=f"row_in{r}")
            m.d.comb += [row.eq(rb), row.ctl.eq(rb_ctl)]
            rows_in.append(row)
        offsets = self._pow2_offsets(m, taps)
        cols_in = []
        for c in range(cfg.cols):
            ahead = self.wgt.payload.col[c]
            pk = Signal(lay.packet, name=f"col_entry{c}", reset_less=True)
            m.d.sync += pk.eq(ahead)
            for k in range(c):
                nxt = Signal(lay.packet, name=f"col_skew{c}_{k}", reset_less=True)
                m.d.sync += nxt.eq(pk)
                ahead, pk = pk, nxt
            # Decoded once per column; every PE of the column reads the decoded packet. The
            # registers load every cycle, so ``ahead`` is the packet ``pk`` holds next. Its
            # beat was taken c cycles ago, and the mode of that cycle is also the mode of the
            # cycle before it (`_effective_mode`), which the tap one register further holds:
            # the decoder's mode starts at a register on column 0 too.
            dec = LaneDecode(cfg)
            m.submodules[f"col_decode{c}"] = dec
            m.d.comb += [dec.packet.eq(pk), dec.mode_ahead.eq(taps[c + 1]),
                         dec.packet_ahead.eq(ahead)]
            if offsets:
                m.d.comb += dec.u_offset.eq(offsets[c])
            cols_in.append(dec.decoded)

        # ---- the PE grid ------------------------------------------------------------------
        pes = [[None] * cfg.cols for _ in range(cfg.rows)]
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                if self._pe_instances:
                    pe = _PEInstance(cfg, m, f"pe_{r}_{c}")
                else:
                    pe = ProcessingElement(cfg)
                    m.submodules[f"pe_{r}_{c}"] = pe
                pes[r][c] = pe
                m.d.comb += [
                    pe.mode.eq(taps[1 + r + c + self.MODE_READ]),
                    pe.row_in.eq(rows_in[r] if c == 0 else pes[r][c - 1].row_out),
                    pe.wgt_in.eq(cols_in[c] if r == 0 else pes[r - 1][c].wgt_out),
                ]

        # ---- drain ------------------------------------------------------------------------
        delay = self.drain_delay
        line = Signal(delay)
        m.d.sync += line.eq(Cat(take & is_last, line[:-1]))
        ready_to_drain = line[-1]
        draining = Signal()
        drain_row = Signal(range(max(cfg.rows, 2)))

        out = OutputStage(cfg)
        m.submodules.output = out
        wiring.connect(m, out.o, wiring.flipped(self.res))
        # The drained tile's output stage and mode check, captured with its last beat (one
        # tile is pending at most), so the next GEMM's mode may already be running.
        tile_requant = Signal()
        tile_ok = Signal()
        with m.If(take & is_last):
            m.d.sync += [tile_requant.eq(mode_prev.requant), tile_ok.eq(mode_ok)]
        m.d.comb += out.requant.eq(tile_requant)
        prm_reg = Signal(data.ArrayLayout(lay.col_params, cfg.cols), reset_less=True)
        prm_full = Signal()
        m.d.comb += self.prm.ready.eq(~prm_full)
        with m.If(self.prm.valid & ~prm_full):
            m.d.sync += prm_full.eq(1)
        # Each column's parameters load under a copy of `prm_full` of their own (equal to it
        # in every cycle): one flag enabling every column's registers was the routed critical
        # path of `dense_int8` (10 of its 10.7 ns in the routing of that one net).
        prm_full_cols = [Signal(name=f"prm_full_col{c}", attrs=REPLICA) for c in range(cfg.cols)]
        for c, full in enumerate(prm_full_cols):
            with m.If(self.prm.valid & ~full):
                m.d.sync += [prm_reg[c].eq(self.prm.payload[c]), full.eq(1)]
            m.d.comb += out.params[c].eq(prm_reg[c])
        params_ok = ~tile_requant | prm_full

        # The row the output stage reads, registered: it is loaded a cycle ahead (row 0 as the
        # drain starts, row r + 1 as row r is taken) from shadow registers that hold it by
        # then (row r's PEs finish r cycles after the drain starts, and row r loads no earlier),
        # so the PEs' results reach the requant's bias add through a register and the drain
        # keeps its cycles. The shadow registers and the tile's flags hold while the tile is
        # pending.
        # A drain loads its rows in order, each once, so the row of the next load is a
        # register of its own (`load_row`, back to row 0 after the last) and only the load's
        # enable depends on the output stage's handshake.
        drained = Signal(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols), name="drained",
                         reset_less=True)
        drained_err = Signal(cfg.cols, name="drained_err", reset_less=True)
        load_row = Signal(range(max(cfg.rows, 2)), name="load_row")
        more_rows = Signal()
        m.d.comb += more_rows.eq(out.i.valid & (drain_row != cfg.rows - 1))
        # The same load, with the output stage's ready and each column's copy of it.
        with m.If(ready_to_drain | (more_rows & out.i.ready)):
            m.d.sync += load_row.eq(Mux(load_row == cfg.rows - 1, 0, load_row + 1))
        for c in range(cfg.cols):
            with m.If(ready_to_drain | (more_rows & out.col_ready[c])), m.Switch(load_row):
                for r in range(cfg.rows):
                    with m.Case(r):
                        m.d.sync += [drained[c].eq(pes[r][c].result),
                                     drained_err[c].eq(pes[r][c].result_err | ~tile_ok)]
        for c in range(cfg.cols):
            m.d.comb += [out.i.payload.value[c].eq(drained[c]),
                         out.i.payload.err[c].eq(drained_err[c])]
        m.d.comb += [out.i.valid.eq(draining & params_ok),
                     out.i.payload.last.eq(drain_row == cfg.rows - 1)]

        with m.If(take & is_last):
            m.d.sync += pending.eq(1)
        with m.If(ready_to_drain):
            m.d.sync += [draining.eq(1), drain_row.eq(0)]
        with m.Elif(out.i.valid & out.i.ready):
            with m.If(drain_row == cfg.rows - 1):
                m.d.sync += [draining.eq(0), pending.eq(0)]
                with m.If(tile_requant):
                    m.d.sync += [full.eq(0) for full in [prm_full, *prm_full_cols]]
            with m.Else():
                m.d.sync += drain_row.eq(drain_row + 1)

        m.d.comb += self.busy.eq(pending | (beat != 0) | line.any())
        return m

    def _mode_legal(self, m: Module, mode):
        """High when the (static) mode word is one this build can run (`legal_mode_terms`).

        An enabled format × sparsity × scale kind, MX activations and requant only where
        generated, ``1 <= group_beats <= k_beats``, ``k_beats · step <= k_max`` and
        ``pow2`` groups of exactly one MX block.
        """
        cfg = self._cfg
        combo_ok = Signal()
        fmt_bits, sp_bits = len(mode.fmt), len(mode.sparsity)
        with m.Switch(Cat(mode.fmt, mode.sparsity, mode.scale)):
            for (f, sp, sc), (md, step) in legal_mode_terms(cfg).items():
                with m.Case(f | (sp << fmt_bits) | (sc << (fmt_bits + sp_bits))):
                    ok = mode.k_beats <= cfg.k_max // step
                    if md.scale_kind == "pow2":
                        ok = ok & (mode.group_beats == MX_BLOCK // step)
                    m.d.comb += combo_ok.eq(ok)
        mx_ok = ~mode.mx_act | (mode.scale == SCALE_CODES["pow2"]) if cfg.mx_activations \
            else ~mode.mx_act
        if cfg.fp8_activations:  # fp8 activations only with MX and a weight format they pair with
            pairs = [(mode.fmt == FORMAT_CODES[f])
                     & (mode.x_fmt == cfg.x_fmt_codes[x]) for f, x in cfg.x_pairs]
            mx_ok = mx_ok & ((mode.x_fmt == 0) | (mode.mx_act & Cat(*pairs).any()))
        requant_ok = Const(1) if cfg.requant else ~mode.requant
        counts_ok = ((mode.group_beats != 0) & (mode.k_beats != 0)
                     & (mode.group_beats <= mode.k_beats))
        return combo_ok & mx_ok & requant_ok & counts_ok
