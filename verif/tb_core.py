"""cocotb 2.x testbench of the core: drivers, monitor and an in-order scoreboard.

The test reads a job file (``UPE_JOB``) written by the pytest launcher or by the RTL runner:
the manifest of the built core and a list of cases (activations, layer file, expected result,
traffic patterns). Stimuli are packed through the hardware's own layouts (``gen.pack``), one
whole word per stream per cycle.

Functional coverage (`verif.coverage`) is sampled on the way: the cross and edge bins from
each GEMM as packed, the traffic bins from the handshakes of every cycle; the shard's
``coverage.json`` is written next to ``report.json``. Outputs that must never be X/Z under a
4-state simulator (``res__valid``, ``busy``, the ``ready`` outputs) are checked after every
reset, and ``res__valid`` on every cycle.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from gen.pack import GemmProgram, Packer
from hw.config import ArrayConfig
from verif.coverage import Coverage

CLOCK_NS = 10


class StreamSource:
    """Valid/ready source that obeys the transfer rules: once valid, held until taken."""

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
        return self.index >= len(self.words)

    def drive(self):
        if not self.presenting and not self.done:
            self.presenting = bool(next(self.gate))
        if self.presenting and self._driven_index != self.index:
            self.payload.value = self.words[self.index]
            self._driven_index = self.index
        if self._driven_valid != self.presenting:
            self.valid.value = int(self.presenting)
            self._driven_valid = self.presenting

    def fired(self):
        self.presenting = False
        self.index += 1


class StreamSink:
    """Ready pattern generator (backpressure) for the result stream."""

    def __init__(self, ready, pattern=(1,)):
        self.ready = ready
        self.gate = itertools.cycle(pattern)
        self._driven = None

    def drive(self) -> bool:
        ready = bool(next(self.gate))
        if ready != self._driven:
            self.ready.value = int(ready)
            self._driven = ready
        return ready


class TB:
    """Owns the clock, reset and the three streams of one core."""

    #: Outputs that must be 0/1 (never X/Z) once reset has been applied.
    CONTROL_OUTPUTS = ("res__valid", "busy", "act__ready", "wgt__ready", "prm__ready")

    def __init__(self, dut, cfg: ArrayConfig, coverage: Coverage | None = None):
        self.dut = dut
        self.cfg = cfg
        self.packer = Packer(cfg)
        self.log = dut._log
        self.coverage = coverage
        self._reset_done = False

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        await self.reset()

    def idle_inputs(self):
        d = self.dut
        d.act__valid.value = 0
        d.wgt__valid.value = 0
        d.prm__valid.value = 0
        d.res__ready.value = 0

    async def reset(self, cycles: int = 3):
        if self._reset_done and self.coverage is not None and self.dut.busy.value == 1:
            self.coverage.hit("traffic|reset_mid_gemm")
        self.idle_inputs()
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        await ReadOnly()
        self.check_known()
        await RisingEdge(self.dut.clk)
        self._reset_done = True

    def check_known(self):
        """Fail if a control output is X or Z (only a 4-state simulator can show them)."""
        for name in self.CONTROL_OUTPUTS:
            value = getattr(self.dut, name).value
            if not value.is_resolvable:
                raise AssertionError(f"{name} is {value} after reset (must be 0 or 1)")

    async def run(self, prog: GemmProgram, *, in_pattern=(1,), wgt_pattern=None,
                  prm_pattern=(1,), out_pattern=(1,), expected=None, stop_after=None,
                  max_idle: int = 20000):
        """Stream ``prog``; return (result words, cycles from first beat taken to last result).

        ``expected`` (list of result-row tuples (values, errs)) turns on the in-order scoreboard.
        ``stop_after`` ends the run after that many cycles (for reset-in-the-middle tests).
        """
        d = self.dut
        d.mode.value = prog.mode_word
        act = StreamSource(d.act__valid, d.act__payload, prog.act_beats, in_pattern)
        wgt = StreamSource(d.wgt__valid, d.wgt__payload, prog.wgt_beats,
                           wgt_pattern or in_pattern)
        prm = StreamSource(d.prm__valid, d.prm__payload, prog.prm_beats, prm_pattern)
        sink = StreamSink(d.res__ready, out_pattern)
        n_res = len(prog.tiles) * self.cfg.rows
        progress = os.environ.get("UPE_PROGRESS")
        results: list[int] = []
        cycle, first, last, idle = 0, None, None, 0
        # Traffic coverage: plain local counters (cheap), folded into the bins at the end.
        n_bp = n_b2b = n_aidle = n_widle = n_pidle = n_aonly = n_wonly = 0
        n_held = n_pstall = n_overlap = 0
        prev_r = False
        while len(results) < n_res:
            for src in (act, wgt, prm):
                src.drive()
            r_ready = sink.drive()
            await ReadOnly()
            a_on, w_on, p_on = act.presenting, wgt.presenting, prm.presenting
            take = a_on and w_on and d.act__ready.value == 1
            p_take = p_on and d.prm__ready.value == 1
            r_valid = d.res__valid.value
            if not r_valid.is_resolvable:
                raise AssertionError(f"res__valid is {r_valid} at cycle {cycle}")
            r_valid = r_valid == 1
            r_take = r_valid and r_ready
            word = int(d.res__payload.value) if r_take else None
            await RisingEdge(d.clk)
            cycle += 1
            if a_on != w_on:
                if a_on:
                    n_aonly += 1
                else:
                    n_wonly += 1
            elif a_on and not take:
                n_held += 1
            if not a_on and not act.done:
                n_aidle += 1
            if not w_on and not wgt.done:
                n_widle += 1
            if not p_on and not prm.done:
                n_pidle += 1
            elif p_on and not p_take:
                n_pstall += 1
            if r_valid and not r_ready:
                n_bp += 1
            if r_take and prev_r:
                n_b2b += 1
            if r_take and take:
                n_overlap += 1
            prev_r = r_take
            idle = 0 if (take or r_take) else idle + 1
            if take:
                if first is None:
                    first = cycle
                act.fired()
                wgt.fired()
            if p_take:
                prm.fired()
            if r_take:
                if expected is not None:
                    self._check(prog, len(results), word, expected)
                results.append(word)
                last = cycle
            if progress and cycle % 4096 == 0:
                Path(progress).write_text(f"{act.index} {len(act.words)} {len(results)} {n_res}")
            if stop_after is not None and cycle >= stop_after:
                break
            if idle > max_idle:
                raise AssertionError(
                    f"no transfer for {idle} cycles: {act.index}/{len(act.words)} beats taken, "
                    f"{len(results)}/{n_res} results")
        if self.coverage is not None:
            flagged = sum(1 for w in results if any(self.packer.unpack_result(w)[1]))
            stage = "error_requant" if prog.mode.out_stage == "requant" else "error_raw"
            self.coverage.sample_traffic({
                "res_backpressure": n_bp, "res_back_to_back": n_b2b, "act_idle": n_aidle,
                "wgt_idle": n_widle, "prm_idle": n_pidle, "act_without_wgt": n_aonly,
                "wgt_without_act": n_wonly, "beat_held": n_held, "prm_stall": n_pstall,
                "beat_and_result": n_overlap, stage: flagged})
        self.idle_inputs()
        if stop_after is not None and len(results) < n_res:
            return results, cycle
        return results, (last - first + 1) if first is not None else 0

    def _check(self, prog: GemmProgram, i: int, word: int, expected) -> None:
        rows = self.cfg.rows
        tile, row = divmod(i, rows)
        values, errs, last = self.packer.unpack_result(word)
        exp_values, exp_errs = expected[i]
        m0, n0 = prog.tiles[tile]
        where = f"tile {tile} (m0={m0}, n0={n0}) row {row} [{prog.mode.name}]"
        assert last == int(row == rows - 1), f"{where}: last={last}"
        assert _matches(exp_values, values), f"{where}: value {values} != golden {exp_values}"
        assert _matches(exp_errs, errs), f"{where}: err {errs} != golden {exp_errs}"


def expected_rows(cfg: ArrayConfig, prog: GemmProgram, y: np.ndarray, err: np.ndarray):
    """Golden results → per result beat (values, errs), padded tiles included."""
    rows, cols = cfg.rows, cfg.cols
    out = []
    for m0, n0 in prog.tiles:
        for r in range(rows):
            values, errs = [], []
            for c in range(cols):
                m, n = m0 + r, n0 + c
                inside = m < y.shape[0] and n < y.shape[1]
                values.append(int(y[m, n]) if inside else None)
                errs.append(int(err[m, n]) if inside else None)
            out.append((values, errs))
    return out


@cocotb.test()
async def run_job(dut):
    """Run every case of the job file on the core, checking against golden when given."""
    from golden.layer import load_layer

    job_path = Path(os.environ["UPE_JOB"])
    job = json.loads(job_path.read_text())
    manifest = json.loads(Path(job["manifest"]).read_text())
    cfg = ArrayConfig.from_dict(manifest["config"])
    coverage = Coverage(cfg, sim=cocotb.SIM_NAME.split()[0].lower())
    tb = TB(dut, cfg, coverage)
    await tb.start()
    report = {"cases": []}
    for case in job["cases"]:
        t0 = time.monotonic()
        arrays = np.load(case["data"])
        layer = load_layer(case["layer"])
        x = arrays["x"]
        x_exp = arrays["x_exp"] if "x_exp" in arrays.files else None
        prog = tb.packer.pack(layer, x, x_exp=x_exp, out_stage=case.get("out_stage", "raw"))
        patterns = {k: tuple(case[k]) for k in
                    ("in_pattern", "wgt_pattern", "prm_pattern", "out_pattern") if k in case}
        if case.get("reset_mid"):
            # Abandon a GEMM halfway, reset, then the real run must show no residue.
            await tb.run(prog, stop_after=max(prog.beats // 2, 3), **patterns)
            await tb.reset()
        expected = None
        if "y" in arrays.files:
            exp = expected_rows(cfg, prog, arrays["y"], arrays["err"])
            expected = exp
        words, cycles = await tb.run(prog, expected=expected, **patterns)
        y, err = tb.packer.assemble(prog, words)
        if case.get("out"):
            np.savez(case["out"], y=y, err=err)
        entry = {"name": case.get("name", ""), "mode": prog.mode.name, "cycles": cycles,
                 "beats": prog.beats, "tiles": len(prog.tiles), "step": prog.step,
                 "errors": int(err.sum()), "seconds": round(time.monotonic() - t0, 2)}
        if expected is not None:
            assert np.array_equal(y, arrays["y"].astype(y.dtype)), f"{case['name']}: mismatch"
            assert np.array_equal(err, arrays["err"]), f"{case['name']}: error flags differ"
            entry["checked"] = True
        coverage.sample_case(layer, x, x_exp, prog.mode)
        report["cases"].append(entry)
        dut._log.info("case %s: %s, %d beats, %d cycles%s", entry["name"], entry["mode"],
                      entry["beats"], cycles, ", matches golden" if expected else "")
    Path(job["report"]).write_text(json.dumps(report, indent=2))
    coverage.write(Path(job["report"]).with_name("coverage.json"))


def _matches(expected, got) -> bool:
    """Compare one row; ``None`` (a padded position) matches anything."""
    return all(e is None or e == g for e, g in zip(expected, got, strict=True))
