"""``python -m flows.decode``: decode GEMMs behind a weight bandwidth, on the RTL and the model.

Random float layers of one MiniLM-like shape (``K × N``, default 384 × 384, the attention
projections of MiniLM-L6) are compressed with `golden.compress` in four modes: dense int8,
block-sparse int8 (``--block``, ``--density`` of the blocks kept, by block norm), int4
per-channel and block-sparse 2:4 int4 per-channel. For every M of ``--m`` (decode: a few
tokens) and every weight bandwidth W of ``--w`` (bits per cycle) they run on the native
Verilator harness (`verif.native`) with the weight stream throttled to W (``+wgt_bw``),
every result checked bit-exact against golden, beside `flows.perf.estimate` with the same
``weight_bw`` (and the block schedule's tile beats when block-sparse). A prefill row per mode
(``M = --prefill-m``, full-width ports) runs beside them.

A weight beat's size is what `flows.perf.weight_bits_per_beat` counts for the whole array:
``cols ×`` (the codes of the lanes the mode uses + their N:M indices), and the group's scale
(and zero point) on the first beat of each group a tile streams, which the model amortises
over the group's beats.

Then one MiniLM-sized encoder layer (Q, K, V, O 384 × 384, FFN 384 × 1536 and 1536 × 384),
on the RTL and the model, bit-exact: prefill of ``--prefill-m`` tokens at full ports against
decode of one token at each W, cycles per token.

Writes ``build/decode/<preset>.md`` and ``.json`` (``--out`` for another stem).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from flows.perf import ArrayTiming, estimate_mode, weight_bits_per_beat
from gen.emit import manifest
from gen.presets import preset
from golden.blocks import parse_block
from golden.compress import compress
from golden.gemm import gemm
from hw.config import Mode
from verif.native import run_gemms_native

__all__ = ["MODES", "MINILM_LAYER", "beat_bits_fn", "decode_layers", "measure",
           "layer_table", "markdown", "main"]

#: (label, mode, block-sparse)
MODES = [
    ("dense int8", Mode("int8", "dense", "none"), False),
    ("block int8", Mode("int8", "dense", "none"), True),
    ("int4", Mode("int4", "dense", "int"), False),
    ("block 2:4 int4", Mode("int4", "2:4", "int"), True),
]
#: One MiniLM-L6 encoder layer (hidden 384, FFN 1536): (name, K, N).
MINILM_LAYER = [("q", 384, 384), ("k", 384, 384), ("v", 384, 384), ("o", 384, 384),
                ("ffn1", 384, 1536), ("ffn2", 1536, 384)]


def beat_bits_fn(timing: ArrayTiming, scale_bits: int = 16):
    """The compressed size of every weight beat, for `verif.native.write_wgt_bits`.

    A beat costs ``cols ×`` (used codes + N:M indices) bits, plus ``cols ×`` the group's
    scale and zero point when it is the first beat of its group that its tile streams.
    """
    def bits(f, beats: np.ndarray) -> np.ndarray:
        mode = f.mode
        wb = weight_bits_per_beat(timing, mode.fmt, mode.sparsity, mode.scale_kind,
                                  f.group_beats * f.step, scale_bits)
        per_beat = timing.cols * (wb["codes"] + wb["idx"])
        per_group = timing.cols * wb["scales"] * f.group_beats
        group = beats // f.group_beats
        new_tile = np.ones(beats.size, bool)
        new_tile[1:] = beats[1:] <= beats[:-1]
        first = new_tile.copy()
        first[1:] |= group[1:] != group[:-1]
        return np.rint(per_beat + np.where(first, per_group, 0.0)).astype(np.int64)
    return bits


def decode_layers(K: int, N: int, *, seed: int, block, density: float) -> list[tuple]:
    """``(label, mode, layer)`` of every mode, compressed from one random float matrix."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((K, N)).astype(np.float32)
    out = []
    for label, mode, blocked in MODES:
        kw = {"block": block, "block_density": density} if blocked else {}
        layer = compress(w, fmt=mode.fmt, sparsity=mode.sparsity, scale_kind=mode.scale_kind,
                         **kw)
        out.append((label, mode, layer))
    return out


def _model(timing, layer, mode, M, bw):
    blocked = layer.block_mask is not None
    K, N = (int(v) for v in layer.shape)
    return estimate_mode(timing, M, N, K, mode.fmt, mode.sparsity, mode.scale_kind,
                         group=int(layer.group), weight_bw=bw,
                         block_shape=layer.block_shape if blocked else None,
                         block_mask=layer.block_mask if blocked else None)


def _run(cfg, items: list[tuple], bw: int | None, bits) -> list[tuple[int, bool]]:
    """Run ``(mode, layer, x)`` items in one native simulation; ``(cycles, bit-exact)`` each."""
    gemms = [{"layer": layer, "x": x, "x_exp": None, "out_stage": "raw"}
             for _, layer, x in items]
    out = run_gemms_native(cfg, gemms, wgt_bw=bw, wgt_beat_bits=bits if bw else None)
    res = []
    for (_, layer, x), (y, err), cycles in zip(items, out["results"], out["cycles"],
                                               strict=True):
        want, want_err = gemm(x, layer, frac_bits=cfg.frac_bits, t_min=cfg.t_min,
                              t_max=cfg.t_max)
        res.append((cycles, bool(np.array_equal(y, want) and np.array_equal(err, want_err))))
    return res


def measure(cfg, layers, ms: list[int], ws: list[int | None], *, seed: int,
            prefill_m: int | None = None, progress=print) -> list[dict]:
    """Run every layer at every M and W (plus prefill at full ports) on the RTL; rows."""
    timing = ArrayTiming.from_manifest(manifest(cfg))
    bits = beat_bits_fn(timing)
    rng = np.random.default_rng(seed + 1)
    xs = {M: rng.integers(-128, 128, (M, int(layers[0][2].shape[0]))).astype(np.int8)
          for M in sorted(set(ms) | ({prefill_m} if prefill_m else set()))}
    runs = [(bw, M) for bw in ws for M in ms]
    if prefill_m:
        runs.append((None, prefill_m))
    rows = []
    for bw in dict.fromkeys(w for w, _ in runs):
        meta = [(label, mode, layer, M) for M in (M for w, M in runs if w == bw)
                for label, mode, layer in layers]
        t0 = time.monotonic()
        res = _run(cfg, [(mode, layer, xs[M]) for _, mode, layer, M in meta], bw, bits)
        progress(f"W={bw or 'full'}: {len(meta)} GEMMs, {sum(c for c, _ in res)} cycles, "
                 f"{time.monotonic() - t0:.1f} s")
        for (label, mode, layer, M), (cycles, exact) in zip(meta, res, strict=True):
            est = _model(timing, layer, mode, M, bw)
            K, N = (int(v) for v in layer.shape)
            rows.append({"mode": label, "mode_name": mode.name, "M": M, "K": K, "N": N,
                         "W": bw, "rtl_cycles": cycles, "model_cycles": est.cycles,
                         "ratio": cycles / est.cycles, "beats": est.beats,
                         "macs_per_cycle": M * N * K / cycles, "limiter": est.limiter,
                         "prefill": bw is None and prefill_m == M,
                         "matches_golden": exact})
            if not exact:
                progress(f"MISMATCH against golden: {label}, M={M}, W={bw}")
    return rows


def layer_table(cfg, *, seed: int, block, density: float, ws: list[int],
                prefill_m: int, progress=print) -> list[dict]:
    """One MiniLM-sized layer on the RTL and the model: prefill (full ports) against decode.

    Per mode: ``prefill`` (``prefill_m`` tokens at full ports) and ``decode`` (one token, per
    W and ``full``), each ``{"rtl": cycles, "model": cycles, "exact": bool}`` summed over the
    layer's GEMMs.
    """
    timing = ArrayTiming.from_manifest(manifest(cfg))
    bits = beat_bits_fn(timing)
    rng = np.random.default_rng(seed + 2)
    per_mode: dict[str, list] = {}
    for i, (_, K, N) in enumerate(MINILM_LAYER):
        x1 = rng.integers(-128, 128, (1, K)).astype(np.int8)
        xp = rng.integers(-128, 128, (prefill_m, K)).astype(np.int8)
        for label, mode, layer in decode_layers(K, N, seed=seed + 10 + i, block=block,
                                                density=density):
            per_mode.setdefault(label, []).append((mode, layer, x1, xp))

    def entry(items, M, bw):
        t0 = time.monotonic()
        res = _run(cfg, [(mode, layer, x) for mode, layer, x in items], bw, bits)
        progress(f"layer M={M} W={bw or 'full'}: {sum(c for c, _ in res)} cycles, "
                 f"{time.monotonic() - t0:.1f} s")
        return {"rtl": sum(c for c, _ in res), "exact": all(e for _, e in res),
                "model": sum(_model(timing, layer, mode, M, bw).cycles
                             for mode, layer, _ in items)}

    out = []
    for label, gemms in per_mode.items():
        e = {"mode": label, "prefill_m": prefill_m,
             "prefill": entry([(m, la, xp) for m, la, _, xp in gemms], prefill_m, None),
             "decode": {}}
        for bw in [*ws, None]:
            e["decode"]["full" if bw is None else str(bw)] = entry(
                [(m, la, x1) for m, la, x1, _ in gemms], 1, bw)
        out.append(e)
    return out


def markdown(rows: list[dict], layer: list[dict], *, cfg, K: int, N: int, prefill_m: int,
             ws: list[int]) -> str:
    """The two tables as Markdown."""
    lines = [f"K = {K}, N = {N} on `{cfg.name}` ({cfg.rows}x{cfg.cols}); W in bits per cycle "
             f"(`full`: the core's full-width ports); bit-exact against golden: "
             f"{'all' if all(r['matches_golden'] for r in rows) else 'NOT ALL'}.", "",
             "| mode | M | W | beats | RTL cycles | model cycles | RTL/model | MAC/cycle "
             "| model limiter |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: (r["mode"] != "dense int8", r["mode"], r["prefill"],
                                         r["M"], r["W"] or 1 << 30)):
        lines.append(f"| {r['mode']}{' (prefill)' if r['prefill'] else ''} | {r['M']} | "
                     f"{r['W'] or 'full'} | {r['beats']} | {r['rtl_cycles']} | "
                     f"{r['model_cycles']} | {r['ratio']:.4f} | {r['macs_per_cycle']:.1f} | "
                     f"{r['limiter']} |")
    if layer:
        shapes = ", ".join(f"{n} {k}x{m}" for n, k, m in MINILM_LAYER)
        lines += ["", f"One MiniLM-sized layer ({shapes}): cycles per token on the RTL "
                  f"(model in brackets), prefill of {prefill_m} tokens at full ports against "
                  f"decode of one token behind W.", "",
                  "| mode | prefill | " + " | ".join(f"decode W={w}" for w in ws)
                  + " | decode full | decode/prefill (W=" + str(ws[0]) + ") |",
                  "|---|" + "---:|" * (len(ws) + 3)]
        for e in layer:
            pre = e["prefill"]
            cells = [f"{pre['rtl'] / prefill_m:.0f} ({pre['model'] / prefill_m:.0f})"]
            cells += [f"{e['decode'][k]['rtl']} ({e['decode'][k]['model']})"
                      for k in [*(str(w) for w in ws), "full"]]
            slow = e["decode"][str(ws[0])]["rtl"] / (pre["rtl"] / prefill_m)
            lines.append(f"| {e['mode']} | " + " | ".join(cells) + f" | {slow:.1f}x |")
        if not all(e["prefill"]["exact"] and all(d["exact"] for d in e["decode"].values())
                   for e in layer):
            lines.append("\nNOT bit-exact against golden on some layer GEMM.")
    return "\n".join(lines) + "\n"


def _ints(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, not {text!r}") from None
    if not out or any(v < 1 for v in out):
        raise argparse.ArgumentTypeError(f"expected positive integers, not {text!r}")
    return out


def main(argv=None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m flows.decode",
                                description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--w", type=_ints, default=[64, 128, 256], help="weight bandwidths (bits/cycle)")
    p.add_argument("--m", type=_ints, default=[1, 2, 4, 8], help="decode M (tokens)")
    p.add_argument("-K", type=int, default=384)
    p.add_argument("-N", type=int, default=384)
    p.add_argument("--prefill-m", type=int, default=128, help="prefill M (0: none)")
    p.add_argument("--block", type=parse_block, default=(64, 4), help="block shape BKxBN")
    p.add_argument("--density", type=float, default=0.5, help="fraction of the blocks kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-layer", action="store_true", help="skip the MiniLM layer table")
    p.add_argument("--out", type=Path, default=None, help="output stem (default "
                   "build/decode/<preset>)")
    args = p.parse_args(argv)
    cfg = preset(args.preset)
    layers = decode_layers(args.K, args.N, seed=args.seed, block=args.block,
                           density=args.density)
    rows = measure(cfg, layers, args.m, args.w, seed=args.seed,
                   prefill_m=args.prefill_m or None)
    layer = [] if args.no_layer else layer_table(cfg, seed=args.seed, block=args.block,
                                                 density=args.density, ws=args.w,
                                                 prefill_m=args.prefill_m or 128)
    text = markdown(rows, layer, cfg=cfg, K=args.K, N=args.N, prefill_m=args.prefill_m,
                    ws=args.w)
    print(text, end="")
    stem = args.out or Path("build") / "decode" / args.preset
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({"rows": rows, "layer": layer}, indent=1))
    ok = all(r["matches_golden"] for r in rows) and all(
        e["prefill"]["exact"] and all(d["exact"] for d in e["decode"].values()) for e in layer)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
