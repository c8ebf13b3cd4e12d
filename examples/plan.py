"""``python -m examples.plan``: choose the compression of every MiniLM layer for an array.

The co-design planner. Given the model's 36 linear layers, calibration activations (the float
model's layer inputs on the calibration sentences), an array configuration (its enabled modes;
cycles from the analytic model `flows.perf`) and one budget, it picks for every layer a
`examples.e2e.Choice`: format × N:M pattern × group × scale kind × activation format ×
calibration option (none, Wanda, SmoothQuant, both).

1. **Per-layer profile**: every candidate choice of every layer is compressed, run through the
   golden integer GEMM on a sample of that layer's calibration inputs (its relative output
   error ``Σ (y − ŷ)² / Σ y²`` against the float ``y = x @ W``, for the tables), and run end
   to end with only that layer compressed on a subset of the calibration sentences: its
   embedding cosine drop. Layer output error alone is a poor proxy (FFN down's error at a
   given SQNR costs far more or less depending on which outlier channels it hits).
2. **Prediction**: the cosine drops of the layers add up: predicted cosine
   ``1 − Σ_l drop_l``.
3. **Search**: a Lagrangian relaxation of the multiple-choice knapsack (bisection on the
   multiplier), then a greedy pass that spends the remaining budget; the objective is cycles
   (ties: bits) under an accuracy floor, or accuracy under a bits-per-weight or cycle budget.
4. **Measurement**: the plan runs end to end (`examples.e2e`) on the held-out evaluation
   sentences: mean, worst and 5th-percentile cosine to the float model.

``--report`` runs the whole study written to ``docs/RESULTS.md`` (uniform choices, Pareto
fronts, the accuracy targets, prune/quantize interplay, Wanda and SmoothQuant ablations);
``--rtl`` runs one encoder layer's six GEMMs of the plan on the simulated RTL; ``--check
PLAN.json`` recomputes a plan's claimed metric independently.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.compress import compress
from golden.gemm import dequantize_weights, gemm_raw
from golden.sparsity import parse_sparsity, prune_nm

from .e2e import (
    DATA,
    LAYERS,
    Choice,
    Encoder,
    cosine_stats,
    load_encoder,
    load_sentences,
    split_sentences,
)
from .minilm import PLAN_BEGIN as BEGIN
from .minilm import PLAN_END as END
from .minilm import quantize_x

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PLAN_FORMAT = "upe-compression-plan"
PLAN_VERSION = 1
SPARSITIES = ("dense", "4:8", "2:4", "2:8", "1:4")


def _log(msg: str) -> None:
    print(f"[plan] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the space


def candidate_choices() -> list[Choice]:
    """Every choice the planner considers (before the array's enabled modes filter them)."""
    int8 = dict(fmt="int8", scale_kind="int")
    int4_32 = dict(fmt="int4", scale_kind="int", group=32)
    int4_128 = dict(fmt="int4", scale_kind="int", group=128)
    mxfp4 = dict(fmt="fp4_e2m1", scale_kind="pow2")
    patterns = [
        (int8, SPARSITIES),
        (int4_32, ("dense", "4:8", "2:4")),
        (int4_128, SPARSITIES),
        (dict(fmt="uint4", scale_kind="int", group=128), ("dense",)),
        (dict(fmt="int2", scale_kind="int", group=128), ("dense", "4:8", "2:4")),
        (dict(fmt="ternary", scale_kind="int"), ("dense", "2:4")),
        (mxfp4, ("dense", "4:8", "2:4")),
        (dict(mxfp4, act="mxint8"), ("dense", "2:4")),
        (dict(fmt="mxint8", scale_kind="pow2", act="mxint8"), ("dense", "4:8", "2:4")),
    ]
    out = [Choice(sparsity=sp, **w) for w, sps in patterns for sp in sps]
    out += [Choice(sparsity=sp, calib="wanda", **int8) for sp in ("4:8", "2:4", "1:4")]
    out += [Choice(sparsity=sp, calib="wanda", **int4_128) for sp in ("4:8", "2:4", "2:8")]
    out += [Choice(sparsity="2:4", calib="wanda", **mxfp4)]
    out += [Choice(sparsity=sp, calib="smooth", **int8) for sp in ("dense", "2:4")]
    out += [Choice(calib="smooth", **w) for w in (int4_32, int4_128)]
    out += [Choice(sparsity="2:4", calib="smooth+wanda", **w) for w in (int8, int4_128)]
    return out


def uniform_choices() -> list[Choice]:
    """The uniform plans (same choice in every layer) measured and marked in the plots."""
    return [Choice("int8"), Choice("int8", "2:4"),
            Choice("int4", group=32), Choice("int4", group=128),
            Choice("fp4_e2m1", scale_kind="pow2"),
            Choice("mxint8", scale_kind="pow2", act="mxint8"), Choice("ternary")]


@dataclass(frozen=True)
class Array:
    """An array configuration with its analytic timing."""

    cfg: object  # hw.config.ArrayConfig
    timing: object  # flows.perf.ArrayTiming

    @classmethod
    def load(cls, preset_name: str, config: str | None = None) -> Array:
        """The array of a preset (or configuration file) with its timing."""
        from flows.perf import ArrayTiming
        from gen.emit import manifest
        from gen.presets import preset

        cfg = preset(preset_name)
        if config:
            from hw.config import ArrayConfig

            cfg = ArrayConfig.from_file(config, base=cfg)
        return cls(cfg, ArrayTiming.from_manifest(manifest(cfg)))

    def step(self, choice: Choice) -> int:
        """Dense-equivalent k per beat of a choice's mode on this array."""
        return self.cfg.step_k(choice.fmt, choice.sparsity)

    def runs(self, choice: Choice, K: int) -> bool:
        """Whether the array can run this choice on a layer of reduction length ``K``."""
        from hw.config import ConfigError, Mode

        mode = Mode(choice.fmt, choice.sparsity, choice.scale_kind,
                    mx_act=choice.act == "mxint8")
        try:
            step = self.cfg.check_mode(mode)
            k_padded = math.ceil(K / step) * step if choice.group is None else K
            group = (32 if choice.scale_kind == "pow2" else k_padded) if choice.group is None \
                else choice.group
            self.cfg.check_mode(mode, group=group, k=k_padded)
        except (ConfigError, ValueError):
            return False
        return choice.group is None or K % choice.group == 0

    def cycles(self, choice: Choice, M: int, K: int, N: int) -> int:
        """Cycles of one GEMM in a choice's mode (the analytic model)."""
        from flows.perf import estimate_mode

        return estimate_mode(self.timing, M, N, K, choice.fmt, choice.sparsity,
                             choice.scale_kind, group=choice.group, mx_act=choice.act == "mxint8",
                             scale_bits=self.cfg.scale_bits).cycles


# ----------------------------------------------------------------------------- profiling


@dataclass
class Profile:
    """Per-layer, per-choice measurements the search works on (arrays ``[L, C]``)."""

    names: list[str]
    choices: list[Choice]
    shapes: dict[str, tuple[int, int]]
    noise: np.ndarray  # relative output error; inf where the array cannot run the choice
    bits: np.ndarray  # bits per weight (golden.metrics.bits_per_weight total)
    cycles: np.ndarray  # analytic cycles for `tokens` tokens
    drops: np.ndarray  # end-to-end cosine drop with only this layer compressed
    tokens: int

    @property
    def weights(self) -> np.ndarray:
        """Weight count of every layer."""
        return np.array([self.shapes[n][0] * self.shapes[n][1] for n in self.names], float)

    def drop(self) -> np.ndarray:
        """Measured end-to-end cosine drop of every (layer, choice) on its own."""
        return self.drops

    def totals(self, picks) -> dict:
        """Predicted accuracy drop, cycles and bits of a pick of every layer."""
        rows = np.arange(len(self.names))
        picks = np.asarray(picks)
        w = self.weights
        bits = float((self.bits[rows, picks] * w).sum())
        return {"cycles": int(self.cycles[rows, picks].sum()),
                "bits_per_weight": bits / float(w.sum()),
                "weight_bytes": bits / 8.0,
                "predicted_cosine": 1.0 - float(self.drop()[rows, picks].sum())}


def output_noise(enc: Encoder, name: str, comp, x: np.ndarray, y: np.ndarray) -> float:
    """Relative output error of a compressed layer on inputs ``x`` (float output ``y``)."""
    y_hat = enc.run_linear(x, comp) - comp.bias
    return float(np.sum((y - y_hat) ** 2) / np.sum(y * y))


def profile(enc: Encoder, array: Array, x_cal: dict, sens_sentences: list[str], tokens: int,
            choices: list[Choice] | None = None, sample: int = 256, seed: int = 0,
            cache: Path | None = None) -> Profile:
    """Measure every candidate of every layer: output error, end-to-end drop, bits, cycles.

    The end-to-end drop of a (layer, choice) is ``1 −`` the mean embedding cosine on
    ``sens_sentences`` (calibration sentences) when only that layer is compressed; the encoder
    layers before it run in float once. ``cache`` (a JSON file) keeps the result for reruns
    with the same inputs.
    """
    choices = choices or candidate_choices()
    names = enc.names
    key = {"names": names, "choices": [c.to_dict() for c in choices],
           "array": array.cfg.to_dict(), "sens": sens_sentences, "tokens": tokens,
           "sample": sample, "seed": seed, "n_calib_tokens": len(x_cal[names[0]])}
    if cache is not None and cache.exists():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            _log(f"profile from {cache}")
            arr = {k: np.array(data[k], dtype=float) for k in ("noise", "drop", "bits",
                                                                "cycles")}
            arr = {k: np.where(v >= 1e299, np.inf, v) for k, v in arr.items()}
            return Profile(names, choices, {n: tuple(v) for n, v in data["shapes"].items()},
                           arr["noise"], arr["bits"], arr["cycles"], arr["drop"], tokens)
    L, C = len(names), len(choices)
    noise, drop, bits, cycles = (np.full((L, C), np.inf) for _ in range(4))
    shapes = {}
    rng = np.random.default_rng(seed)
    h0, offsets = enc.embed(sens_sentences)
    hidden: list = []
    ref = enc.pool(enc.encode(h0, offsets, hidden=hidden), offsets)
    t0 = time.monotonic()
    for li, name in enumerate(names):
        w = enc.weight(name)
        K, N = w.shape
        shapes[name] = (K, N)
        x = x_cal[name]
        x = x[np.sort(rng.choice(len(x), min(sample, len(x)), replace=False))]
        y = x @ w
        start = int(name.split(".")[0])
        for ci, ch in enumerate(choices):
            if not array.runs(ch, K):
                continue
            comp = enc.compress(name, ch, x_cal[name])
            noise[li, ci] = output_noise(enc, name, comp, x, y)
            emb = enc.pool(enc.encode(hidden[start], offsets, {name: comp}, start=start),
                           offsets)
            drop[li, ci] = max(1.0 - cosine_stats(ref, emb)["mean"], 0.0)
            bits[li, ci] = comp.bits["total"]
            cycles[li, ci] = array.cycles(ch, tokens, K, N)
        ok = np.isfinite(drop[li])
        _log(f"profiled {name} ({K}x{N}): {ok.sum()} choices, drop "
             f"{drop[li][ok].min():.2g}..{drop[li][ok].max():.2g}, "
             f"{time.monotonic() - t0:.0f} s")
    if not np.isfinite(drop).any(axis=1).all():
        raise ValueError("the array runs none of the candidate choices on some layer")
    prof = Profile(names, choices, shapes, noise, bits, cycles, drop, tokens)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "shapes": shapes, **{
            k: np.where(np.isfinite(v), v, 1e300).tolist() for k, v in
            (("noise", noise), ("drop", drop), ("bits", bits), ("cycles", cycles))}}))
    return prof


# ----------------------------------------------------------------------------- the search


def minimize(f: np.ndarray, g: np.ndarray, limit: float, allowed: np.ndarray | None = None,
             starts=()):
    """Pick one option per row minimizing ``Σ f`` subject to ``Σ g <= limit``.

    Lagrangian relaxation (``min f + λ·g`` per row, bisection on λ), then, from every
    feasible plan the bisection met, greedy single-row moves that lower ``Σ f`` while ``Σ g``
    stays within ``limit`` (``starts`` adds plans to start from); the best result is returned,
    or None when even ``min Σ g`` exceeds the limit.
    """
    f = np.where(np.isfinite(f), f, np.inf)
    g = np.where(np.isfinite(g), g, np.inf)
    if allowed is not None:
        f = np.where(allowed, f, np.inf)
        g = np.where(allowed, g, np.inf)
    rows = np.arange(f.shape[0])
    usable = np.isfinite(f) & np.isfinite(g)
    if not usable.any(axis=1).all():
        return None

    f0 = np.where(usable, f, 0.0)
    g0 = np.where(usable, g, 0.0)

    def pick(lam):
        cost = f0 + lam * g0 if lam < np.inf else g0 + 1e-12 * f0
        return np.argmin(np.where(usable, cost, np.inf), axis=1)

    best_g = pick(np.inf)
    if g[rows, best_g].sum() > limit:
        return None
    starts = [best_g, *(np.asarray(p) for p in starts)]
    picks = pick(0.0)
    if g[rows, picks].sum() <= limit:
        starts.append(picks)
    else:
        lo, hi = 0.0, 1.0
        while g[rows, pick(hi)].sum() > limit and hi < 1e300:
            hi *= 4.0
        for _ in range(200):
            mid = math.sqrt(lo * hi) if lo > 0 else hi / 1e12
            if g[rows, pick(mid)].sum() <= limit:
                hi = mid
                starts.append(pick(mid))
            else:
                lo = mid
            if lo > 0 and hi / lo < 1 + 1e-9:
                break
        starts.append(pick(hi))

    def greedy(picks):
        picks = picks.copy()
        while True:
            total_g = g[rows, picks].sum()
            cur_f = f[rows, picks][:, None]
            cur_g = g[rows, picks][:, None]
            gain = np.where(usable & (g - cur_g + total_g <= limit), cur_f - f, -np.inf)
            r, c = np.unravel_index(np.argmax(gain), gain.shape)
            if gain[r, c] <= 0:
                return picks
            picks[r] = c

    done = [greedy(p) for p in {tuple(p): p for p in starts if g[rows, p].sum() <= limit}
            .values()]
    return min(done, key=lambda p: (f[rows, p].sum(), g[rows, p].sum()))


def plan_for(prof: Profile, budget: dict, allowed: np.ndarray | None = None):
    """Picks for one budget: ``{"min_cosine": c}``, ``{"max_bits": b}`` or ``{"max_cycles": n}``.

    Under an accuracy floor the objective is ``objective`` (``cycles``, ties broken by bits, or
    ``bits``, ties broken by cycles); under a bits or cycle budget it is accuracy.
    """
    w = prof.weights[:, None]
    bits_total = prof.bits * w
    drop = prof.drop()
    if "min_cosine" in budget:
        by_cycles = prof.cycles + 1e-9 * bits_total
        by_bits = bits_total + 1e-6 * prof.cycles
        limit = 1.0 - budget["min_cosine"]
        bits_first = budget.get("objective", "cycles") == "bits"
        f, other = (by_bits, by_cycles) if bits_first else (by_cycles, by_bits)
        seed = minimize(other, drop, limit, allowed)  # the other objective's plan: one start
        return minimize(f, drop, limit, allowed, () if seed is None else (seed,))
    if "max_bits" in budget:
        return minimize(drop, bits_total, budget["max_bits"] * float(w.sum()), allowed)
    if "max_cycles" in budget:
        return minimize(drop, prof.cycles, budget["max_cycles"], allowed)
    raise ValueError(f"unknown budget {budget!r}")


def solve(prof: Profile, budget: dict, check=None, allowed=None, tries: int = 8):
    """`plan_for`; under an accuracy floor, tightened until the calibration sentences meet it.

    ``check(layers)`` measures a plan end to end on calibration sentences (never the held-out
    ones). While it falls short of the floor, the predicted drop allowed is cut by 20 % and
    the plan solved again. Returns ``(picks, budget with the floor solved at, calibration
    statistics)``.
    """
    picks = plan_for(prof, budget, allowed)
    if picks is None or check is None or "min_cosine" not in budget:
        return picks, budget, None
    floor = solved = budget["min_cosine"]
    stats = check(plan_layers(prof, picks))
    for _ in range(tries):
        if stats["mean"] >= floor:
            break
        solved = 1.0 - (1.0 - solved) * 0.8
        tighter = plan_for(prof, dict(budget, min_cosine=solved), allowed)
        if tighter is None:
            break
        picks = tighter
        stats = check(plan_layers(prof, picks))
    return picks, dict(budget, solved_floor=round(solved, 6)), stats


def front(prof: Profile, cost: str, allowed=None, points: int = 60) -> list[np.ndarray]:
    """Plans along the predicted accuracy-vs-``cost`` front (``cycles`` or ``bits``)."""
    plans, seen = [], set()
    drop = prof.drop()
    lo = float(np.where(np.isfinite(drop), drop, np.inf).min(axis=1).sum())
    for floor in 1.0 - np.geomspace(max(lo, 1e-6) * 1.001, 0.5, points):
        picks = plan_for(prof, {"min_cosine": floor, "objective": cost}, allowed)
        if picks is None:
            continue
        key = tuple(picks)
        if key not in seen:
            seen.add(key)
            plans.append(picks)
    return plans


# ----------------------------------------------------------------------------- plans


def plan_layers(prof: Profile, picks) -> dict[str, Choice]:
    """Layer name → chosen compression of a pick."""
    return {name: prof.choices[int(c)] for name, c in zip(prof.names, picks, strict=True)}


def compress_plan(enc: Encoder, layers: dict[str, Choice], x_cal: dict) -> dict:
    """Compressed layer files of a plan, calibrated on ``x_cal``."""
    return {name: enc.compress(name, ch, x_cal[name]) for name, ch in layers.items()}


def measure(enc: Encoder, layers: dict[str, Choice], x_cal: dict, sentences, reference):
    """End-to-end cosine statistics of a plan on ``sentences``."""
    enc.gemm_errors = 0
    emb = enc.forward(sentences, compress_plan(enc, layers, x_cal))
    stats = cosine_stats(reference, emb)
    stats["gemm_errors"] = int(enc.gemm_errors)
    return stats


def plan_document(prof: Profile, picks, array: Array, budget: dict, measured: dict | None,
                  split: dict) -> dict:
    """The JSON plan: every layer's choice and figures, totals, predicted and measured."""
    layers = []
    for li, (name, ci) in enumerate(zip(prof.names, picks, strict=True)):
        K, N = prof.shapes[name]
        layers.append({"name": name, "K": K, "N": N, "choice": prof.choices[ci].to_dict(),
                       "label": prof.choices[ci].label,
                       "noise_db": -10 * math.log10(prof.noise[li, ci]),
                       "bits_per_weight": float(prof.bits[li, ci]),
                       "cycles": int(prof.cycles[li, ci]),
                       "predicted_drop": float(prof.drop()[li, ci])})
    totals = prof.totals(picks)
    return {"format": PLAN_FORMAT, "version": PLAN_VERSION, "model": "all-MiniLM-L6-v2",
            "n_layers": len(prof.names) // 6, "array": array.cfg.to_dict(),
            "tokens_per_sequence": prof.tokens, "budget": budget, "sentences": split,
            "layers": layers,
            "totals": {k: totals[k] for k in ("cycles", "bits_per_weight", "weight_bytes")},
            "predicted": {"mean_cosine": totals["predicted_cosine"]},
            "measured": measured}


def read_plan(path: str) -> dict:
    """Load and check a JSON plan written by this module."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read plan {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT:
        raise ValueError(f"{path} is not a compression plan (format {PLAN_FORMAT!r})")
    if doc.get("version") != PLAN_VERSION:
        raise ValueError(f"{path}: plan version {doc.get('version')!r}, expected {PLAN_VERSION}")
    try:
        doc["choices"] = {ly["name"]: Choice.from_dict(ly["choice"]) for ly in doc["layers"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: bad layer entry ({exc})") from None
    return doc


# ----------------------------------------------------------------------------- interplay


def interplay(enc: Encoder, x_cal: dict, combos, sample: int = 256, seed: int = 1) -> list[dict]:
    """Per layer: prune→quantize vs quantize→prune, and combination vs sum of errors.

    Weight-only errors (float activations), relative output error on a calibration sample:
    ``P`` magnitude N:M pruning alone, ``Q`` quantization alone (dense), ``PQ`` the
    compressor's order (prune, then group statistics over the kept weights, then quantize),
    ``QP`` quantize the dense matrix then prune the quantized weights by magnitude.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for name in enc.names:
        w = enc.weight(name)
        x = x_cal[name]
        x = x[np.sort(rng.choice(len(x), min(sample, len(x)), replace=False))]
        y = x @ w
        yy = float(np.sum(y * y))

        def err(wt, x=x, y=y, yy=yy):
            return float(np.sum((y - x @ wt) ** 2)) / yy

        for ch in combos:
            n, m = parse_sparsity(ch.sparsity)
            kw = dict(fmt=ch.fmt, group=ch.group, scale_kind=ch.scale_kind)
            w_q = dequantize_weights(compress(w, **kw))
            e = {"P": err(np.where(prune_nm(w, n, m), w, 0.0)), "Q": err(w_q),
                 "PQ": err(dequantize_weights(compress(w, sparsity=ch.sparsity, **kw))),
                 "QP": err(np.where(prune_nm(w_q, n, m), w_q, 0.0))}
            rows.append({"layer": name, "choice": ch.label, **e})
    return rows


# ----------------------------------------------------------------------------- RTL


def run_plan_on_rtl(enc: Encoder, array: Array, layers: dict[str, Choice], x_cal: dict,
                    sentence: str, layer_index: int, tokens: int) -> list[dict]:
    """One encoder layer's six GEMMs of a plan on the RTL, bit-exact against golden.

    The inputs are the plan's own quantized activations of the first ``tokens`` tokens of
    ``sentence`` (compressed forward pass); full K and N.
    """
    from verif.runner import run_layer

    cfg = array.cfg
    plan = compress_plan(enc, layers, x_cal)
    capture: dict = {}
    h, offsets = enc.embed([sentence])
    enc.encode(h, offsets, plan, capture=capture)
    out = []
    for name in [n for n in enc.names if n.startswith(f"{layer_index}.")]:
        comp = plan[name]
        x = capture[name][0][:tokens]
        if comp.smooth is not None:
            x = x / comp.smooth
        x_q, x_exp, _, _ = quantize_x(x, comp.choice.act)
        acc, err = gemm_raw(x_q, comp.layer, x_exp=x_exp, frac_bits=cfg.frac_bits,
                            t_min=cfg.t_min, t_max=cfg.t_max)
        t0 = time.monotonic()
        res = run_layer(cfg, comp.layer, x_q, x_exp=x_exp)
        K, N = comp.layer.shape
        row = {"layer": name, "choice": comp.choice.label, "M": int(x_q.shape[0]), "K": int(K),
               "N": int(N), "rtl_cycles": int(res.report["cycles"]),
               "model_cycles": array.cycles(comp.choice, int(x_q.shape[0]), int(K), int(N)),
               "exact": bool(np.array_equal(res.y, acc) and np.array_equal(res.err, err)),
               "wall_s": round(time.monotonic() - t0, 1)}
        _log(f"RTL {name} {row['choice']} {row['M']}x{K}x{N}: {row['rtl_cycles']} cycles "
             f"(model {row['model_cycles']}), {'exact' if row['exact'] else 'MISMATCH'}, "
             f"{row['wall_s']} s")
        out.append(row)
    return out


# ----------------------------------------------------------------------------- report


def _fmt_cos(v: float) -> str:
    return f"{v:.4f}"


def plot_pareto(path: Path, fronts: dict, uniform: list[dict], plans: list[dict]) -> None:
    """The accuracy-vs-cycles and accuracy-vs-bits plot with the uniform choices marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, key, xlabel in ((axes[0], "cycles", "cycles per 128-token sequence (analytic)"),
                            (axes[1], "bits", "bits per weight")):
        pts = fronts[key]
        xs = [p["cycles"] if key == "cycles" else p["bits_per_weight"] for p in pts]
        ax.plot(xs, [1.0 - p["predicted_cosine"] for p in pts], "-", color="0.6", lw=1,
                label="planner front (predicted)")
        for p in plans:
            x = p["cycles"] if key == "cycles" else p["bits_per_weight"]
            ax.plot(x, 1.0 - p["measured"]["mean"], "o", color="#1f77b4", ms=6)
            ax.annotate(p["tag"], (x, 1.0 - p["measured"]["mean"]), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
        for u in uniform:
            x = u["cycles"] if key == "cycles" else u["bits_per_weight"]
            ax.plot(x, 1.0 - u["measured"]["mean"], "s", color="#d62728", ms=6)
            ax.annotate(u["label"], (x, 1.0 - u["measured"]["mean"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.plot([], [], "o", color="#1f77b4", label="plans (measured)")
        ax.plot([], [], "s", color="#d62728", label="uniform choices (measured)")
        ax.axhline(0.01, color="0.8", lw=0.8, ls="--")
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        ax.invert_yaxis()
        ax.set_ylabel("1 − mean embedding cosine to float (held-out sentences, log)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("all-MiniLM-L6-v2, every linear layer compressed: planner vs uniform choices")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the planner's generated block of ``RESULTS.md``."""
    old = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{text.rstrip()}\n{END}\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new)


def _plan_row(tag: str, p: dict, base: dict) -> str:
    m = p["measured"]
    budget = f" {p['budget_text']} |" if "budget_text" in p else ""
    return (f"| {tag} |{budget} {_fmt_cos(p['predicted_cosine'])} | "
            f"{_fmt_cos(m['mean'])} | {_fmt_cos(m['p5'])} | {_fmt_cos(m['worst'])} | "
            f"{p['cycles']:,} | {base['cycles'] / p['cycles']:.2f}× | "
            f"{p['bits_per_weight']:.3f} | {p['weight_bytes'] / 2**20:.2f} |")


def report(args, enc, array, prof, x_cal, check, ev, reference, split) -> int:
    """The whole study: uniform choices, planned points, targets, interplay, ablations."""
    cfg = array.cfg
    t_start = time.monotonic()
    idx = {ch: i for i, ch in enumerate(prof.choices)}
    L = len(prof.names)
    uniform = []
    for ch in uniform_choices():
        if ch not in idx or not np.isfinite(prof.noise[:, idx[ch]]).all():
            continue
        picks = np.full(L, idx[ch])
        t = prof.totals(picks)
        m = measure(enc, plan_layers(prof, picks), x_cal, ev, reference)
        uniform.append({"label": ch.label, "choice": ch, **t, "measured": m})
        _log(f"uniform {ch.label}: measured {m['mean']:.4f} (predicted "
             f"{t['predicted_cosine']:.4f}), {t['cycles']} cycles, {t['bits_per_weight']:.3f} b")
    int8 = next(u for u in uniform if u["label"] == "int8/ch dense")
    best = max(uniform, key=lambda u: u["measured"]["mean"])

    def planned(tag, budget, allowed=None):
        picks, budget, _ = solve(prof, budget, check, allowed)
        if picks is None:
            return None
        t = prof.totals(picks)
        m = measure(enc, plan_layers(prof, picks), x_cal, ev, reference)
        text = ", ".join(f"{k.replace('_', ' ')} {v:g}" if not isinstance(v, str) else v
                         for k, v in budget.items())
        _log(f"plan {tag} ({text}): measured {m['mean']:.4f} (predicted "
             f"{t['predicted_cosine']:.4f}), {t['cycles']} cycles, {t['bits_per_weight']:.3f} b")
        return {"tag": tag, "budget": budget, "budget_text": text, "picks": picks, **t,
                "measured": m}

    plans = []
    target = planned("P99", {"min_cosine": 0.99})
    plans.append(target)
    floor = best["measured"]["mean"]
    if plan_for(prof, {"min_cosine": floor}) is None:
        floor = best["predicted_cosine"]  # the uniform plan itself meets its own prediction
    same = planned("Pbest", {"min_cosine": round(floor, 6)})
    if same is not None:
        plans.append(same)
    same_bits = planned("Pbest-bits", {"min_cosine": same["budget"]["min_cosine"],
                                       "objective": "bits"}) if same else None
    if same_bits is not None:
        plans.append(same_bits)
    for tag, budget in (("P98", {"min_cosine": 0.98}), ("B4.5", {"max_bits": 4.5})):
        p = planned(tag, budget)
        if p is not None:
            plans.append(p)

    # Calibration ablation: the 0.99 plan with a subset of the calibration options
    ablation = []
    for label, keep in (("none", {"none"}), ("+Wanda", {"none", "wanda"}),
                        ("+SmoothQuant", {"none", "smooth"}),
                        ("all (Wanda, SmoothQuant, both)", set(CALIB_ALL))):
        allowed = np.array([[ch.calib in keep for ch in prof.choices]] * L)
        p = target if keep == set(CALIB_ALL) else planned(f"P99 {label}", {"min_cosine": 0.99},
                                                          allowed)
        if p is not None:
            n_cal = {c: sum(prof.choices[i].calib == c for i in p["picks"]) for c in CALIB_ALL}
            ablation.append((label, p, n_cal))

    fronts = {}
    for key in ("cycles", "bits"):
        fronts[key] = [prof.totals(p) for p in front(prof, key)]
    inter = interplay(enc, x_cal, [Choice("int4", "2:4", group=128), Choice("int8", "2:4")],
                      sample=args.sample)
    rtl = None
    if args.rtl:
        rtl = run_plan_on_rtl(enc, array, plan_layers(prof, target["picks"]), x_cal, ev[0],
                              args.rtl_layer, args.rtl_tokens)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_pareto(out / "plan_pareto.png", fronts, uniform, plans)
    data = ROOT / "build" / "plan" / "report.json"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(json.dumps({"fronts": fronts, "uniform": [
        {k: v for k, v in u.items() if k != "choice"} for u in uniform], "plans": [
        {k: (v.tolist() if k == "picks" else v) for k, v in p.items()} for p in plans]}))
    doc = plan_document(prof, target["picks"], array, target["budget"], target["measured"], split)
    doc["rtl"] = rtl
    (out / "plan_minilm.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = report_text(args, cfg, prof, uniform, plans, int8, best, same, same_bits, target,
                       ablation, inter, rtl, split, time.monotonic() - t_start)
    write_section(out / "RESULTS.md", text)
    _log(f"wrote {out / 'RESULTS.md'} (planner section), {out / 'plan_pareto.png'}, "
         f"{out / 'plan_minilm.json'}")
    if rtl and not all(r["exact"] for r in rtl):
        return 1
    return 0


CALIB_ALL = ("none", "wanda", "smooth", "smooth+wanda")


def report_text(args, cfg, prof, uniform, plans, int8, best, same, same_bits, target, ablation,
                inter, rtl, split, seconds) -> str:
    """The planner section of docs/RESULTS.md."""
    L = len(prof.names)
    lines = [
        "## Co-design planner: every layer compressed, measured end to end",
        "",
        f"Generated by `python -m examples.plan --report{' --rtl' if rtl else ''}` "
        f"(`make plan`) in {seconds / 60:.0f} min after profiling. Array: `{cfg.name}` "
        f"({cfg.rows}×{cfg.cols} PEs, {cfg.slots} slots, window {cfg.window}); cycles are the "
        f"analytic model's (`flows.perf.estimate_mode`, full-width ports) for the {L} linear "
        f"layers of one {prof.tokens}-token sequence (attention score products and the float "
        "LayerNorm / softmax / GELU are not counted). Bits per weight and size cover the "
        f"linear weights ({int(prof.weights.sum()):,} weights; embeddings stay float).",
        "",
        f"* **Sentences**: {split['total']} real English sentences from `{split['file']}` "
        "(the prose of the Python 3.11 reference documentation, PSF licence; source in the "
        f"file's header), shuffled with seed {split['seed']}: {split['calibration']} for "
        f"calibration, {split['evaluation']} held out for every figure below.",
        "* **Metric**: cosine similarity of each held-out sentence's embedding (mean pooling, "
        "L2-normalised) to the float64 model's; mean, 5th percentile and worst sentence.",
        "* **Evaluation** (`examples.e2e`): the whole numpy forward pass with all "
        f"{L} linear layers (query, key, value, attention output, FFN up, FFN down × 6) "
        "through `golden.gemm.gemm_raw` in their chosen mode: activations quantized as the "
        "array takes them (int8 per token, or MXINT8 blocks of 32), the exact integer "
        "result times the scales, float bias. SmoothQuant factors divide the layer's input.",
        f"* **Planner** (`examples.plan`): {len(prof.choices)} candidate choices per layer "
        "(format × N:M × group × scale kind × activation format × calibration none / Wanda / "
        "SmoothQuant / both) filtered by the array's enabled modes; per-layer relative output "
        f"error on {args.sample} calibration tokens; per (layer, choice) the end-to-end "
        f"cosine drop on {args.sens_sentences} calibration sentences when only that layer is "
        "compressed; predicted cosine `1 − Σ_l drop_l`; Lagrangian "
        "relaxation + greedy fill for the budget; under an accuracy floor the predicted drop "
        "allowed is cut by 20 % until the plan meets the floor on the calibration sentences "
        "(`solved floor` below), never looking at the held-out ones.",
        "",
        "### Uniform choices (the same mode in every layer)",
        "",
        "| choice | predicted | mean cosine | p5 | worst | cycles | vs int8 | bits/weight "
        "| MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_plan_row(u["label"], u, int8) for u in uniform]
    lines += [
        "",
        "### Planned points",
        "",
        "| plan | budget | predicted | mean cosine | p5 | worst | cycles | vs int8 "
        "| bits/weight | MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_plan_row(p["tag"], p, int8) for p in plans]
    lines += ["", "![planner Pareto fronts](plan_pareto.png)", "", "### Targets", ""]
    bm = best["measured"]["mean"]
    if same is not None:
        ok = same["measured"]["mean"] >= bm
        lines.append(
            f"* **Same accuracy as the best uniform choice** (`{best['label']}`, mean "
            f"{bm:.5f}, {best['cycles']:,} cycles, {best['bits_per_weight']:.3f} "
            f"bits/weight): plan `Pbest` measures {same['measured']['mean']:.5f} "
            f"({'at or above' if ok else '**below**'} it) with {same['cycles']:,} cycles "
            f"({best['cycles'] / same['cycles']:.2f}× fewer, {best['cycles'] - same['cycles']:,} "
            f"saved) and {same['bits_per_weight']:.3f} bits/weight "
            f"({same['bits_per_weight'] - best['bits_per_weight']:+.3f} vs uniform)."
            + (f" Minimizing bits at the same floor (`Pbest-bits`): "
               f"{_fmt_cos(same_bits['measured']['mean'])}, {same_bits['cycles']:,} cycles, "
               f"{same_bits['bits_per_weight']:.3f} bits/weight." if same_bits else ""))
    lines.append(
        f"* **Fewest cycles at mean cosine ≥ 0.99** (plan `P99`, JSON `plan_minilm.json`): "
        f"measured {_fmt_cos(target['measured']['mean'])} (p5 "
        f"{_fmt_cos(target['measured']['p5'])}, worst {_fmt_cos(target['measured']['worst'])}),"
        f" {target['cycles']:,} cycles against uniform int8's {int8['cycles']:,} "
        f"({int8['cycles'] / target['cycles']:.2f}× fewer), {target['bits_per_weight']:.3f} "
        f"bits/weight against {int8['bits_per_weight']:.3f}.")
    lines += ["", "Choices of plan `P99` (noise: layer output SQNR on calibration tokens):", "",
              "| layer | K×N | choice | output SQNR dB | bits/weight | cycles |",
              "|---|---|---|---|---|---|"]
    for li, (name, ci) in enumerate(zip(prof.names, target["picks"], strict=True)):
        K, N = prof.shapes[name]
        lines.append(f"| {name} | {K}×{N} | {prof.choices[ci].label} | "
                     f"{-10 * math.log10(prof.noise[li, ci]):.1f} | {prof.bits[li, ci]:.3f} | "
                     f"{int(prof.cycles[li, ci]):,} |")
    lines += ["", "### Wanda and SmoothQuant in the plan", "",
              "The `P99` budget solved with a subset of the calibration options:", "",
              "| options | predicted | mean cosine | cycles | bits/weight | layers none / "
              "Wanda / SmoothQuant / both |", "|---|---|---|---|---|---|"]
    for label, p, n_cal in ablation:
        lines.append(f"| {label} | {_fmt_cos(p['predicted_cosine'])} | "
                     f"{_fmt_cos(p['measured']['mean'])} | {p['cycles']:,} | "
                     f"{p['bits_per_weight']:.3f} | "
                     + " / ".join(str(n_cal[c]) for c in CALIB_ALL) + " |")
    lines += ["", "### Interplay: pruning and quantization are not orthogonal", "",
              "Weight-only relative output error (float activations, calibration tokens) of "
              "magnitude pruning alone (P), quantization alone (Q), the compressor's "
              "prune→quantize (PQ: group statistics over the kept weights) and "
              "quantize→prune (QP). *ratio* = PQ / (P + Q): 1 would be orthogonal errors.", "",
              "| layer | choice | P dB | Q dB | P+Q dB | PQ dB | QP dB | ratio PQ/(P+Q) |",
              "|---|---|---|---|---|---|---|---|"]

    def db(v):
        return f"{-10 * math.log10(v):.2f}"

    for r in inter:
        lines.append(f"| {r['layer']} | {r['choice']} | {db(r['P'])} | {db(r['Q'])} | "
                     f"{db(r['P'] + r['Q'])} | {db(r['PQ'])} | {db(r['QP'])} | "
                     f"{r['PQ'] / (r['P'] + r['Q']):.3f} |")
    for label in sorted({r["choice"] for r in inter}):
        rs = [r for r in inter if r["choice"] == label]
        ratios = [r["PQ"] / (r["P"] + r["Q"]) for r in rs]
        better = sum(r["PQ"] < r["QP"] for r in rs)
        lines.append("")
        lines.append(f"* {label}: PQ / (P + Q) from {min(ratios):.3f} to {max(ratios):.3f} "
                     f"(median {np.median(ratios):.3f}); prune→quantize beats quantize→prune "
                     f"in {better} of {len(rs)} layers.")
    lines += ["", "### The plan on the RTL", ""]
    if rtl:
        n_ok = sum(r["exact"] for r in rtl)
        lines += [f"Encoder layer {args.rtl_layer}'s six GEMMs of plan `P99` (the first "
                  f"{args.rtl_tokens} tokens of the first held-out sentence, their quantized "
                  f"activations from the plan's own forward pass; full K and N) through "
                  f"`verif.runner.run_layer` on `{cfg.name}` (Verilator): **{n_ok} of "
                  f"{len(rtl)} bit-exact** against `golden.gemm.gemm_raw` (accumulator and "
                  "error flags).", "",
                  "| layer | choice | M×K×N | RTL cycles | analytic cycles | RTL = golden "
                  "| wall s |", "|---|---|---|---|---|---|---|"]
        for r in rtl:
            lines.append(f"| {r['layer']} | {r['choice']} | {r['M']}×{r['K']}×{r['N']} | "
                         f"{r['rtl_cycles']:,} | {r['model_cycles']:,} | "
                         f"{'exact' if r['exact'] else '**MISMATCH**'} | {r['wall_s']} |")
    else:
        lines.append("Not run (`--rtl` not given).")
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    """Command-line entry point (``make plan``)."""
    parser = argparse.ArgumentParser(prog="python -m examples.plan",
                                     description=__doc__.split("\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--min-cosine", type=float, help="accuracy floor (predicted mean)")
    budget.add_argument("--max-bits", type=float, help="bits per weight budget")
    budget.add_argument("--max-cycles", type=int, help="cycle budget (analytic, per sequence)")
    parser.add_argument("--objective", choices=("cycles", "bits"), default="cycles",
                        help="what an accuracy floor minimizes (default cycles)")
    parser.add_argument("--preset", default="default", help="array preset (gen.presets)")
    parser.add_argument("--config", help="JSON file overriding preset parameters")
    parser.add_argument("--tokens", type=int, default=128,
                        help="tokens per sequence for the cycle count (default 128)")
    parser.add_argument("--calib-sentences", type=int, default=96)
    parser.add_argument("--eval-sentences", type=int, default=None,
                        help="use only the first N held-out sentences (default all)")
    parser.add_argument("--sens-sentences", type=int, default=6,
                        help="calibration sentences for the per-layer end-to-end drops "
                             "(default 6)")
    parser.add_argument("--sample", type=int, default=128,
                        help="calibration tokens per layer for the error profile")
    parser.add_argument("--layers", type=int, default=LAYERS, help="encoder layers (1..6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences", default=str(DATA), help="sentence file")
    parser.add_argument("--out-json", help="write the plan here")
    parser.add_argument("--check", metavar="PLAN", help="recompute a plan's measured metric")
    parser.add_argument("--report", action="store_true",
                        help="the whole study into docs/RESULTS.md (planner section)")
    parser.add_argument("--out", default=str(DOCS), help="folder for --report outputs")
    parser.add_argument("--rtl", action="store_true",
                        help="run one encoder layer's GEMMs of the plan on the RTL")
    parser.add_argument("--rtl-layer", type=int, default=0)
    parser.add_argument("--rtl-tokens", type=int, default=4)
    args = parser.parse_args(argv)
    for name in ("tokens", "calib_sentences", "sens_sentences", "sample", "rtl_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.min_cosine is not None and not 0.0 < args.min_cosine < 1.0:
        parser.error("--min-cosine must lie in (0, 1)")
    if not 1 <= args.layers <= LAYERS:
        parser.error(f"--layers must lie in 1..{LAYERS}")
    if not 0 <= args.rtl_layer < args.layers:
        parser.error(f"--rtl-layer must lie in 0..{args.layers - 1}")
    try:
        return run(args)
    except ValueError as exc:
        print(f"python -m examples.plan: error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    """Profile, plan, measure and report (the body of `main`)."""
    from hw.config import ConfigError

    try:
        array = Array.load(args.preset, args.config)
    except (KeyError, ConfigError, OSError) as exc:
        raise ValueError(f"array configuration: {exc}") from None
    doc = read_plan(args.check) if args.check else None
    try:
        sentences = load_sentences(Path(args.sentences))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read sentences: {exc}") from None
    cal, ev = split_sentences(sentences, args.calib_sentences, args.seed)
    if args.eval_sentences is not None:
        ev = ev[:args.eval_sentences]
    split = {"file": Path(args.sentences).resolve().relative_to(ROOT).as_posix()
             if Path(args.sentences).resolve().is_relative_to(ROOT) else args.sentences,
             "total": len(sentences), "seed": args.seed, "calibration": len(cal),
             "evaluation": len(ev)}
    enc = load_encoder(array.cfg, args.layers)
    _log(f"{len(cal)} calibration / {len(ev)} held-out sentences; array {array.cfg.name}")
    x_cal = enc.calibration_inputs(cal)
    reference = enc.forward(ev)
    if doc is not None:
        return check_plan(doc, enc, x_cal, ev, reference, split)
    prof = profile(enc, array, x_cal, cal[:args.sens_sentences], args.tokens,
                   sample=args.sample, seed=args.seed,
                   cache=ROOT / "build" / "plan" / f"profile-{array.cfg.name}-{args.layers}.json")
    sens = cal[:args.sens_sentences]
    sens_ref = enc.forward(sens)

    def check(layers):
        return measure(enc, layers, x_cal, sens, sens_ref)

    if args.report:
        return report(args, enc, array, prof, x_cal, check, ev, reference, split)
    if args.min_cosine is not None:
        budget = {"min_cosine": args.min_cosine, "objective": args.objective}
    elif args.max_bits is not None:
        budget = {"max_bits": args.max_bits}
    elif args.max_cycles is not None:
        budget = {"max_cycles": args.max_cycles}
    else:
        budget = {"min_cosine": 0.99, "objective": args.objective}
    picks, budget, _ = solve(prof, budget, check)
    if picks is None:
        raise ValueError(f"no plan meets the budget {budget} on {array.cfg.name}")
    measured = measure(enc, plan_layers(prof, picks), x_cal, ev, reference)
    doc = plan_document(prof, picks, array, budget, measured, split)
    if args.rtl:
        doc["rtl"] = run_plan_on_rtl(enc, array, plan_layers(prof, picks), x_cal, ev[0],
                                     args.rtl_layer, args.rtl_tokens)
    text = json.dumps(doc, indent=1) + "\n"
    if args.out_json:
        Path(args.out_json).write_text(text)
    else:
        sys.stdout.write(text)
    t = doc["totals"]
    _log(f"plan: predicted {doc['predicted']['mean_cosine']:.4f}, measured mean "
         f"{measured['mean']:.4f} (p5 {measured['p5']:.4f}, worst {measured['worst']:.4f}), "
         f"{t['cycles']} cycles, {t['bits_per_weight']:.3f} bits/weight, "
         f"{t['weight_bytes'] / 2**20:.2f} MiB")
    return 1 if doc.get("rtl") and not all(r["exact"] for r in doc["rtl"]) else 0


def check_plan(doc: dict, enc, x_cal, ev, reference, split) -> int:
    """Recompute a plan's end-to-end metric from its JSON and compare with its claim."""
    if doc["n_layers"] != enc.n_layers:
        raise ValueError(f"the plan is for {doc['n_layers']} encoder layers, not {enc.n_layers}")
    if set(doc["choices"]) != set(enc.names):
        raise ValueError("the plan does not name every linear layer exactly once")
    claimed = doc.get("measured") or {}
    if doc.get("sentences") != split:
        _log(f"note: the plan was measured on {doc.get('sentences')}, now {split}")
    got = measure(enc, doc["choices"], x_cal, ev, reference)
    same = all(abs(got[k] - claimed.get(k, math.nan)) <= 1e-9 for k in ("mean", "worst", "p5"))
    print(json.dumps({"claimed": claimed, "recomputed": got, "match": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
