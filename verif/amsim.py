"""Run packed GEMMs on the Amaranth simulator (fast unit-level checks without Verilator)."""

from __future__ import annotations

import itertools

from amaranth.sim import Simulator

from gen.pack import GemmProgram, Packer
from hw.config import ArrayConfig
from hw.core import Core

__all__ = ["simulate_program"]


def simulate_program(cfg: ArrayConfig, prog: GemmProgram, *, in_pattern=(1,), out_pattern=(1,),
                     max_cycles: int | None = None) -> tuple[list[int], int]:
    """Stream ``prog`` through a fresh ``Core(cfg)``; return (result words, cycles).

    ``in_pattern`` / ``out_pattern`` cycle through 1/0 to throttle the input streams' valid and
    the result stream's ready (idle and backpressure).
    """
    dut = Core(cfg)
    results: list[int] = []
    cycles = [0]
    n_beats, n_res = prog.beats, len(prog.tiles) * cfg.rows
    limit = max_cycles or (n_beats * 4 + len(prog.tiles) * (cfg.rows + 64) * 4 + 500)

    async def bench(ctx):
        ctx.set(dut.mode.as_value(), prog.mode_word)
        ai = pi = 0
        in_gate, out_gate = itertools.cycle(in_pattern), itertools.cycle(out_pattern)
        cycle = 0
        while len(results) < n_res:
            if cycle > limit:
                raise TimeoutError(f"no progress after {cycle} cycles "
                                   f"({ai}/{n_beats} beats, {len(results)}/{n_res} results)")
            go = next(in_gate) and ai < n_beats
            ctx.set(dut.act.valid, go)
            ctx.set(dut.wgt.valid, go)
            if go:
                ctx.set(dut.act.payload.as_value(), prog.act_beats[ai])
                ctx.set(dut.wgt.payload.as_value(), prog.wgt_beats[ai])
            p_go = pi < len(prog.prm_beats)
            ctx.set(dut.prm.valid, p_go)
            if p_go:
                ctx.set(dut.prm.payload.as_value(), prog.prm_beats[pi])
            ctx.set(dut.res.ready, next(out_gate))
            taken = go and ctx.get(dut.act.ready)
            p_taken = p_go and ctx.get(dut.prm.ready)
            r_taken = ctx.get(dut.res.valid) and ctx.get(dut.res.ready)
            r_word = ctx.get(dut.res.payload.as_value()) if r_taken else None
            await ctx.tick()
            cycle += 1
            if taken:
                if ai == 0:
                    cycles[0] = -cycle + 1
                ai += 1
            if p_taken:
                pi += 1
            if r_taken:
                results.append(r_word)
        cycles[0] += cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results, cycles[0]


def run_gemm(cfg: ArrayConfig, layer, x, *, x_exp=None, out_stage="raw", x_format=None, **kw):
    """Pack, simulate and assemble: (Y, err, cycles)."""
    packer = Packer(cfg)
    prog = packer.pack(layer, x, x_exp=x_exp, out_stage=out_stage, x_format=x_format)
    words, cycles = simulate_program(cfg, prog, **kw)
    y, err = packer.assemble(prog, words)
    return y, err, cycles
