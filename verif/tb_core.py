"""cocotb 2.x testbench of the core: driver, monitor, scoreboard and coverage, wired per cycle.

The test reads a job file (``UPE_JOB``) written by the pytest launcher or by the RTL runner:
the manifest of the built core and a list of cases (activations, layer file, expected result,
traffic patterns). Stimuli are packed through the hardware's own layouts (``gen.pack``), one
whole word per stream per cycle. The parts are separate classes: `verif.tb_driver.Driver`
(the stream sources and the result sink), `verif.tb_monitor.Monitor` (the handshakes of each
cycle), `verif.scoreboard.Scoreboard` (in-order golden checks, shared with the soak) and
`verif.coverage` (`Coverage`, `TrafficCounter`).

Functional coverage (`verif.coverage`) is sampled on the way: the cross and edge bins from
each GEMM as packed, the traffic bins from the handshakes of every cycle; the shard's
``coverage.json`` is written next to ``report.json``. Outputs that must never be X/Z under a
4-state simulator (``res__valid``, ``busy``, the ``ready`` outputs) are checked after every
reset, and ``res__valid`` on every cycle.
"""

from __future__ import annotations

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
from verif.coverage import Coverage, TrafficCounter
from verif.scoreboard import Scoreboard
from verif.tb_driver import Driver, idle_inputs
from verif.tb_monitor import Monitor

CLOCK_NS = 10


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
        """Start the clock and reset the core."""
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        await self.reset()

    def idle_inputs(self):
        """Every stream input idle."""
        idle_inputs(self.dut)

    async def reset(self, cycles: int = 3):
        """Hold reset for ``cycles`` with idle inputs, then check the control outputs."""
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
                  prm_pattern=(1,), out_pattern=(1,), scoreboard: Scoreboard | None = None,
                  stop_after=None, max_idle: int = 20000):
        """Stream ``prog``; return (result words, cycles from first beat taken to last result).

        ``scoreboard`` checks every result row in order as it leaves the core.
        ``stop_after`` ends the run after that many cycles (for reset-in-the-middle tests).
        """
        d = self.dut
        driver = Driver(d, prog, in_pattern=in_pattern, wgt_pattern=wgt_pattern,
                        prm_pattern=prm_pattern, out_pattern=out_pattern)
        monitor = Monitor(d)
        traffic = TrafficCounter()
        act, wgt, prm = driver.act, driver.wgt, driver.prm
        n_res = len(prog.tiles) * self.cfg.rows
        progress = os.environ.get("UPE_PROGRESS")
        results: list[int] = []
        cycle, first, last, idle = 0, None, None, 0
        while len(results) < n_res:
            res_ready = driver.drive()
            await ReadOnly()
            cyc = monitor.sample(driver, res_ready, cycle)
            await RisingEdge(d.clk)
            cycle += 1
            traffic.count(cyc, act.done, wgt.done, prm.done)
            r_take = cyc.res_taken
            idle = 0 if (cyc.beat_taken or r_take) else idle + 1
            if cyc.beat_taken and first is None:
                first = cycle
            driver.advance(cyc.beat_taken, cyc.prm_taken)
            if r_take:
                if scoreboard is not None:
                    scoreboard.check_row(len(results), cyc.res_word)
                results.append(cyc.res_word)
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
            self.coverage.sample_traffic({**traffic.bins(), stage: flagged})
        self.idle_inputs()
        if stop_after is not None and len(results) < n_res:
            return results, cycle
        return results, (last - first + 1) if first is not None else 0


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
        prog = tb.packer.pack(layer, x, x_exp=x_exp, out_stage=case.get("out_stage", "raw"),
                              x_format=case.get("x_format"))
        patterns = {k: tuple(case[k]) for k in
                    ("in_pattern", "wgt_pattern", "prm_pattern", "out_pattern") if k in case}
        if case.get("reset_mid"):
            # Abandon a GEMM halfway, reset, then the real run must show no residue.
            await tb.run(prog, stop_after=max(prog.beats // 2, 3), **patterns)
            await tb.reset()
        checking = "y" in arrays.files
        board = (Scoreboard(tb.packer, prog, arrays["y"], arrays["err"]) if checking
                 else None)
        words, cycles = await tb.run(prog, scoreboard=board, **patterns)
        y, err = tb.packer.assemble(prog, words)
        if case.get("out"):
            np.savez(case["out"], y=y, err=err)
        entry = {"name": case.get("name", ""), "mode": prog.mode.name, "cycles": cycles,
                 "beats": prog.beats, "tiles": len(prog.tiles), "step": prog.step,
                 "errors": int(err.sum()), "seconds": round(time.monotonic() - t0, 2)}
        if board is not None:
            board.check_result(case["name"], y, err)
            entry["checked"] = True
        coverage.sample_case(layer, x, x_exp, prog.mode)
        report["cases"].append(entry)
        dut._log.info("case %s: %s, %d beats, %d cycles%s", entry["name"], entry["mode"],
                      entry["beats"], cycles, ", matches golden" if checking else "")
    Path(job["report"]).write_text(json.dumps(report, indent=2))
    coverage.write(Path(job["report"]).with_name("coverage.json"))

