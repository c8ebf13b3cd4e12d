"""Block sparsity (SPEC §3): whole ``bk × bn`` blocks of a weight dropped, on top of N:M.

``block_shape = (bk, bn)`` cuts the dense weight ``[K, N]`` into blocks of ``bk`` consecutive k
by ``bn`` consecutive columns; ``block_mask uint8 [K/bk, N/bn]`` is 1 where a block is kept.
Every weight of a dropped block is zero-valued and stored canonically (code = the format's
zero, or the group's zero point; N:M indices at their padding positions), so a reader that
ignores the mask computes the same GEMM. Scales and zero points of groups lying wholly in
dropped blocks are canonical too (``int`` 0, ``pow2`` 127, zero point 0). Storage counts a
dropped block as its mask bit only (`golden.metrics.bits_per_weight`).

This module holds the block arithmetic shared by the layer file's validation
(`golden.layer`), the compressor (`golden.compress`), the storage accounting and the packer;
it imports nothing that imports it.
"""

from __future__ import annotations

import re

import numpy as np

from .tables import E8M0_BIAS, MX_BLOCK

__all__ = [
    "BLOCK_KEYS",
    "block_dense_keep",
    "block_problem",
    "block_scores",
    "block_slot_keep",
    "canonical_block_arrays",
    "groups_dropped",
    "parse_block",
    "prune_blocks",
]

#: The optional layer keys of block sparsity (SPEC §7).
BLOCK_KEYS = ("block_shape", "block_mask")


def parse_block(text: str) -> tuple[int, int]:
    """Parse ``"BKxBN"`` (e.g. ``"64x8"``) into ``(bk, bn)``.

    Raises
    ------
    ValueError
        Anything but two positive integers joined by ``x``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(f"block {text!r}: expected BKxBN with positive integers, e.g. 64x8")
    return int(match.group(1)), int(match.group(2))


def block_problem(block_shape, K: int, N: int, m_sp: int, scale_kind: str) -> str | None:
    """Why ``block_shape`` does not fit a ``K × N`` layer, or None when it does.

    ``bk`` must divide ``K`` and be a multiple of the N:M block ``M_sp`` (and of the MX block,
    32, for ``pow2``); ``bn`` must divide ``N``.
    """
    bk, bn = (int(v) for v in block_shape)
    if bk < 1 or bn < 1:
        return f"bk and bn must be positive, got {bk}, {bn}"
    if K % bk:
        return f"bk={bk} does not divide K={K}"
    if N % bn:
        return f"bn={bn} does not divide N={N}"
    if bk % m_sp:
        return f"bk={bk} is not a multiple of the sparsity block M={m_sp}"
    if scale_kind == "pow2" and bk % MX_BLOCK:
        return f"bk={bk} is not a multiple of the MX block {MX_BLOCK} (pow2 scales)"
    return None


def block_dense_keep(block_shape, block_mask) -> np.ndarray:
    """Kept dense positions: ``bool [K, N]`` (block mask expanded to every weight)."""
    bk, bn = (int(v) for v in block_shape)
    mask = np.asarray(block_mask).astype(bool)
    return np.repeat(np.repeat(mask, bk, axis=0), bn, axis=1)


def block_slot_keep(block_shape, block_mask, n_sp: int, m_sp: int) -> np.ndarray:
    """Kept N:M slots: ``bool [K·N_sp/M_sp, N]`` (``bk`` is a multiple of ``M_sp``)."""
    bk, bn = (int(v) for v in block_shape)
    mask = np.asarray(block_mask).astype(bool)
    slots_per_kblock = bk // m_sp * n_sp
    return np.repeat(np.repeat(mask, slots_per_kblock, axis=0), bn, axis=1)


def groups_dropped(block_shape, block_mask, group: int) -> np.ndarray:
    """``bool [K/G, N]``: the (group, column) lies wholly in dropped blocks."""
    keep = block_dense_keep(block_shape, block_mask)
    K, N = keep.shape
    return ~keep.reshape(K // group, group, N).any(axis=1)


def block_scores(w, block_shape, x=None) -> np.ndarray:
    """Score of every block: ``Σ w²`` over it (squared Frobenius norm).

    With calibration activations ``x [M, K]`` the score is activation-aware:
    ``Σ (w[k, n] · ‖x[:, k]‖)²`` (the block's share of ``‖x·W‖`` in Wanda's sense).
    """
    w = np.asarray(w, dtype=np.float64)
    K, N = w.shape
    bk, bn = (int(v) for v in block_shape)
    if x is not None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != K:
            raise ValueError(f"block score activations must be [M, {K}], got {x.shape}")
        w = w * np.sqrt((x * x).sum(axis=0))[:, None]
    return (w * w).reshape(K // bk, bk, N // bn, bn).sum(axis=(1, 3))


def prune_blocks(w, block_shape, density: float, *, score=None) -> np.ndarray:
    """Choose the blocks to keep: ``uint8 [K/bk, N/bn]``.

    Keeps ``round(density · blocks)`` blocks (at least one) with the largest ``score``
    (default `block_scores` of ``w``); equal scores keep the lower block (row-major order).
    """
    w = np.asarray(w)
    if not 0.0 < float(density) <= 1.0:
        raise ValueError(f"block density must lie in (0, 1], got {density}")
    scores = block_scores(w, block_shape) if score is None else np.asarray(score, np.float64)
    if np.isnan(scores).any():
        raise ValueError("block scores contain NaN")
    n = scores.size
    keep_n = max(1, min(n, int(np.floor(float(density) * n + 0.5))))
    order = np.argsort(-scores.ravel(), kind="stable")
    mask = np.zeros(n, np.uint8)
    mask[order[:keep_n]] = 1
    return mask.reshape(scores.shape)


def canonical_block_arrays(codes, idx, scales, zeros, *, block_shape, block_mask, n_sp: int,
                           m_sp: int, group: int, scale_kind: str):
    """Codes, indices, scales and zero points with every dropped block in canonical form.

    Returns new ``(codes, idx, scales, zeros)`` (None stays None): zero points and scales of
    groups wholly in dropped blocks canonical (0; ``int`` 0, ``pow2`` 127), dropped slots
    holding the zero code (the group's zero point, else 0) at their padding index.
    """
    slot_keep = block_slot_keep(block_shape, block_mask, n_sp, m_sp)
    dropped_g = groups_dropped(block_shape, block_mask, group)
    if zeros is not None:
        zeros = np.where(dropped_g, 0, zeros).astype(np.uint8)
    if scales is not None:
        canon = E8M0_BIAS if scale_kind == "pow2" else 0
        scales = np.where(dropped_g, canon, scales).astype(scales.dtype)
    zero_code = 0
    if zeros is not None:
        slot_k = np.arange(codes.shape[0]) // n_sp * m_sp
        zero_code = zeros[slot_k // group]
    codes = np.where(slot_keep, codes, zero_code).astype(np.uint8)
    if idx is not None:
        pad = (np.arange(idx.shape[0]) % n_sp)[:, None]
        idx = np.where(slot_keep, idx, pad).astype(np.uint8)
    return codes, idx, scales, zeros
