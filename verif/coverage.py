"""Functional coverage of the cocotb regressions: a plain-Python bin model.

Bins are strings ``category|dim|dim…`` counted in a `Coverage` object per simulation (one
shard). The testbench samples them from what it actually drives and observes:

* ``cross|fmt|sparsity|scale|group|stage`` — per GEMM, from the packed layer: format ×
  N:M pattern × scale kind (``pow2+mx`` for MXINT8 activations, ``pow2+mx<fp8 format>`` for
  fp8 ones) × group size
  (``per_channel`` when G = K, else ``grouped``; pow2 is always ``grouped``) × output stage;
* ``edge|…`` — per GEMM, from the layer and activations: every code of every ≤ 4-bit format in
  every lane position of a slot, the extreme values of the byte-wide formats (int8, fp8), NaN /
  Inf / ternary ``10`` codes, activation extremes that meet a stored weight (for fp8
  activations: ±0, ± the smallest subnormal, ± the largest normal and 1.0, and an invalid
  code), all-zero and under-filled N:M blocks, pow2 exponents exactly at ``t_min`` /
  ``t_max`` and outside the window, NaN exponents, int scale extremes, requant parameter extremes,
  single-beat groups and tiles, K = ``k_max``;
* ``traffic|…`` — per cycle, from the stream handshakes: backpressure on ``res``, bubbles on
  ``act``/``wgt``/``prm``, one input valid without the other, a beat held back by the core, a
  reset while busy, an error flag on a result row, and more.

`legal_bins` gives, for a configuration, every bin that can be hit; `merge` combines the
per-shard JSON files (``build/sim/runs/<cfg>-<shard>/coverage.json``) into a report whose
holes are the legal bins nobody hit. ``python -m verif.coverage FILES… [-o coverage.md]``
merges files by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from golden.formats import FORMATS, format_info, pow2_exponent
from golden.sparsity import parse_sparsity
from golden.tables import (
    ACT_MAX,
    E8M0_NAN,
    OUT_MULT_MAX,
    OUT_MULT_MIN,
    OUT_SHIFT_MAX,
    OUT_SHIFT_MIN,
)
from hw.config import FORMAT_SCALES, ArrayConfig, Mode
from hw.lanemap import lane_map
from verif.cases import fp8_edge_codes

__all__ = ["Coverage", "TRAFFIC_BINS", "TrafficCounter", "legal_bins", "merge", "render_markdown",
           "summary_lines"]

COVERAGE_VERSION = 1
CATEGORIES = ("cross", "edge", "traffic")
#: Formats narrower than a slot: every code is a bin in every lane position of the slot.
SMALL_FORMATS = tuple(f.name for f in FORMATS.values() if f.lanes_per_slot > 1)
#: Byte-wide formats: their two extreme values are the bins.
BYTE_FORMATS = tuple(f.name for f in FORMATS.values() if f.lanes_per_slot == 1)

#: Stream-traffic bins with their meaning (sampled per clock cycle by the testbench).
TRAFFIC_BINS = {
    "res_backpressure": "res valid while the sink holds ready low",
    "res_back_to_back": "result rows taken on consecutive cycles",
    "act_idle": "act bubble (valid low) while beats remain",
    "wgt_idle": "wgt bubble while beats remain",
    "prm_idle": "prm bubble while requant parameters remain",
    "act_without_wgt": "act valid while wgt is not",
    "wgt_without_act": "wgt valid while act is not",
    "beat_held": "act and wgt valid but the core holds the tile's last beat (drain busy)",
    "prm_stall": "prm valid while the core's parameter register is full",
    "beat_and_result": "a beat taken and a result row out in the same cycle",
    "reset_mid_gemm": "reset asserted while the core is busy",
    "error_raw": "an error flag on a raw result row",
    "error_requant": "an error flag on a requantized result row",
}


class TrafficCounter:
    """Per-cycle counts of the stream-traffic bins of one run (cheap: plain integers).

    `count` takes one cycle's handshakes (a `verif.tb_monitor.Cycle`) and the driver's state
    before the clock edge's transfers; `bins` gives the counts by `TRAFFIC_BINS` name.
    """

    __slots__ = ("act_idle", "act_without_wgt", "beat_and_result", "beat_held", "prm_idle",
                 "prm_stall", "res_back_to_back", "res_backpressure", "wgt_idle",
                 "wgt_without_act", "_prev_res")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)
        self._prev_res = False

    def count(self, cyc, act_done: bool, wgt_done: bool, prm_done: bool) -> None:
        """Count one cycle (``*_done``: the source had nothing left before this cycle)."""
        if cyc.act_on != cyc.wgt_on:
            if cyc.act_on:
                self.act_without_wgt += 1
            else:
                self.wgt_without_act += 1
        elif cyc.act_on and not cyc.beat_taken:
            self.beat_held += 1
        if not cyc.act_on and not act_done:
            self.act_idle += 1
        if not cyc.wgt_on and not wgt_done:
            self.wgt_idle += 1
        if not cyc.prm_on and not prm_done:
            self.prm_idle += 1
        elif cyc.prm_on and not cyc.prm_taken:
            self.prm_stall += 1
        res_taken = cyc.res_valid and cyc.res_ready
        if cyc.res_valid and not cyc.res_ready:
            self.res_backpressure += 1
        if res_taken and self._prev_res:
            self.res_back_to_back += 1
        if res_taken and cyc.beat_taken:
            self.beat_and_result += 1
        self._prev_res = res_taken

    def bins(self) -> dict[str, int]:
        """Counts by traffic bin name."""
        return {name: getattr(self, name) for name in self.__slots__ if not name.startswith("_")}


def _scale_dim(mode: Mode) -> str:
    """``pow2+mx`` with MXINT8 activations, ``pow2+mx<fp8 format>`` with fp8 ones."""
    if mode.x_format:
        return f"pow2+mx{mode.x_format}"
    return "pow2+mx" if mode.mx_act else mode.scale_kind


#: The fp8 activation codes every enabled fp8 activation format must meet (`fp8_edge_codes`).
X_CODE_BINS = ("zero", "neg_zero", "min_subnormal", "neg_min_subnormal", "max", "neg_max", "one")


def _group_dim(kind: str, group: int, K: int) -> str:
    return "per_channel" if group == K and kind != "pow2" else "grouped"


def _pow2_capable(cfg: ArrayConfig, fmt: str) -> bool:
    return "pow2" in cfg.scale_kinds and "pow2" in FORMAT_SCALES[fmt]


def _format_edge_bins(cfg: ArrayConfig, fmt: str) -> set[str]:
    """The edge bins of one enabled format: codes, activations, N:M blocks, scales."""
    edge = set()
    lps = cfg.lanes_per_slot(fmt)
    info = format_info(fmt)
    if fmt in SMALL_FORMATS:
        # The slot sub-positions the lane order (hw.lanemap) uses in some mode of this format.
        subs = sorted({q // (4 // lps) for pattern in cfg.sparsity
                       for _, q in lane_map(cfg).modes[(fmt, pattern)].lane_mult})
        for code in range(info.n_codes):
            for sub in subs:
                edge.add(f"edge|code|{fmt}|{code}|lane{sub}")
    else:
        edge.update({f"edge|code|{fmt}|{info.value_min}", f"edge|code|{fmt}|{info.value_max}"})
    if info.invalid_codes:
        edge.add(f"edge|{fmt}_invalid")
    if info.has_zero_point:
        edge.update({"edge|zero_point|0", f"edge|zero_point|{info.zero_max}"})
    edge.update({f"edge|act|{fmt}|{-ACT_MAX}", f"edge|act|{fmt}|{ACT_MAX - 1}"})
    for pattern in cfg.sparsity:
        n_sp, _ = parse_sparsity(pattern)
        if pattern == "dense":
            continue
        edge.add(f"edge|zero_block|{fmt}|{pattern}")
        if n_sp > 1:
            edge.add(f"edge|underfilled|{fmt}|{pattern}")
    if "int" in cfg.scale_kinds and "int" in FORMAT_SCALES[fmt]:
        edge.update({f"edge|int_scale|{fmt}|min", f"edge|int_scale|{fmt}|max"})
    if _pow2_capable(cfg, fmt):
        kinds = ["pow2", "pow2+mx"] if cfg.mx_activations else ["pow2"]
        kinds += [f"pow2+mx{x}" for f, x in cfg.x_pairs if f == fmt]
        for kind in kinds:
            edge.update({f"edge|t|{fmt}|{kind}|t_min", f"edge|t|{fmt}|{kind}|t_max"})
    return edge


def legal_bins(cfg: ArrayConfig) -> dict[str, set[str]]:
    """Every bin ``cfg`` can hit, by category."""
    cross, edge = set(), set()
    stages = ("raw", "requant") if cfg.requant else ("raw",)
    for mode in cfg.modes:
        kind = _scale_dim(mode)
        groups = ("grouped",) if mode.scale_kind == "pow2" else ("per_channel", "grouped")
        for g in groups:
            for st in stages:
                cross.add(f"cross|{mode.fmt}|{mode.sparsity}|{kind}|{g}|{st}")
    for fmt in cfg.formats:
        edge |= _format_edge_bins(cfg, fmt)
    if "pow2" in cfg.scale_kinds:
        edge.update({"edge|pow2|below_window", "edge|pow2|above_window", "edge|pow2|nan_w"})
        if cfg.mx_activations:
            edge.add("edge|pow2|nan_x")
    for x in cfg.fp8_activations:
        edge.update(f"edge|xcode|{x}|{name}" for name in (*X_CODE_BINS, "invalid"))
    if cfg.requant:
        edge.update({"edge|requant|mult_min", "edge|requant|mult_max",
                     "edge|requant|shift_min", "edge|requant|shift_max",
                     "edge|requant|shift_neg", "edge|requant|shift_pos"})
    edge.update({"edge|ctl|k_beats=1", "edge|ctl|group_beats=1", "edge|ctl|K=k_max",
                 "edge|ctl|multi_tile_m", "edge|ctl|multi_tile_n", "edge|ctl|padded_m",
                 "edge|ctl|padded_n"})
    traffic = {f"traffic|{name}" for name in TRAFFIC_BINS}
    if not cfg.requant:
        traffic -= {"traffic|prm_idle", "traffic|prm_stall", "traffic|error_requant"}
    has_invalid = any(format_info(f).invalid_codes for f in cfg.formats)
    if not has_invalid and "pow2" not in cfg.scale_kinds:
        traffic.discard("traffic|error_raw")  # no invalid code, no exponent: no raw error
    return {"cross": cross, "edge": edge, "traffic": traffic}


class Coverage:
    """Hit counts of one simulation.

    Parameters
    ----------
    cfg : ArrayConfig
        The configuration being simulated (its legal bins are recorded with the hits).
    sim : str
        Simulator name, for the report.
    """

    def __init__(self, cfg: ArrayConfig, sim: str = ""):
        self.cfg = cfg
        self.sim = sim
        self.hits: Counter[str] = Counter()
        self.cases = 0

    def hit(self, name: str, count: int = 1) -> None:
        """Count ``count`` hits of bin ``name``."""
        if count:
            self.hits[name] += int(count)

    # -- per GEMM ----------------------------------------------------------------------------

    def sample_case(self, layer, x: np.ndarray, x_exp: np.ndarray | None, mode: Mode) -> None:
        """Sample the cross and the layer / activation edge bins of one GEMM as packed.

        Parameters
        ----------
        layer : golden.layer.Layer
            The layer streamed (after any padding of K by the runner).
        x, x_exp : ndarray
            Activations and MXINT8 exponents streamed.
        mode : Mode
            The mode word driven (format, sparsity, scale, mx_act, output stage).
        """
        from golden.formats import decode
        from golden.sparsity import unpack_nm

        cfg = self.cfg
        self.cases += 1
        fmt, pattern, kind = layer.format, layer.sparsity, layer.scale_kind
        K, N = (int(v) for v in layer.shape)
        G = int(layer.group)
        self.hit(f"cross|{fmt}|{pattern}|{_scale_dim(mode)}|{_group_dim(kind, G, K)}|"
                 f"{mode.out_stage}")
        n_sp, m_sp = parse_sparsity(pattern)
        codes = np.asarray(layer.codes, np.int64)
        lanes = cfg.lanes_used(fmt, pattern)
        lps = cfg.lanes_per_slot(fmt)
        if fmt in SMALL_FORMATS:
            # The slot sub-position (quarter) each stored slot lands on (hw.lanemap order).
            lane_subs = np.array([q // (4 // lps)
                                  for _, q in lane_map(cfg).modes[(fmt, pattern)].lane_mult])
            sub = lane_subs[np.arange(codes.shape[0]) % lanes]
            keys = np.unique(codes * lps + sub[:, None])
            for key in keys.tolist():
                self.hit(f"edge|code|{fmt}|{key // lps}|lane{key % lps}")
        # Value of every stored slot as the MAC sees it (minus the zero point).
        values, invalid = decode(fmt, codes)
        info = format_info(fmt)
        if fmt not in SMALL_FORMATS:
            for v in (info.value_min, info.value_max):
                self.hit(f"edge|code|{fmt}|{v}", int((values == v).any()))
        if info.invalid_codes:
            self.hit(f"edge|{fmt}_invalid", int(invalid.any()))
        slot_group = (np.arange(codes.shape[0]) // n_sp * m_sp) // G
        if layer.zeros is not None:
            zeros = np.asarray(layer.zeros, np.int64)
            values = values - zeros[slot_group]
            self.hit("edge|zero_point|0", int((zeros == 0).any()))
            self.hit(f"edge|zero_point|{info.zero_max}", int((zeros == info.zero_max).any()))
        if pattern != "dense":
            nz = (values != 0).reshape(-1, n_sp, N).sum(axis=1)
            self.hit(f"edge|zero_block|{fmt}|{pattern}", int((nz == 0).any()))
            if n_sp > 1:
                self.hit(f"edge|underfilled|{fmt}|{pattern}", int(((nz > 0) & (nz < n_sp)).any()))
        # Activations that meet a stored weight.
        if pattern == "dense":
            used = np.ones(K, bool)
        else:
            _, stored = unpack_nm(layer.codes, layer.idx, n_sp, m_sp, K)
            used = stored.any(axis=1)
        self._sample_activations(fmt, np.asarray(x), used, mode)
        if kind == "int":
            s = np.asarray(layer.scales, np.int64)
            lim = 1 << (cfg.scale_bits - 1)
            self.hit(f"edge|int_scale|{fmt}|min", int((s == -lim).any()))
            self.hit(f"edge|int_scale|{fmt}|max", int((s == lim - 1).any()))
        elif kind == "pow2":
            self._sample_pow2(layer, x_exp, mode)
        if mode.out_stage == "requant" and layer.out_mult is not None:
            mult = np.asarray(layer.out_mult, np.int64)
            shift = np.asarray(layer.out_shift, np.int64)
            self.hit("edge|requant|mult_min", int((mult == OUT_MULT_MIN).any()))
            self.hit("edge|requant|mult_max", int((mult == OUT_MULT_MAX).any()))
            self.hit("edge|requant|shift_min", int((shift == OUT_SHIFT_MIN).any()))
            self.hit("edge|requant|shift_max", int((shift == OUT_SHIFT_MAX).any()))
            self.hit("edge|requant|shift_neg", int((shift < 0).any()))
            self.hit("edge|requant|shift_pos", int((shift > 0).any()))
        step = cfg.step_k(fmt, pattern)
        m_rows = np.asarray(x).shape[0]
        self.hit("edge|ctl|k_beats=1", int(step == K))
        self.hit("edge|ctl|group_beats=1", int(step == G))
        self.hit("edge|ctl|K=k_max", int(cfg.k_max == K))
        self.hit("edge|ctl|multi_tile_m", int(cfg.rows < m_rows))
        self.hit("edge|ctl|multi_tile_n", int(cfg.cols < N))
        self.hit("edge|ctl|padded_m", int(m_rows % cfg.rows != 0))
        self.hit("edge|ctl|padded_n", int(N % cfg.cols != 0))

    def _sample_activations(self, fmt: str, x: np.ndarray, used: np.ndarray, mode: Mode) -> None:
        """Activation edges: values (int8, MXINT8) or fp8 codes that meet a stored weight, and
        an invalid fp8 code anywhere (it flags its row)."""
        xu = x[:, used]
        if mode.x_format is None:
            for v in (-ACT_MAX, ACT_MAX - 1):
                self.hit(f"edge|act|{fmt}|{v}", int((xu == v).any()))
            return
        for name, code in zip(X_CODE_BINS, fp8_edge_codes(mode.x_format), strict=True):
            self.hit(f"edge|xcode|{mode.x_format}|{name}", int((xu == code).any()))
        bad = np.isin(x, format_info(mode.x_format).invalid_codes)
        self.hit(f"edge|xcode|{mode.x_format}|invalid", int(bad.any()))

    def _sample_pow2(self, layer, x_exp, mode: Mode) -> None:
        cfg = self.cfg
        fmt = layer.format
        e_w = np.asarray(layer.scales, np.int64)                      # [groups, N]
        nan_w = e_w == E8M0_NAN
        self.hit("edge|pow2|nan_w", int(nan_w.any()))
        if mode.mx_act and x_exp is not None:
            e_x = np.asarray(x_exp, np.int64)                         # [M, groups]
            self.hit("edge|pow2|nan_x", int((e_x == E8M0_NAN).any()))
            # t for every (m, g, n) where neither exponent is NaN
            t = pow2_exponent(fmt, e_w[None, :, :], e_x[:, :, None], mode.activation_format)
            ok = ~nan_w[None, :, :] & (e_x[:, :, None] != E8M0_NAN)
        else:
            t = pow2_exponent(fmt, e_w)
            ok = ~nan_w
        t = t[ok]
        kind = _scale_dim(mode)
        self.hit(f"edge|t|{fmt}|{kind}|t_min", int((t == cfg.t_min).any()))
        self.hit(f"edge|t|{fmt}|{kind}|t_max", int((t == cfg.t_max).any()))
        self.hit("edge|pow2|below_window", int((t < cfg.t_min).any()))
        self.hit("edge|pow2|above_window", int((t > cfg.t_max).any()))

    # -- per run (stream traffic) -------------------------------------------------------------

    def sample_traffic(self, counts: dict[str, int]) -> None:
        """Add per-cycle traffic counts of one run (keys of `TRAFFIC_BINS`)."""
        for name, count in counts.items():
            self.hit(f"traffic|{name}", count)

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Hits and configuration as a JSON-ready dict."""
        return {"version": COVERAGE_VERSION, "config": self.cfg.name, "sim": self.sim,
                "cfg": self.cfg.to_dict(), "cases": self.cases, "hits": dict(self.hits)}

    def write(self, path: str | Path) -> None:
        """Write the hits as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- merging


def merge(paths) -> dict:
    """Merge per-shard coverage JSON files into one report.

    Returns
    -------
    dict
        ``runs`` (``"<config> (<sim>)"`` → ``{legal, hits, cases, shards}``) and ``union``
        (``legal`` bins of every configuration seen, summed ``hits``, ``holes``).
    """
    runs: dict[str, dict] = {}
    for path in sorted(Path(p) for p in paths):
        data = json.loads(Path(path).read_text())
        if data.get("version") != COVERAGE_VERSION:
            continue
        key = f"{data['config']} ({data['sim'] or 'sim'})"
        run = runs.get(key)
        if run is None:
            legal = legal_bins(ArrayConfig.from_dict(data["cfg"]))
            run = runs[key] = {"legal": legal, "hits": Counter(), "cases": 0, "shards": 0}
        run["hits"].update(data["hits"])
        run["cases"] += data["cases"]
        run["shards"] += 1
    legal_union = {c: set() for c in CATEGORIES}
    hits_union: Counter[str] = Counter()
    for run in runs.values():
        for cat in CATEGORIES:
            legal_union[cat] |= run["legal"][cat]
        hits_union.update(run["hits"])
    holes = {cat: sorted(b for b in legal_union[cat] if not hits_union[b])
             for cat in CATEGORIES}
    return {"runs": runs, "union": {"legal": legal_union, "hits": hits_union, "holes": holes}}


def _ratio(legal: set[str], hits) -> tuple[int, int]:
    return sum(1 for b in legal if hits.get(b, 0)), len(legal)


def summary_lines(report: dict) -> list[str]:
    """A fixed-width summary table: hit / legal bins per configuration and category."""
    head = f"{'configuration':28s} {'cases':>6s} " + " ".join(f"{c:>15s}" for c in CATEGORIES)
    lines = [head, "-" * len(head)]
    rows = list(report["runs"].items()) + [("all (union)", None)]
    for name, run in rows:
        if run is None:
            legal, hits = report["union"]["legal"], report["union"]["hits"]
            cases = sum(r["cases"] for r in report["runs"].values())
        else:
            legal, hits, cases = run["legal"], run["hits"], run["cases"]
        cells = []
        for cat in CATEGORIES:
            hit, total = _ratio(legal[cat], hits)
            pct = 100.0 * hit / total if total else 100.0
            cells.append(f"{hit:>5d}/{total:<4d}{pct:5.1f}%")
        lines.append(f"{name:28s} {cases:6d} " + " ".join(f"{c:>15s}" for c in cells))
    holes = [b for cat in CATEGORIES for b in report["union"]["holes"][cat]]
    lines.append(f"holes (legal bins no configuration hit): {len(holes)}")
    lines += [f"  {b}" for b in holes[:40]]
    if len(holes) > 40:
        lines.append(f"  ... and {len(holes) - 40} more (see coverage.md)")
    return lines


def render_markdown(report: dict) -> str:
    """The merged report as Markdown: summary, holes, per-configuration holes, hit counts."""
    out = ["# Functional coverage of the cocotb regressions", "",
           "Generated by `verif/coverage.py` from the per-shard `coverage.json` files.", "",
           "```", *summary_lines(report), "```", ""]
    out += ["## Holes per configuration", "",
            "Bins legal for a configuration that it did not hit (another configuration may "
            "have).", ""]
    for name, run in report["runs"].items():
        missing = sorted(b for cat in CATEGORIES for b in run["legal"][cat]
                         if not run["hits"].get(b, 0))
        out.append(f"* **{name}**: {len(missing)}"
                   + (": " + ", ".join(f"`{b}`" for b in missing[:60]) if missing else "")
                   + (" …" if len(missing) > 60 else ""))
    out += ["", "## Traffic bins", "", "| bin | meaning | "
            + " | ".join(report["runs"]) + " |",
            "|---|---|" + "---|" * len(report["runs"])]
    for name, meaning in TRAFFIC_BINS.items():
        cells = []
        for run in report["runs"].values():
            b = f"traffic|{name}"
            cells.append(str(run["hits"].get(b, 0)) if b in run["legal"]["traffic"] else "–")
        out.append(f"| `{name}` | {meaning} | " + " | ".join(cells) + " |")
    out += ["", "## Hit counts (union)", "", "| bin | hits |", "|---|---|"]
    union = report["union"]
    for cat in CATEGORIES:
        for b in sorted(union["legal"][cat]):
            out.append(f"| `{b}` | {union['hits'].get(b, 0)} |")
    return "\n".join(out) + "\n"


def write_report(paths, out_md: str | Path) -> dict:
    """Merge ``paths`` and write the Markdown report (and a JSON twin beside it)."""
    report = merge(paths)
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(render_markdown(report))
    union = report["union"]
    out_md.with_suffix(".json").write_text(json.dumps({
        "runs": {k: {"cases": r["cases"], "shards": r["shards"], "hits": dict(r["hits"]),
                     "legal": {c: sorted(v) for c, v in r["legal"].items()}}
                 for k, r in report["runs"].items()},
        "holes": union["holes"]}, indent=1, sort_keys=True) + "\n")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verif.coverage", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("files", nargs="+", help="coverage.json files of the shards")
    parser.add_argument("-o", "--out", default="build/sim/coverage.md", help="Markdown report")
    args = parser.parse_args(argv)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"python -m verif.coverage: error: no such file: {missing[0]}", file=sys.stderr)
        return 2
    report = write_report(args.files, args.out)
    print("\n".join(summary_lines(report)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

