"""Monitor of the core's streams: what transferred in one cycle, read in the ReadOnly phase.

A beat is taken when ``act`` and ``wgt`` are both presented and the core is ready, a
parameter word when ``prm`` is presented and ready, a result row when ``res`` is valid and the
sink ready. ``res__valid`` must never be X or Z.
"""

from __future__ import annotations

from dataclasses import dataclass

from verif.tb_driver import Driver

__all__ = ["Cycle", "Monitor"]


@dataclass(slots=True)
class Cycle:
    """The handshakes of one cycle (sampled before the clock edge)."""

    act_on: bool
    wgt_on: bool
    prm_on: bool
    beat_taken: bool
    prm_taken: bool
    res_valid: bool
    res_ready: bool
    res_word: int | None

    @property
    def res_taken(self) -> bool:
        """Whether a result row transferred."""
        return self.res_valid and self.res_ready


class Monitor:
    """Samples the core's handshakes once per cycle."""

    def __init__(self, dut):
        self.dut = dut

    def sample(self, driver: Driver, res_ready: bool, cycle: int) -> Cycle:
        """Read this cycle's handshakes (call in the ReadOnly phase, after the driver)."""
        d = self.dut
        a_on, w_on, p_on = driver.act.presenting, driver.wgt.presenting, driver.prm.presenting
        take = a_on and w_on and d.act__ready.value == 1
        p_take = p_on and d.prm__ready.value == 1
        r_valid = d.res__valid.value
        if not r_valid.is_resolvable:
            raise AssertionError(f"res__valid is {r_valid} at cycle {cycle}")
        r_valid = r_valid == 1
        word = int(d.res__payload.value) if r_valid and res_ready else None
        return Cycle(a_on, w_on, p_on, take, p_take, r_valid, res_ready, word)
