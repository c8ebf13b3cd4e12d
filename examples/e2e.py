"""End-to-end evaluation: all-MiniLM-L6-v2 with every linear layer on the golden integer GEMM.

The whole sentence-embedding model (`examples.minilm.MiniLM`'s weights and tokenizer) runs in
numpy float64, except that each of its 36 linear layers (query, key, value, attention output,
FFN up, FFN down of the six encoder layers) can be given a `Choice`: the weights are compressed
by `golden.compress.compress` (after SmoothQuant smoothing and with a Wanda pruning score when
the choice says so), the layer's input is quantized as the hardware takes it (per-token int8,
or OCP MXINT8 blocks of 32 for the MX modes) and the product is the golden model's exact
integer result times the scales (`examples.minilm.golden_output`), plus the float bias.

The metric is what users of a sentence-embedding model see: the cosine similarity of each
sentence's embedding (mean pooling over its tokens, L2-normalised, as sentence-transformers
does) to the float model's. `evaluate` reports its mean, the worst sentence and the 5th
percentile.

The sentences (`examples/data/sentences.txt`) are real English prose, with their source and
licence stated at the top of the file; `split_sentences` cuts them into a calibration part and
a held-out evaluation part with a fixed seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from golden.calibrate import smooth_factors, wanda_saliency
from golden.compress import compress
from golden.layer import Layer
from golden.metrics import bits_per_weight

from .minilm import MiniLM, golden_output, model_dir, quantize_x

DATA = Path(__file__).resolve().parent / "data" / "sentences.txt"
HIDDEN = 384
LAYERS = 6

#: The linear layers of one encoder layer: short name -> tensor name (PyTorch [out, in]).
LINEAR_KINDS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ffn_up": "intermediate.dense",
    "ffn_down": "output.dense",
}
CALIBRATIONS = ("none", "wanda", "smooth", "smooth+wanda")
ACTIVATIONS = ("int8", "mxint8")


def linear_names(n_layers: int = LAYERS) -> list[str]:
    """``'0.query'``, ``'0.key'``, …, ``'5.ffn_down'``: the compressible layers, in order."""
    return [f"{i}.{kind}" for i in range(n_layers) for kind in LINEAR_KINDS]


def load_sentences(path: Path = DATA) -> list[str]:
    """Sentences of a text file, one a line; ``#`` lines and blank lines are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def split_sentences(sentences: list[str], n_calib: int, seed: int = 0):
    """Shuffle with ``seed`` and return ``(calibration, evaluation)``, disjoint."""
    if not 0 < n_calib < len(sentences):
        raise ValueError(f"need 0 < calibration sentences < {len(sentences)}, got {n_calib}")
    order = np.random.default_rng(seed).permutation(len(sentences))
    picked = [sentences[i] for i in order]
    return picked[:n_calib], picked[n_calib:]


# ----------------------------------------------------------------------------- choices


@dataclass(frozen=True)
class Choice:
    """The compression of one linear layer.

    Parameters
    ----------
    fmt : str
        Weight element format (SPEC §2).
    sparsity : str
        ``dense`` or an N:M pattern.
    scale_kind : str
        ``int`` or ``pow2``.
    group : int or None
        Group size along K; None is per channel for ``int`` (32 for ``pow2``).
    act : str
        Activation format on the array: ``int8`` (per token) or ``mxint8`` (``pow2`` only).
    calib : str
        ``none``, ``wanda`` (activation-aware pruning score), ``smooth`` (SmoothQuant, α = 0.5)
        or ``smooth+wanda``.
    """

    fmt: str
    sparsity: str = "dense"
    scale_kind: str = "int"
    group: int | None = None
    act: str = "int8"
    calib: str = "none"

    def __post_init__(self):
        if self.act not in ACTIVATIONS:
            raise ValueError(f"activation format must be int8 or mxint8, not {self.act!r}")
        if self.act == "mxint8" and self.scale_kind != "pow2":
            raise ValueError("MXINT8 activations need pow2 weight scales")
        if self.calib not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, "
                             f"not {self.calib!r}")
        if "wanda" in self.calib and self.sparsity == "dense":
            raise ValueError("Wanda is a pruning score: it needs an N:M sparsity")

    @property
    def weights_label(self) -> str:
        """The weight transform's part of the label."""
        names = {"fp4_e2m1": "MXFP4", "mxint8": "MXINT8"}
        if self.scale_kind == "pow2":
            base = names.get(self.fmt, self.fmt)
        else:
            base = f"{self.fmt}/{'ch' if self.group is None else f'g{self.group}'}"
        return base + ("+MXINT8 act" if self.act == "mxint8" else "")

    @property
    def label(self) -> str:
        """Short name of the choice, for tables and plots."""
        calib = "" if self.calib == "none" else f" +{self.calib}"
        return f"{self.weights_label} {self.sparsity}{calib}"

    def to_dict(self) -> dict:
        """The choice as JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Choice:
        """A choice from its JSON form."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown choice keys {sorted(unknown)}")
        return cls(**data)


# ----------------------------------------------------------------------------- numerics


def erf(x: np.ndarray) -> np.ndarray:
    """Vectorised error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7)."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                          + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's erf GELU with the vectorised `erf` (float reference and compressed runs alike)."""
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(h, gamma, beta, eps=1e-12):
    """LayerNorm over the last axis (BERT's epsilon)."""
    mu = h.mean(axis=-1, keepdims=True)
    var = ((h - mu) ** 2).mean(axis=-1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps) * gamma + beta


@dataclass
class CompressedLinear:
    """One compressed linear layer ready to run: the `Layer`, its smoothing and its choice."""

    choice: Choice
    layer: Layer
    smooth: np.ndarray | None  # SmoothQuant factors s (input divided by s), or None
    bias: np.ndarray

    @property
    def bits(self) -> dict:
        """Stored bits per weight of every compressed layer."""
        return bits_per_weight(self.layer)


class Encoder:
    """all-MiniLM-L6-v2 as a batch of sentences, every linear layer optionally compressed.

    Parameters
    ----------
    model : MiniLM
        Weights and tokenizer (`examples.minilm`).
    cfg : ArrayConfig
        Supplies ``frac_bits`` and the ``t`` window of the ``pow2`` accumulator.
    n_layers : int
        Encoder layers run (6 for the real model; fewer for a fast slice in tests).
    """

    def __init__(self, model: MiniLM, cfg, n_layers: int = LAYERS):
        if not 1 <= n_layers <= LAYERS:
            raise ValueError(f"n_layers must lie in 1..{LAYERS}, got {n_layers}")
        self.model = model
        self.cfg = cfg
        self.n_layers = n_layers
        self.names = linear_names(n_layers)
        self.gemm_errors = 0

    # -- weights ------------------------------------------------------------------------

    def _tensor(self, name: str, suffix: str) -> np.ndarray:
        i, kind = name.split(".")
        return self.model.w(f"encoder.layer.{i}.{LINEAR_KINDS[kind]}.{suffix}")

    def weight(self, name: str) -> np.ndarray:
        """Float weights ``[K, N]`` of a linear layer (PyTorch ``weight.T``)."""
        return self._tensor(name, "weight").T

    def bias(self, name: str) -> np.ndarray:
        """The float bias of layer ``name``."""
        return self._tensor(name, "bias")

    def compress(self, name: str, choice: Choice, x_cal: np.ndarray) -> CompressedLinear:
        """Compress one layer; ``x_cal`` are its float calibration inputs (tokens × K)."""
        w = self.weight(name)
        s = None
        if "smooth" in choice.calib:
            s = smooth_factors(x_cal, w)
            w = w * s[:, None]
        saliency = wanda_saliency(w, x_cal if s is None else x_cal / s) \
            if "wanda" in choice.calib else None
        layer = compress(w, fmt=choice.fmt, sparsity=choice.sparsity, group=choice.group,
                         scale_kind=choice.scale_kind, saliency=saliency)
        return CompressedLinear(choice, layer, s, self.bias(name))

    # -- forward ------------------------------------------------------------------------

    def run_linear(self, x: np.ndarray, comp: CompressedLinear) -> np.ndarray:
        """``x @ W + b`` through the golden integer GEMM, activations quantized."""
        if comp.smooth is not None:
            x = x / comp.smooth
        x_q, x_exp, x_scale, _ = quantize_x(x, comp.choice.act)
        y, n_err = golden_output(comp.layer, x_q, x_exp, x_scale, self.cfg.frac_bits,
                                 self.cfg.t_min, self.cfg.t_max)
        self.gemm_errors += n_err
        return y + comp.bias

    def tokenize(self, sentences) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of all sentences, concatenated, and the sentence start offsets."""
        ids = [self.model.tokenizer.encode(s) for s in sentences]
        if not ids:
            raise ValueError("no sentences")
        offsets = np.cumsum([0] + [len(i) for i in ids])
        return np.concatenate(ids), offsets

    def embed(self, sentences) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states after the embedding LayerNorm (all tokens) and sentence offsets."""
        ids, offsets = self.tokenize(sentences)
        emb = "embeddings."
        positions = np.concatenate([np.arange(offsets[j + 1] - offsets[j])
                                    for j in range(len(offsets) - 1)])
        w = self.model.w
        h = (w(emb + "word_embeddings.weight")[ids] + w(emb + "position_embeddings.weight")
             [positions] + w(emb + "token_type_embeddings.weight")[0])
        return layer_norm(h, w(emb + "LayerNorm.weight"), w(emb + "LayerNorm.bias")), offsets

    def encode(self, h: np.ndarray, offsets: np.ndarray, plan=None, *, start: int = 0,
               capture: dict | None = None, hidden: list | None = None) -> np.ndarray:
        """Run encoder layers ``start..n_layers-1`` on hidden states ``h``; return the last.

        ``plan`` maps layer names to `CompressedLinear` (missing: float). ``capture`` receives
        the input of every linear layer under its name; ``hidden`` the input of every encoder
        layer run.
        """
        plan = plan or {}
        w = self.model.w

        def lin(x, name):
            if capture is not None:
                capture.setdefault(name, []).append(x)
            if name in plan:
                return self.run_linear(x, plan[name])
            return x @ self.weight(name) + self.bias(name)

        heads = self.model.HEADS
        hd = HIDDEN // heads
        for i in range(start, self.n_layers):
            if hidden is not None:
                hidden.append(h)
            p = f"encoder.layer.{i}."
            q, k, v = (lin(h, f"{i}.{kind}") for kind in ("query", "key", "value"))
            ctx = np.empty_like(q)
            for j in range(len(offsets) - 1):
                sl = slice(offsets[j], offsets[j + 1])
                qs, ks, vs = (a[sl].reshape(-1, heads, hd).transpose(1, 0, 2) for a in (q, k, v))
                scores = qs @ ks.transpose(0, 2, 1) / math.sqrt(hd)
                scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
                probs = scores / scores.sum(axis=-1, keepdims=True)
                ctx[sl] = (probs @ vs).transpose(1, 0, 2).reshape(-1, HIDDEN)
            attn = lin(ctx, f"{i}.attn_out")
            h1 = layer_norm(attn + h, w(p + "attention.output.LayerNorm.weight"),
                            w(p + "attention.output.LayerNorm.bias"))
            up = gelu(lin(h1, f"{i}.ffn_up"))
            h = layer_norm(lin(up, f"{i}.ffn_down") + h1, w(p + "output.LayerNorm.weight"),
                           w(p + "output.LayerNorm.bias"))
        return h

    @staticmethod
    def pool(h: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Mean pooling over each sentence's tokens, L2-normalised (sentence-transformers)."""
        out = np.add.reduceat(h, offsets[:-1], axis=0) / np.diff(offsets)[:, None]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def forward(self, sentences, plan: dict[str, CompressedLinear] | None = None,
                capture: dict[str, list] | None = None) -> np.ndarray:
        """Sentence embeddings ``[S, 384]`` of ``sentences`` with ``plan`` applied."""
        h, offsets = self.embed(sentences)
        return self.pool(self.encode(h, offsets, plan, capture=capture), offsets)

    def calibration_inputs(self, sentences, max_tokens: int | None = None,
                           seed: int = 0) -> dict[str, np.ndarray]:
        """Float inputs of every linear layer on ``sentences`` (optionally a token sample)."""
        capture: dict[str, list] = {}
        self.forward(sentences, capture=capture)
        out = {name: np.concatenate(parts) for name, parts in capture.items()}
        n = len(next(iter(out.values())))
        if max_tokens is not None and n > max_tokens:
            rows = np.sort(np.random.default_rng(seed).choice(n, max_tokens, replace=False))
            out = {name: x[rows] for name, x in out.items()}
        return out


def cosine_stats(reference: np.ndarray, test: np.ndarray) -> dict:
    """Per-sentence cosine of unit embeddings: mean, worst, 5th percentile, count."""
    cos = np.sum(reference * test, axis=1) / (np.linalg.norm(reference, axis=1)
                                              * np.linalg.norm(test, axis=1))
    return {"mean": float(cos.mean()), "worst": float(cos.min()),
            "p5": float(np.percentile(cos, 5)), "sentences": int(len(cos))}


def load_encoder(cfg, n_layers: int = LAYERS) -> Encoder:
    """The packaged all-MiniLM-L6-v2 as an `Encoder`."""
    return Encoder(MiniLM(model_dir()), cfg, n_layers)
