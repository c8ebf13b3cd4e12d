"""Quality and size metrics: SQNR, bits per weight and the N:M metadata floor."""

from __future__ import annotations

import math

import numpy as np

from .blocks import groups_dropped
from .formats import format_info
from .layer import Layer
from .tables import E8M0_BITS

__all__ = ["bits_floor", "bits_per_weight", "metadata_floor", "sqnr_db"]

DEFAULT_INT_SCALE_BITS = 16
POW2_SCALE_BITS = E8M0_BITS
SCALE_EXP_BITS = 32


def sqnr_db(ref, test) -> float:
    """Signal to quantization noise ratio ``10·log10(Σ ref² / Σ (ref − test)²)`` in dB.

    Returns ``inf`` for an exact match and ``-inf`` for a nonzero error on an all-zero signal.
    """
    ref = np.asarray(ref, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if ref.shape != test.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {test.shape}")
    signal = float(np.sum(ref * ref))
    noise = float(np.sum((ref - test) ** 2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def metadata_floor(n_sp: int, m_sp: int) -> float:
    """Information-theoretic index cost per dense weight: ``log2(C(M, N)) / M`` bits."""
    return math.log2(math.comb(m_sp, n_sp)) / m_sp


def bits_floor(layer: Layer) -> float:
    """Least bits per dense weight a layer's format and N:M pattern can be stored in.

    Values at their information content (``log2`` of the number of valid codes: ``log2 3`` for
    ternary, the code width otherwise)
    times the density, plus `metadata_floor`; scales are not counted.
    """
    value_bits = math.log2(format_info(layer.format).n_valid_codes)
    return value_bits * layer.n_sp / layer.m_sp + metadata_floor(layer.n_sp, layer.m_sp)


def bits_per_weight(layer: Layer) -> dict[str, float]:
    """Storage cost per dense weight, split by kind.

    Returns
    -------
    dict
        ``values``: ``bits · N_sp/M_sp``; ``metadata``: ``log2(M_sp)`` index bits per slot
        (``· N_sp/M_sp``, 0 when dense); ``scales``: per-group scale bits (``scale_bits``, 16 by
        default, for ``int``; 8 for ``pow2``) plus 4 per zero point, divided by ``G``, plus the
        32-bit ``scale_exp`` per column divided by ``K``; ``total``: their sum.

        A block-sparse layer (SPEC §3) counts a dropped block as its mask bit only: values and
        metadata scale with the kept fraction of the weights, scales with the groups not
        wholly in dropped blocks, and ``mask`` (present only then) is one bit per block.
    """
    info = format_info(layer.format)
    density = layer.n_sp / layer.m_sp
    values = info.bits * density
    metadata = math.log2(layer.m_sp) * density if not layer.is_dense else 0.0
    per_group = 0.0
    if layer.scale_kind == "int":
        per_group += layer.scale_bits or DEFAULT_INT_SCALE_BITS
    elif layer.scale_kind == "pow2":
        per_group += POW2_SCALE_BITS
    if layer.zeros is not None:
        per_group += info.zero_point_bits
    scales = per_group / layer.group
    if layer.scale_exp is not None:
        scales += SCALE_EXP_BITS / layer.K
    if layer.block_mask is not None:
        kept = float(np.mean(layer.block_mask != 0))
        values *= kept
        metadata *= kept
        live = float(np.mean(~groups_dropped(layer.block_shape, layer.block_mask, layer.group)))
        scales = per_group / layer.group * live + (
            SCALE_EXP_BITS / layer.K if layer.scale_exp is not None else 0.0)
        mask = layer.block_mask.size / (layer.K * layer.N)
        return {"values": values, "metadata": metadata, "scales": scales, "mask": mask,
                "total": values + metadata + scales + mask}
    return {
        "values": values,
        "metadata": metadata,
        "scales": scales,
        "total": values + metadata + scales,
    }
