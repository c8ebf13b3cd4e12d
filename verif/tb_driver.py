"""Stream drivers of the core's testbench: valid/ready sources and the result sink.

Plain classes over simulator handles (no cocotb import): `Driver` presents one GEMM program on
the ``act``, ``wgt`` and ``prm`` streams with per-stream valid patterns and drives the ``res``
stream's ready pattern (backpressure), obeying the transfer rules of `amaranth.lib.stream`.
"""

from __future__ import annotations

import itertools

from gen.pack import GemmProgram

__all__ = ["Driver", "StreamSink", "StreamSource", "idle_inputs"]


class StreamSource:
    """Valid/ready source that obeys the transfer rules: once valid, held until taken.

    Parameters
    ----------
    valid, payload : simulator handles
        The stream's ``valid`` and ``payload`` inputs of the DUT.
    words : list of int
        Payload words in stream order.
    pattern : sequence of int
        Valid gate, cycled: a 0 keeps the next word back for one cycle.
    """

    def __init__(self, valid, payload, words, pattern=(1,)):
        self.valid, self.payload = valid, payload
        self.words = words
        self.gate = itertools.cycle(pattern)
        self.index = 0
        self.presenting = False
        self._driven_index = -1   # handle writes are costly: write only what changed
        self._driven_valid = None

    @property
    def done(self) -> bool:
        """Whether every word has been taken."""
        return self.index >= len(self.words)

    def drive(self):
        """Present the next word (or a bubble) for this cycle."""
        if not self.presenting and not self.done:
            self.presenting = bool(next(self.gate))
        if self.presenting and self._driven_index != self.index:
            self.payload.value = self.words[self.index]
            self._driven_index = self.index
        if self._driven_valid != self.presenting:
            self.valid.value = int(self.presenting)
            self._driven_valid = self.presenting

    def fired(self):
        """The presented word was taken at this clock edge."""
        self.presenting = False
        self.index += 1


class StreamSink:
    """Ready pattern generator (backpressure) for the result stream."""

    def __init__(self, ready, pattern=(1,)):
        self.ready = ready
        self.gate = itertools.cycle(pattern)
        self._driven = None

    def drive(self) -> bool:
        """Drive ``ready`` for this cycle and return it."""
        ready = bool(next(self.gate))
        if ready != self._driven:
            self.ready.value = int(ready)
            self._driven = ready
        return ready


def idle_inputs(dut) -> None:
    """Every stream input of the core idle: no valid, no ready."""
    dut.act__valid.value = 0
    dut.wgt__valid.value = 0
    dut.prm__valid.value = 0
    dut.dsc__valid.value = 0
    dut.res__ready.value = 0


class Driver:
    """Drives one GEMM program into the core.

    Parameters
    ----------
    dut : simulator handle
        The core.
    prog : GemmProgram
        The packed GEMM; its mode word is applied at once.
    in_pattern, wgt_pattern, prm_pattern, out_pattern : sequence of int
        Valid gates of ``act``, ``wgt`` (default: ``in_pattern``) and ``prm``, and the ready
        gate of ``res``.
    """

    def __init__(self, dut, prog: GemmProgram, *, in_pattern=(1,), wgt_pattern=None,
                 prm_pattern=(1,), out_pattern=(1,)):
        dut.mode.value = prog.mode_word
        self.act = StreamSource(dut.act__valid, dut.act__payload, prog.act_beats, in_pattern)
        self.wgt = StreamSource(dut.wgt__valid, dut.wgt__payload, prog.wgt_beats,
                                wgt_pattern or in_pattern)
        self.prm = StreamSource(dut.prm__valid, dut.prm__payload, prog.prm_beats, prm_pattern)
        self.sink = StreamSink(dut.res__ready, out_pattern)

    def drive(self) -> bool:
        """Drive every stream for this cycle; return the ``res`` ready level."""
        self.act.drive()
        self.wgt.drive()
        self.prm.drive()
        return self.sink.drive()

    def advance(self, beat_taken: bool, prm_taken: bool) -> None:
        """Account for the transfers of the clock edge just passed."""
        if beat_taken:
            self.act.fired()
            self.wgt.fired()
        if prm_taken:
            self.prm.fired()
