"""Grouped GEMM (mixture of experts): token rows routed to experts, one GEMM per expert.

Every expert is a `Layer` with its own mode (format, sparsity, scale kind, output stage); all
take the same activations ``x`` [M, K] and give N outputs. ``routing`` names each token's
expert: an integer array [M] (top-1) or [M, k] (top-k, k distinct experts per token). A token
routed to expert ``e`` gets exactly the row `golden.gemm.gemm` gives for it with expert ``e``'s
layer (GEMM rows are independent, so gathering the rows of an expert first changes nothing).

Top-k results come back per (token, slot), ``[M, k, N]``, uncombined: the gate weights and
their sum are float host arithmetic outside the bit-exact integer contract (SPEC), and a raw
accumulator is only comparable across experts after each expert's dequantization.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .gemm import gemm
from .layer import Layer, validate_layer

__all__ = ["check_experts", "check_routing", "expert_slots", "grouped_gemm", "out_stages"]


def check_routing(routing, n_experts: int, M: int) -> np.ndarray:
    """``routing`` as int64 [M, k] after checking it against ``n_experts`` and ``M`` tokens.

    Raises
    ------
    ValueError
        Not integers, not [M] or [M, k], an index outside ``0..n_experts-1``, or a token
        routed twice to the same expert.
    """
    r = np.asarray(routing)
    if r.dtype.kind not in "iu":
        raise ValueError(f"routing must be integer expert indices, got {r.dtype}")
    if r.ndim not in (1, 2) or r.shape[0] != M or (r.ndim == 2 and r.shape[1] == 0):
        raise ValueError(f"routing must have shape [{M}] or [{M}, k] (one row per token of x), "
                         f"got {r.shape}")
    r = r.astype(np.int64).reshape(M, -1)
    if r.size and (r.min() < 0 or r.max() >= n_experts):
        bad = int(r[(r < 0) | (r >= n_experts)][0])
        raise ValueError(f"routing index {bad} out of range: there are {n_experts} experts "
                         f"(0..{n_experts - 1})")
    if r.shape[1] > 1:
        s = np.sort(r, axis=1)
        dup = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
        if dup.size:
            raise ValueError(f"token {int(dup[0])} is routed to the same expert twice "
                             f"({r[dup[0]].tolist()})")
    return r


def expert_slots(routing: np.ndarray, n_experts: int) -> list[np.ndarray]:
    """Per expert, the flat (token · k + slot) indices routed to it, in token order.

    ``routing`` is the [M, k] array of `check_routing`; the token of flat index ``f`` is
    ``f // k``.
    """
    flat = routing.reshape(-1)
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=n_experts)
    return np.split(order, np.cumsum(counts)[:-1])


def out_stages(out_stage: str | Sequence[str], n_experts: int) -> list[str]:
    """One output stage per expert from a single stage or a sequence of them."""
    stages = [out_stage] * n_experts if isinstance(out_stage, str) else list(out_stage)
    if len(stages) != n_experts:
        raise ValueError(f"{len(stages)} output stages for {n_experts} experts")
    for s in stages:
        if s not in ("raw", "requant"):
            raise ValueError(f"out_stage must be 'raw' or 'requant', not {s!r}")
    return stages


def check_experts(experts: Sequence[Layer], K: int, stages: list[str], x_exp) -> None:
    """Validate the experts: at least one, all valid with the same K and N."""
    if len(experts) == 0:
        raise ValueError("grouped GEMM needs at least one expert")
    N = None
    for e, layer in enumerate(experts):
        try:
            validate_layer(layer)
        except ValueError as exc:
            raise ValueError(f"expert {e}: {exc}") from None
        k_e, n_e = (int(v) for v in layer.shape)
        if k_e != K:
            raise ValueError(f"expert {e} has K={k_e}, the activations have K={K}")
        if N is None:
            N = n_e
        elif n_e != N:
            raise ValueError(f"experts must have the same N: expert 0 has N={N}, "
                             f"expert {e} has N={n_e}")
        if stages[e] == "requant" and (layer.out_mult is None or layer.out_shift is None):
            raise ValueError(f"expert {e}: out_stage 'requant' needs a layer with out_mult and "
                             "out_shift")
        if x_exp is not None and layer.scale_kind != "pow2":
            raise ValueError(f"expert {e}: x_exp (MX activations, shared by every expert) needs "
                             f"pow2 scales, the layer has {layer.scale_kind!r}")


def grouped_gemm(x, experts: Sequence[Layer], routing, *, x_exp=None,
                 x_format: str | None = None, frac_bits: int = 16, t_min: int = -32,
                 t_max: int = 8, out_stage: str | Sequence[str] = "raw"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The grouped (MoE) GEMM: every token row through its expert(s), bit-exact.

    Parameters
    ----------
    x : ndarray, shape (M, K)
        Activations of every token, as for `golden.gemm.gemm`.
    experts : sequence of Layer
        The experts, all [K, N]; modes may differ.
    routing : array_like of int, shape (M,) or (M, k)
        Expert index of each token (top-1), or its k distinct experts (top-k).
    x_exp : ndarray of uint8, shape (M, K/32), optional
        MX activation exponents, shared by every expert (all must then be ``pow2``).
    x_format, frac_bits, t_min, t_max
        As for `golden.gemm.gemm`.
    out_stage : str or sequence of str
        ``'raw'`` or ``'requant'``, for every expert or one per expert.

    Returns
    -------
    y : ndarray, shape (M, N) for top-1, (M, k, N) for top-k
        int8 when every expert requantizes, else int64 (requantized rows widened).
    err : ndarray of bool, same shape
        The error flags `golden.gemm.gemm` gives per row.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"activations x must have shape [M, K], got {x.shape}")
    M, K = x.shape
    stages = out_stages(out_stage, len(experts))
    check_experts(experts, K, stages, x_exp)
    r = check_routing(routing, len(experts), M)
    k = r.shape[1]
    N = int(experts[0].shape[1])
    if x_exp is not None:
        x_exp = np.asarray(x_exp)
        if x_exp.ndim != 2 or x_exp.shape[0] != M:
            raise ValueError(f"x_exp must have one row per token ({M}), got {x_exp.shape}")
    dtype = np.int8 if all(s == "requant" for s in stages) else np.int64
    y = np.zeros((M * k, N), dtype)
    err = np.zeros((M * k, N), bool)
    for e, slots in enumerate(expert_slots(r, len(experts))):
        if slots.size == 0:
            continue
        tokens = slots // k
        try:
            ye, erre = gemm(x[tokens], experts[e], x_exp=None if x_exp is None else x_exp[tokens],
                            x_format=x_format, frac_bits=frac_bits, t_min=t_min, t_max=t_max,
                            out_stage=stages[e])
        except ValueError as exc:
            raise ValueError(f"expert {e}: {exc}") from None
        y[slots] = ye
        err[slots] = erre
    shape = (M, N) if np.ndim(routing) == 1 else (M, k, N)
    return y.reshape(shape), err.reshape(shape)
