"""flows.ecp5_dsp: registers around MULT18X18D cells move into the cell, or stay, as they must."""

import copy

from flows.ecp5_dsp import pack_mult_registers

CLK, RST, CE = 2, 3, 4


def _ff(d, q, *, ce=None, lsr=None, regset="RESET"):
    conn = {"CLK": [CLK], "DI": [d], "Q": [q], "LSR": [lsr if lsr is not None else "0"]}
    par = {"CLKMUX": "CLK", "CEMUX": "1 ", "GSR": "DISABLED", "LSRMUX": "LSR",
           "REGSET": regset, "SRMODE": "LSR_OVER_CE"}
    if ce is not None:
        conn["CE"], par["CEMUX"] = [ce], "CE"
    return {"type": "TRELLIS_FF", "parameters": par, "port_directions": {
        "CLK": "input", "DI": "input", "LSR": "input", "CE": "input", "Q": "output"},
        "connections": conn}


def _netlist(a_ff=None, b_ff=None, p_ff=None, extra_reader=False):
    """One 2-bit × 2-bit multiplier: A from nets 10/11, B 20/21, P 30..33 (optionally via FFs).

    Nets 100+ are the FF inputs (logic), 200+ the FF outputs seen by the rest of the design.
    """
    cells = {}
    a_bits, b_bits = [10, 11], [20, 21]
    for name, bits, kw in (("a", a_bits, a_ff), ("b", b_bits, b_ff)):
        for i, bit in enumerate(bits):
            if kw is not None:
                cells[f"{name}_ff{i}"] = _ff(100 + bit, bit, **kw)
    conn = {f"A{i}": [a_bits[i] if i < 2 else "0"] for i in range(18)}
    conn.update({f"B{i}": [b_bits[i] if i < 2 else "0"] for i in range(18)})
    conn.update({f"P{i}": [30 + i if i < 4 else 40 + i] for i in range(36)})
    dirs = {p: ("output" if p.startswith("P") else "input") for p in conn}
    cells["mul"] = {"type": "MULT18X18D", "parameters": {}, "port_directions": dirs,
                    "connections": conn}
    for i in range(4):
        if p_ff is not None:
            cells[f"p_ff{i}"] = _ff(30 + i, 200 + i, **p_ff)
    outs = [200 + i for i in range(4)] if p_ff is not None else [30 + i for i in range(4)]
    if extra_reader:
        outs.append(10)  # A's register is also read elsewhere
    ports = {"clk": {"direction": "input", "bits": [CLK]},
             "y": {"direction": "output", "bits": outs}}
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "ports": ports, "cells": cells}}}


def _mul(net):
    return net["modules"]["top"]["cells"]["mul"]


def test_registers_on_both_sides_move_into_the_multiplier():
    net = _netlist(a_ff={}, b_ff={}, p_ff={})
    stats = pack_mult_registers(net)
    assert stats == {"multipliers": 1, "inputs_registered": 1, "outputs_registered": 1,
                     "ffs_removed": 8}
    mul = _mul(net)
    par, conn = mul["parameters"], mul["connections"]
    for g in ("INPUTA", "INPUTB", "OUTPUT"):
        assert par[f"REG_{g}_CLK"] == "CLK0"
    assert conn["CLK0"] == [CLK]
    assert conn["A0"] == [110] and conn["A1"] == [111] and conn["B1"] == [121]
    assert conn["A5"] == ["0"]  # constants stay constants
    assert [conn[f"P{i}"] for i in range(4)] == [[200], [201], [202], [203]]
    assert set(net["modules"]["top"]["cells"]) == {"mul"}


def test_enable_and_synchronous_reset_follow_the_register():
    net = _netlist(a_ff={"lsr": RST}, b_ff={}, p_ff={"ce": CE})
    pack_mult_registers(net)
    mul = _mul(net)
    par, conn = mul["parameters"], mul["connections"]
    rst_a = par["REG_INPUTA_RST"]
    assert conn[rst_a] == [RST] and conn[par["REG_INPUTB_RST"]] == ["0"]
    assert conn[par["REG_OUTPUT_CE"]] == [CE] and conn[par["REG_INPUTA_CE"]] == ["1"]
    assert par["RESETMODE"] == "SYNC"


def test_nothing_moves_that_would_change_the_behaviour():
    # One input unregistered: A and B stay in the fabric (P may still move).
    net = _netlist(a_ff={}, b_ff=None, p_ff={})
    stats = pack_mult_registers(net)
    assert stats["inputs_registered"] == 0 and stats["outputs_registered"] == 1
    assert "a_ff0" in net["modules"]["top"]["cells"]
    # A reset that sets (REGSET SET), or a reset together with an enable: left alone.
    for kw in ({"lsr": RST, "regset": "SET"}, {"lsr": RST, "ce": CE}):
        net = _netlist(a_ff=kw, b_ff={}, p_ff=None)
        before = copy.deepcopy(net)
        assert pack_mult_registers(net)["inputs_registered"] == 0
        assert net == before
    # A register also read elsewhere is duplicated into the DSP, not removed.
    net = _netlist(a_ff={}, b_ff={}, p_ff=None, extra_reader=True)
    stats = pack_mult_registers(net)
    assert stats["inputs_registered"] == 1
    assert "a_ff0" in net["modules"]["top"]["cells"]
    assert "a_ff1" not in net["modules"]["top"]["cells"]
    # An output bit read by logic besides its register: P stays unregistered.
    net = _netlist(a_ff=None, b_ff=None, p_ff={})
    net["modules"]["top"]["ports"]["y"]["bits"].append(31)
    assert pack_mult_registers(net)["outputs_registered"] == 0
