"""Pack the registers around ECP5 multipliers into the MULT18X18D (a netlist pass).

Yosys' ``synth_ecp5`` maps products to ``MULT18X18D`` cells with every register disabled and
leaves the registers that feed and take the product in the fabric; the DSP is then timed as one
combinational path (about 4.5 ns of multiplier plus the routing into and out of the DSP row in
one cycle). The block has input registers on A and B and an output register on P, and nextpnr
times a cell with them enabled by its registered model. This pass does what vendor flows do: on
the flattened Yosys JSON netlist, a ``TRELLIS_FF`` that only feeds multiplier inputs, or that
only takes a multiplier output, becomes the DSP's own register.

A port group (A, B or P) is packed only when every one of its connected bits qualifies, so the
cycle behaviour is unchanged: one clock, one clock enable and one synchronous reset per
group (each group gets its own ``CE``/``RST`` pin), and on P each used bit driving exactly one
flip-flop and nothing else. A and B are packed together or not at all (nextpnr times a cell
with one registered input as unregistered). Flip-flops left without a reader are removed.
"""

from __future__ import annotations

from collections import defaultdict

__all__ = ["pack_mult_registers"]

MULT = "MULT18X18D"
FF = "TRELLIS_FF"
_CONST = {"0", "1", "x", "z"}


def _bits(cell: dict, group: str) -> dict[str, list]:
    """The connections of port group ``group`` (``A0`` … ``A17``) of a multiplier cell."""
    return {p: b for p, b in cell["connections"].items()
            if p.startswith(group) and p[len(group):].isdigit()}


def _ff_control(ff: dict):
    """(clock, clock enable or None, synchronous reset or None) of a plain FF, else None.

    Plain means: a rising clock, and a set/reset that is either unused or a synchronous reset
    to 0 on a flip-flop without clock enable (the DSP register's ``RESETMODE=SYNC``; with no
    enable the order of reset and enable cannot matter).
    """
    conn, par = ff["connections"], ff.get("parameters", {})
    if str(par.get("CLKMUX", "CLK")).strip() != "CLK":
        return None
    cemux = str(par.get("CEMUX", "1")).strip()
    if cemux == "1":
        ce = None
    elif cemux == "CE":
        ce = conn.get("CE", ["1"])[0]
        ce = None if ce == "1" else ce
    else:
        return None
    lsr = conn.get("LSR", ["0"])[0]
    if lsr == "0":
        lsr = None
    elif (lsr in _CONST or ce is not None or str(par.get("LSRMUX", "LSR")).strip() != "LSR"
          or str(par.get("REGSET", "RESET")).strip() != "RESET"
          or str(par.get("SRMODE", "LSR_OVER_CE")).strip() != "LSR_OVER_CE"):
        return None
    clk = conn.get("CLK", [None])[0]
    if clk is None or clk in _CONST:
        return None
    return clk, ce, lsr


def _flag(attrs: dict, key: str) -> bool:
    """A Yosys JSON attribute as a boolean (written as a binary string or an integer)."""
    value = str(attrs.get(key, "0")).strip()
    return int(value, 2 if set(value) <= {"0", "1"} else 10) != 0


class _Netlist:
    """Drivers and readers of every net bit of the top module."""

    def __init__(self, netlist: dict):
        mods = netlist["modules"]
        top = next(n for n, mod in mods.items() if _flag(mod.get("attributes", {}), "top"))
        self.cells = mods[top]["cells"]
        self.drivers: dict = {}
        self.readers: dict = defaultdict(list)
        for name, cell in self.cells.items():
            dirs = cell.get("port_directions", {})
            for port, bits in cell["connections"].items():
                for bit in bits:
                    if bit in _CONST:
                        continue
                    if dirs.get(port) == "output":
                        self.drivers[bit] = (name, port)
                    else:
                        self.readers[bit].append((name, port))
        for port in mods[top].get("ports", {}).values():
            if port.get("direction") != "input":
                for bit in port["bits"]:
                    if bit not in _CONST:
                        self.readers[bit].append(("$top", "port"))
        self.mults = {n for n, c in self.cells.items() if c["type"] == MULT}

    def cell_type(self, name: str) -> str | None:
        return self.cells.get(name, {}).get("type")

    def input_registers(self, cell: dict):
        """({group: control}, {port: D net}) when every connected A/B bit comes from a plain
        FF, with one control per group."""
        controls, new_inputs = {}, {}
        for group in ("A", "B"):
            control = set()
            for port, (bit,) in _bits(cell, group).items():
                if bit in _CONST:
                    continue
                drv = self.drivers.get(bit)
                if drv is None or drv[1] != "Q" or self.cell_type(drv[0]) != FF:
                    return None
                ff = self.cells[drv[0]]
                di = ff["connections"]["DI"][0]
                ctl = _ff_control(ff)
                if ctl is None or self.drivers.get(di, ("", ""))[0] in self.mults:
                    return None  # a product register stays one (packed on its own cell's P)
                control.add(ctl)
                new_inputs[port] = ff["connections"]["DI"]
            if len(control) > 1:
                return None
            if control:
                controls[group] = control.pop()
        if not new_inputs or len({c[0] for c in controls.values()}) != 1:
            return None
        return controls, new_inputs

    def output_registers(self, cell: dict):
        """(control, {port: FF name}) when every used P bit feeds one plain FF only."""
        control, ffs = set(), {}
        for port, (bit,) in _bits(cell, "P").items():
            if bit in _CONST or not self.readers.get(bit):
                continue
            rd = self.readers[bit]
            if len(rd) != 1 or rd[0][1] != "DI" or self.cell_type(rd[0][0]) != FF:
                return None
            ff = self.cells[rd[0][0]]
            ctl = _ff_control(ff)
            q = ff["connections"]["Q"][0]
            if ctl is None or any(r[0] in self.mults for r in self.readers.get(q, [])):
                return None  # a register between two multipliers is left in the fabric
            control.add(ctl)
            ffs[port] = rd[0][0]
        if len(control) != 1:
            return None
        return {"P": control.pop()}, ffs


#: The register groups of a multiplier, each with a clock enable and reset of its own.
_GROUPS = {"A": ("INPUTA", 0), "B": ("INPUTB", 1), "P": ("OUTPUT", 2)}


def _enable_registers(cell: dict, controls: dict) -> None:
    """Enable the registers of ``controls`` ({group: (clk, ce, rst)}); all clocked by CLK0."""
    conn = cell["connections"]
    dirs = cell.setdefault("port_directions", {})
    par = cell.setdefault("parameters", {})
    for group, (clk, ce, rst) in controls.items():
        name, k = _GROUPS[group]
        conn["CLK0"] = [clk]
        conn[f"CE{k}"], conn[f"RST{k}"] = [ce or "1"], [rst or "0"]
        dirs.update({"CLK0": "input", f"CE{k}": "input", f"RST{k}": "input"})
        par[f"REG_{name}_CLK"], par[f"REG_{name}_CE"] = "CLK0", f"CE{k}"
        par[f"REG_{name}_RST"] = f"RST{k}"
    par["RESETMODE"] = "SYNC"


def pack_mult_registers(netlist: dict) -> dict[str, int]:
    """Move qualifying fabric registers into the multipliers of ``netlist``, in place.

    Parameters
    ----------
    netlist : dict
        A Yosys ``write_json`` netlist with one flattened top module (``top`` attribute).

    Returns
    -------
    dict
        ``multipliers`` (cells seen), ``inputs_registered`` and ``outputs_registered`` (cells
        whose A/B resp. P registers were enabled), ``ffs_removed``.
    """
    net = _Netlist(netlist)
    stats = {"multipliers": len(net.mults), "inputs_registered": 0, "outputs_registered": 0,
             "ffs_removed": 0}
    removable: set[str] = set()
    for name in sorted(net.mults):
        cell = net.cells[name]
        par = cell.get("parameters", {})
        if any(str(par.get(f"REG_{g}_CLK", "NONE")).strip() != "NONE"
               for g in ("INPUTA", "INPUTB", "OUTPUT", "PIPELINE")):
            continue  # already uses its registers: leave it alone
        inputs, outputs = net.input_registers(cell), net.output_registers(cell)
        if inputs and outputs and (next(iter(inputs[0].values()))[0]
                                   != outputs[0]["P"][0]):
            outputs = None  # one clock per cell (CLK0: the clock nextpnr times it by)
        if not (inputs or outputs):
            continue
        conn = cell["connections"]
        controls = {}
        if inputs:
            for port, di in inputs[1].items():
                old = conn[port][0]
                conn[port] = list(di)
                net.readers[old] = [r for r in net.readers[old] if r[0] != name]
                if not net.readers[old]:
                    removable.add(net.drivers[old][0])
            controls.update(inputs[0])
            stats["inputs_registered"] += 1
        if outputs:
            for port, ff_name in outputs[1].items():
                conn[port] = list(net.cells[ff_name]["connections"]["Q"])
                removable.add(ff_name)
            controls.update(outputs[0])
            stats["outputs_registered"] += 1
        _enable_registers(cell, controls)
    for ff_name in removable:
        del net.cells[ff_name]
    stats["ffs_removed"] = len(removable)
    return stats
