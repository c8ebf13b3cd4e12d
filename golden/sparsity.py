"""N:M structured sparsity along K (SPEC §3): parsing, pruning, canonical packing, unpacking.

A weight ``[K, N]`` is cut along K into blocks of ``M_sp`` consecutive k per column. Each block
keeps ``N_sp`` slots ``(code, idx)`` with ``idx`` strictly increasing, so a packed array has
``K·N_sp/M_sp`` rows: slot ``j`` of block ``b`` is row ``b·N_sp + j``. Dense layers are the
degenerate pattern ``1:1``.
"""

from __future__ import annotations

import numpy as np

from . import tables as _tables

__all__ = [
    "SPARSITY_PATTERNS",
    "block_positions",
    "pack_nm",
    "padding_idx",
    "parse_sparsity",
    "prune_nm",
    "slot_rows_k",
    "unpack_nm",
]

#: Pattern name → ``(N_sp, M_sp)``, from `golden.tables.SPARSITY_PATTERNS`.
SPARSITY_PATTERNS = {p.name: (p.n, p.m) for p in _tables.SPARSITY_PATTERNS.values()}


def parse_sparsity(s: str) -> tuple[int, int]:
    """Parse a sparsity string into ``(N_sp, M_sp)``; ``'dense'`` is ``(1, 1)``.

    Raises
    ------
    ValueError
        For anything but ``dense``, ``1:4``, ``2:4``, ``2:8``, ``4:8``.
    """
    if not isinstance(s, str) or s not in SPARSITY_PATTERNS:
        raise ValueError(
            f"bad sparsity {s!r}; expected one of {', '.join(SPARSITY_PATTERNS)}"
        )
    return SPARSITY_PATTERNS[s]


def _check_blocks(K: int, m_sp: int, what: str) -> int:
    if K % m_sp:
        raise ValueError(f"{what}: K={K} is not a multiple of the sparsity block M={m_sp}")
    return K // m_sp


def prune_nm(w, n_sp: int, m_sp: int, saliency=None) -> np.ndarray:
    """Choose which weights an N:M pattern keeps.

    Parameters
    ----------
    w : array_like of float, shape (K, N)
        Dense weights.
    n_sp, m_sp : int
        Keep ``n_sp`` of every ``m_sp`` consecutive k, per column.
    saliency : array_like of float, shape (K, N), optional
        Score to rank by instead of ``|w|``.

    Returns
    -------
    ndarray of bool, shape (K, N)
        Keep mask with exactly ``n_sp`` True per block: the largest scores, ties resolved
        towards the lower index (a stable sort).
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D [K, N], got shape {w.shape}")
    if n_sp == m_sp and saliency is None:
        return np.ones(w.shape, dtype=bool)
    score = np.abs(w) if saliency is None else np.asarray(saliency)
    if score.shape != w.shape:
        raise ValueError(f"saliency shape {score.shape} differs from weight shape {w.shape}")
    score = score.astype(np.float64)
    if np.isnan(score).any():
        raise ValueError("pruning scores contain NaN")
    K, N = w.shape
    if n_sp == m_sp:
        return np.ones((K, N), dtype=bool)
    nb = _check_blocks(K, m_sp, "prune_nm")
    blocks = score.reshape(nb, m_sp, N)
    order = np.argsort(-blocks, axis=1, kind="stable")  # descending, equal scores by index
    keep = np.zeros((nb, m_sp, N), dtype=bool)
    np.put_along_axis(keep, order[:, :n_sp, :], True, axis=1)
    return keep.reshape(K, N)


def pack_nm(values_codes, keep_mask, n_sp: int, m_sp: int, pad_codes=0):
    """Pack dense codes into canonical N:M slots.

    Parameters
    ----------
    values_codes : array_like of uint8, shape (K, N)
        Dense element codes (only kept positions are read).
    keep_mask : array_like of bool, shape (K, N)
        Positions holding a nonzero weight, at most ``n_sp`` per block.
    n_sp, m_sp : int
        Sparsity pattern.
    pad_codes : int or array_like of uint8, shape (G_count, N)
        Code of a zero-valued padding slot: a scalar, or one per (group, column), in which case
        the group size is ``K / G_count`` (``uint4`` pads with its zero point).

    Returns
    -------
    codes, idx : ndarray of uint8, shape (K·n_sp/m_sp, N)
        Canonical form: a block with ``c < n_sp`` kept weights gets ``n_sp − c`` padding slots
        at its lowest unused indices, and every block's slots are sorted by ``idx``.
    """
    codes_d = np.asarray(values_codes)
    keep = np.asarray(keep_mask, dtype=bool)
    if codes_d.ndim != 2 or keep.shape != codes_d.shape:
        raise ValueError("values_codes and keep_mask must be 2-D arrays of the same shape")
    K, N = codes_d.shape
    nb = _check_blocks(K, m_sp, "pack_nm")
    keep_b = keep.reshape(nb, m_sp, N)
    count = keep_b.sum(axis=1, keepdims=True)
    if (count > n_sp).any():
        raise ValueError(f"keep_mask keeps more than {n_sp} of {m_sp} in some block")
    unused = ~keep_b
    padding = unused & (np.cumsum(unused, axis=1) <= n_sp - count)  # lowest unused indices
    chosen = keep_b | padding
    idx = np.argsort(~chosen, axis=1, kind="stable")[:, :n_sp, :]  # chosen positions, ascending
    slot_codes = np.take_along_axis(codes_d.reshape(nb, m_sp, N), idx, axis=1)
    slot_kept = np.take_along_axis(keep_b, idx, axis=1)
    pad = np.asarray(pad_codes)
    if pad.ndim == 2:
        n_groups = pad.shape[0]
        if pad.shape[1] != N or n_groups == 0 or nb % n_groups:
            raise ValueError(f"pad_codes shape {pad.shape} does not fit {nb} blocks x {N}")
        pad = np.repeat(pad, nb // n_groups, axis=0)[:, None, :]
    elif pad.ndim != 0:
        raise ValueError("pad_codes must be a scalar or a [groups, N] array")
    slot_codes = np.where(slot_kept, slot_codes, pad)
    rows = nb * n_sp
    return (
        slot_codes.reshape(rows, N).astype(np.uint8),
        idx.reshape(rows, N).astype(np.uint8),
    )


def slot_rows_k(idx, n_sp: int, m_sp: int) -> np.ndarray:
    """Absolute k of every slot: ``block·M_sp + idx`` (int64, same shape as ``idx``)."""
    idx = np.asarray(idx)
    block = np.arange(idx.shape[0], dtype=np.int64) // n_sp
    return block[:, None] * m_sp + idx.astype(np.int64)


def block_positions(n_slots: int, n_sp: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot rows grouped per block: ``(first_rows, later_rows)`` used to test strict increase.

    Returns the row numbers of slots that have a predecessor in their block and of those
    predecessors, so that ``idx[later] > idx[first]`` checks strict increase in one step.
    """
    rows = np.arange(n_slots)
    later = rows[rows % n_sp != 0]
    return later - 1, later


def padding_idx(n_slots: int, n_sp: int) -> np.ndarray:
    """Canonical indices of ``n_slots`` zero-valued padding slots: slot ``j`` of a block at ``j``.

    Padding (the extra K of a padded per-channel layer, the extra columns of a padded tile)
    must still be a valid N:M layout, strictly increasing within each block.

    Returns
    -------
    ndarray of int64, shape (n_slots,)
    """
    return np.arange(n_slots, dtype=np.int64) % n_sp


def unpack_nm(codes, idx, n_sp: int, m_sp: int, K: int):
    """Scatter N:M slots back to dense positions.

    Parameters
    ----------
    codes, idx : array_like of uint8, shape (K·n_sp/m_sp, N)
        Slots as produced by `pack_nm` (``idx`` ignored and may be None when dense).
    n_sp, m_sp : int
        Sparsity pattern.
    K : int
        Dense depth.

    Returns
    -------
    dense_codes : ndarray of uint8, shape (K, N)
        Slot codes at their positions, 0 where nothing is stored.
    stored : ndarray of bool, shape (K, N)
        True at positions backed by a slot (pruned positions are False: they are real zeros).
    """
    codes = np.asarray(codes)
    nb = _check_blocks(K, m_sp, "unpack_nm")
    N = codes.shape[1]
    if codes.shape != (nb * n_sp, N):
        raise ValueError(f"codes shape {codes.shape} is not ({nb * n_sp}, N) for {n_sp}:{m_sp}")
    if n_sp == m_sp:
        return codes.astype(np.uint8, copy=False), np.ones((K, N), dtype=bool)
    idx = np.asarray(idx)
    if idx.shape != codes.shape:
        raise ValueError("idx and codes must have the same shape")
    if idx.size and idx.max() >= m_sp:
        raise ValueError(f"idx must be below M={m_sp}")
    first, later = block_positions(idx.shape[0], n_sp)
    if (idx[later].astype(np.int64) <= idx[first]).any():
        raise ValueError("idx must be strictly increasing within each block")
    k = slot_rows_k(idx, n_sp, m_sp)
    dense = np.zeros((K, N), dtype=np.uint8)
    stored = np.zeros((K, N), dtype=bool)
    np.put_along_axis(dense, k, codes, axis=0)
    np.put_along_axis(stored, k, True, axis=0)
    return dense, stored
