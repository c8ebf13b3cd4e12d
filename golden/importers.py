"""Importers: packed tensors of other tools' compressed formats → golden `Layer` (pure numpy).

Each importer reads the tensors exactly as the producer stores them (PyTorch layout: weights are
``[out, in]``; every layout is written down in ``docs/IMPORTERS.md``) and returns an `Imported`:
the layer in SPEC §7 form (``[K = in, N = out]``, reduction along K), the producer's own float
dequantization of the same weights for checking, and what the conversion had to round.

* `import_semi_structured_dense`, `import_semi_structured` — PyTorch 2:4 semi-structured
  sparsity, as a dense tensor with zeros (plus an optional mask, ``torch.nn.utils.prune``
  style) or as ``values [out, in/2]`` + NVIDIA metadata (``idx0 | idx1 << 2`` per group of 4,
  packed LSB first into int16 / int32, optionally in CUTLASS's reordered layout).
* `import_gptq` — GPTQ int4 (AutoGPTQ / GPTQModel ``qweight``, ``qzeros``, ``scales``,
  ``g_idx``), zero-point convention v1 (stored ``z − 1``) or v2 (stored ``z``).
* `import_awq` — AutoAWQ ``WQLinear_GEMM`` int4 (packed along the outputs in the nibble
  order ``[0, 2, 4, 6, 1, 3, 5, 7]``).
* `import_bitnet_i2s` — BitNet b1.58 ``I2_S`` (bitnet.cpp GGUF) ternary codes
  ``0/1/2 = −1/0/+1`` with one float32 scale per tensor.
* `import_nvfp4` — NVFP4 (NVIDIA ModelOpt ``weight`` / ``weight_scale`` / ``weight_scale_2``,
  or compressed-tensors ``weight_packed`` / ``weight_scale`` / ``weight_global_scale``): packed
  E2M1 nibbles, E4M3 block scales per 16 inputs, an fp32 per-tensor scale.

Float scales become SPEC ``int`` scales with a per column ``scale_exp`` through
`golden.quant.int_scales`; they are exact when they are multiples of ``2**scale_exp`` (for
example float16 scales within 16× of their column's largest scale at 16-bit scales) and are
otherwise rounded to nearest even, which `Imported.scale_error` reports.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .compress import NVFP4_GROUP, NVFP4_SCALE_BITS, compress, nvfp4_layer
from .formats import decode_float
from .layer import Layer, validate_layer
from .quant import int_scales
from .sparsity import pack_nm

__all__ = [
    "AWQ_ORDER",
    "I2S_TO_TERNARY",
    "Imported",
    "cutlass_meta_gather_offsets",
    "import_awq",
    "import_bitnet_i2s",
    "import_gptq",
    "import_nvfp4",
    "import_semi_structured",
    "import_semi_structured_dense",
    "read_safetensors_raw",
    "semi_structured_to_dense",
    "unpack_i2s",
    "unpack_int32_nibbles",
    "unpack_uint8_nibbles",
]

#: AutoAWQ ``WQLinear_GEMM``: nibble ``i`` of a packed int32 holds output column ``ORDER[i]``.
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
#: bitnet.cpp I2_S code (0, 1, 2 = −1, 0, +1; 3 unused) → SPEC ternary code (0b11, 0b00, 0b01).
I2S_TO_TERNARY = np.array([0b11, 0b00, 0b01], dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class Imported:
    """The result of an import.

    Attributes
    ----------
    layer : Layer
        The weights as a validated golden layer, ``[K, N]`` with K the producer's input features
        (in ``perm`` order when ``perm`` is given).
    reference : ndarray of float64, shape (K, N)
        The producer's own dequantization of the imported tensors (float64 arithmetic, same row
        order as the layer): what `golden.gemm.dequantize_weights` gives when nothing was
        rounded.
    scale_error : float
        Largest relative error of the stored ``int`` scales (``s · 2**scale_exp``) against the
        producer's float scales; 0.0 means the scales are exact.
    values_exact : bool
        False when the element values had to be quantized (float 2:4 tensors).
    perm : ndarray of int64, shape (K,), or None
        Input channel order of the layer (GPTQ act-order ``g_idx``): feed ``x[:, perm]``.
    tensor_scale : float
        Per-tensor factor outside the layer (NVFP4's fp32 scale, for the host or the requant
        stage): the producer's weights are ``reference · tensor_scale``; 1.0 otherwise.
    """

    layer: Layer
    reference: np.ndarray
    scale_error: float = 0.0
    values_exact: bool = True
    perm: np.ndarray | None = None
    tensor_scale: float = 1.0

    @property
    def exact(self) -> bool:
        """True when ``dequantize_weights(layer) == reference`` holds bit for bit."""
        return self.values_exact and self.scale_error == 0.0


# ----------------------------------------------------------------------------- shared helpers


def _array(a, name: str, ndim: int) -> np.ndarray:
    if a is None:
        raise ValueError(f"{name} is required")
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def _int_array(a, name: str, ndim: int) -> np.ndarray:
    a = _array(a, name, ndim)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer tensor, got {a.dtype}")
    return a


def _float_array(a, name: str, ndim: int) -> np.ndarray:
    a = _array(a, name, ndim)
    if a.dtype.kind not in "fiu" and "float" not in a.dtype.name:  # ml_dtypes floats: kind 'V'
        raise ValueError(f"{name} must be a float tensor, got {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def unpack_int32_nibbles(packed, axis: int, order=None) -> np.ndarray:
    """Unpack 8 four-bit values from every int32 along ``axis`` (LSB nibble first).

    Parameters
    ----------
    packed : array_like of int32 or uint32, 2-D
        Packed tensor; negative int32 values are read as their two's complement bits.
    axis : int
        Axis along which consecutive nibbles are consecutive elements (0 for GPTQ ``qweight``,
        1 for GPTQ ``qzeros`` and everything AWQ).
    order : sequence of 8 int, optional
        ``order[i]`` = position (within the group of 8 elements) held by nibble ``i``; default
        identity (nibble ``i`` holds element ``i``). AWQ uses `AWQ_ORDER`.

    Returns
    -------
    ndarray of uint8
        The shape of ``packed`` with ``axis`` eight times longer, values 0..15.
    """
    p = _int_array(packed, "packed tensor", 2)
    if p.dtype.itemsize > 4 and p.size and (p.min() < -(1 << 31) or p.max() >= 1 << 32):
        raise ValueError("packed tensor values do not fit 32 bits")
    bits = p.astype(np.int64) & 0xFFFFFFFF
    nib = np.stack([(bits >> (4 * i)) & 0xF for i in range(8)], axis=-1)  # [..., nibble]
    if order is not None:
        order = [int(o) for o in order]
        if sorted(order) != list(range(8)):
            raise ValueError(f"order must be a permutation of 0..7, got {order}")
        nib_by_pos = np.empty_like(nib)
        nib_by_pos[..., order] = nib  # element order[i] is nibble i
        nib = nib_by_pos
    if axis == 0:
        out = np.moveaxis(nib, -1, 1).reshape(p.shape[0] * 8, p.shape[1])
    elif axis == 1:
        out = nib.reshape(p.shape[0], p.shape[1] * 8)
    else:
        raise ValueError(f"axis must be 0 or 1, got {axis}")
    return out.astype(np.uint8)


def _int_scales(scales_float: np.ndarray, scale_bits: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Float scales ``[G, N]`` → int scales, ``scale_exp`` and the largest relative error."""
    s, e = int_scales(scales_float, scale_bits)
    stored = np.ldexp(s.astype(np.float64), e.astype(np.int64)[None, :])
    nonzero = scales_float != 0
    err = np.abs(stored - scales_float)
    rel = np.where(nonzero, err / np.where(nonzero, np.abs(scales_float), 1.0), err)
    return s, e, float(rel.max(initial=0.0))


# ----------------------------------------------------------------------------- PyTorch 2:4


def cutlass_meta_gather_offsets(m: int, meta_ncols: int, itemsize: int) -> np.ndarray:
    """Offsets that read NVIDIA metadata back out of CUTLASS's reordered layout.

    ``meta.ravel() = meta_reordered.ravel()[offsets]`` for the ``ColumnMajorInterleaved<2>``
    reordering that ``torch.sparse.to_sparse_semi_structured`` (CUTLASS backend) applies. This is
    PyTorch's ``_calculate_meta_reordering_scatter_offsets`` (CUTLASS ``reorder_meta``): the
    offsets scatter ``meta`` into ``meta_reordered``, so they also gather it back.

    Parameters
    ----------
    m : int
        Rows (output features): a multiple of 32 for int16 metadata, of 16 for int32.
    meta_ncols : int
        Metadata elements per row (``in / 16`` for int16, ``in / 32`` for int32), even.
    itemsize : int
        2 (int16 metadata, 16-bit values) or 4 (int32 metadata, int8 values).

    Returns
    -------
    ndarray of int64, shape (m · meta_ncols,)
    """
    if itemsize not in (2, 4):
        raise ValueError(f"metadata must be int16 or int32, got {itemsize}-byte elements")
    group, interweave = (32, 4) if itemsize == 2 else (16, 2)
    if m % group or meta_ncols <= 0 or meta_ncols % 2:
        raise ValueError(f"CUTLASS-reordered {8 * itemsize}-bit metadata needs rows % {group} "
                         f"== 0 and an even number of metadata columns, got {m} x {meta_ncols}")
    rows = np.repeat(np.arange(m, dtype=np.int64)[:, None], meta_ncols, axis=1)
    cols = np.repeat(np.arange(meta_ncols, dtype=np.int64)[None, :], m, axis=0)
    rows = rows // group * group + (rows % 8) * interweave + (rows % group) // 8
    # swizzle the 2x2 blocks
    topright = ((rows % 2 == 0) & (cols % 2 == 1)).astype(np.int64)
    bottomleft = ((rows % 2 == 1) & (cols % 2 == 0)).astype(np.int64)
    rows = rows + topright - bottomleft
    cols = cols - topright + bottomleft
    # column-major, interleaved by 2
    return ((cols // 2) * m * 2 + rows * 2 + cols % 2).ravel()


def _meta_indices(meta: np.ndarray, m: int, k: int, layout: str) -> np.ndarray:
    """NVIDIA metadata → 2-bit indices ``[m, k/2]`` (two per group of 4, idx0 then idx1)."""
    groups = k // 4
    if meta.dtype == np.uint8 and meta.shape == (m, groups):
        if layout != "plain":
            raise ValueError("one-nibble-per-group uint8 metadata cannot be CUTLASS-reordered")
        nibbles = meta.astype(np.int64)
    else:
        if meta.dtype.kind not in "iu" or meta.dtype.itemsize not in (2, 4):
            raise ValueError(
                f"meta must be int16/int32 (4/8 groups per element, LSB first) or uint8 "
                f"[{m}, {groups}] (one idx0 | idx1 << 2 nibble per group), got {meta.dtype} "
                f"{meta.shape}")
        per = meta.dtype.itemsize * 2  # groups (nibbles) per element
        if groups % per or meta.shape != (m, groups // per):
            raise ValueError(f"meta of dtype {meta.dtype} must have shape ({m}, {groups // per})"
                             f" for {m} x {k} weights, got {meta.shape}")
        flat = meta.astype(np.int64) & ((1 << (8 * meta.dtype.itemsize)) - 1)
        if layout == "cutlass":
            offsets = cutlass_meta_gather_offsets(m, meta.shape[1], meta.dtype.itemsize)
            flat = flat.ravel()[offsets].reshape(meta.shape)
        elif layout != "plain":
            raise ValueError(f"meta_layout must be 'plain' or 'cutlass', got {layout!r}")
        nibbles = np.stack([(flat >> (4 * i)) & 0xF for i in range(per)], axis=-1)
        nibbles = nibbles.reshape(m, groups)
    idx0, idx1 = nibbles & 0b11, nibbles >> 2
    if (idx0 == idx1).any():
        r, g = (int(v[0]) for v in np.nonzero(idx0 == idx1))
        raise ValueError(f"meta: group {g} of row {r} names index {int(idx0[r, g])} twice")
    return np.stack([idx0, idx1], axis=-1).reshape(m, k // 2)


def semi_structured_to_dense(values, meta, *, meta_layout: str = "plain"):
    """Scatter PyTorch / NVIDIA 2:4 compressed values back to a dense ``[out, in]`` tensor.

    Parameters
    ----------
    values : array_like, shape (out, in/2)
        The kept values, two per group of 4 inputs, in the order of their indices.
    meta : array_like
        Per group ``idx0 | idx1 << 2``: int16 ``[out, in/16]`` (4 groups per element) or int32
        ``[out, in/32]`` (8 groups, int8 values), group ``j`` of an element in bits
        ``4j..4j+3``; or uint8 ``[out, in/4]``, one nibble per group.
    meta_layout : str
        ``'plain'`` (row-major, as computed before CUTLASS's reordering) or ``'cutlass'`` (the
        ``meta`` that ``to_sparse_semi_structured`` stores for the CUTLASS backend).

    Returns
    -------
    dense : ndarray, shape (out, in), dtype of ``values``
    mask : ndarray of bool, shape (out, in)
        Positions named by the metadata (a named position may hold a zero value).
    """
    values = _array(values, "values", 2)
    meta = _int_array(meta, "meta", 2)
    m, half = values.shape
    k = 2 * half
    if k % 4:
        raise ValueError(f"values must have in/2 columns with in a multiple of 4, got {half}")
    idx = _meta_indices(meta, m, k, meta_layout)
    cols = (np.arange(k // 2) // 2 * 4)[None, :] + idx  # absolute input index of each value
    dense = np.zeros((m, k), dtype=values.dtype)
    mask = np.zeros((m, k), dtype=bool)
    rows = np.repeat(np.arange(m)[:, None], k // 2, axis=1)
    dense[rows, cols] = values
    mask[rows, cols] = True
    return dense, mask


def _check_2to4(keep: np.ndarray, what: str) -> None:
    m, k = keep.shape
    if k % 4:
        raise ValueError(f"{what}: in_features={k} is not a multiple of 4")
    count = keep.reshape(m, k // 4, 4).sum(axis=2)
    if (count > 2).any():
        r, g = (int(v[0]) for v in np.nonzero(count > 2))
        raise ValueError(f"{what}: group {g} of row {r} keeps {int(count[r, g])} of 4 "
                         f"(2:4 allows 2)")


def import_semi_structured_dense(weight, mask=None, *, scale=None, fmt: str = "int8",
                                 group: int | None = None, scale_kind: str = "int",
                                 scale_bits: int = 16) -> Imported:
    """Import a 2:4-sparse PyTorch weight given densely (zeros, or ``weight · mask``).

    Parameters
    ----------
    weight : array_like, shape (out, in)
        int8 values (taken as int8 codes, exactly) or floats (float16, bfloat16, float32, …).
    mask : array_like, shape (out, in), optional
        Keep mask (``torch.nn.utils.prune``'s ``weight_mask``: nonzero = kept); default
        ``weight != 0``. At most 2 of every 4 consecutive inputs may be kept.
    scale : float or array_like of float, shape (out,), optional
        int8 weights only: per-tensor or per-output-channel dequantization scale. Without it an
        int8 layer has ``scale_kind='none'`` and ``scale_exp = 0`` (the raw integer GEMM).
    fmt, group, scale_kind, scale_bits
        Float weights only: how `golden.compress.compress` quantizes the kept values (the 2:4
        pattern itself is kept exactly).

    Returns
    -------
    Imported
        int8 input: exact values; float input: ``values_exact=False`` and the reference is the
        masked float weight.
    """
    w = _array(weight, "weight", 2)
    keep = (w != 0) if mask is None else _array(mask, "mask", 2).astype(bool)
    if keep.shape != w.shape:
        raise ValueError(f"mask shape {keep.shape} differs from weight shape {w.shape}")
    _check_2to4(keep, "2:4 weight")
    out_f, in_f = w.shape
    if w.dtype.kind in "iu":
        if w.dtype != np.int8:
            raise ValueError(f"integer 2:4 weights must be int8, got {w.dtype}")
        if not (fmt == "int8" and group is None and scale_kind == "int"):
            raise ValueError("fmt, group and scale_kind apply to float weights only; int8 "
                             "weights are imported as int8 codes with their given scale")
        vals = np.where(keep, w, 0).astype(np.int64).T  # [K, N]
        codes_dense = (vals & 0xFF).astype(np.uint8)
        codes, idx = pack_nm(codes_dense, vals != 0, 2, 4, 0)
        ref = vals.astype(np.float64)
        if scale is None:
            layer = Layer(format="int8", sparsity="2:4", group=in_f, scale_kind="none",
                          shape=(in_f, out_f), codes=codes, idx=idx,
                          scale_exp=np.zeros(out_f, np.int32))
            err = 0.0
        else:
            sf = _float_array(np.asarray(scale), "scale", np.ndim(scale))
            if sf.shape not in ((), (out_f,)):
                raise ValueError(f"scale must be a scalar or have shape ({out_f},), got "
                                 f"{sf.shape}")
            sf = np.broadcast_to(sf, (out_f,)).reshape(1, out_f)
            s, e, err = _int_scales(sf, scale_bits)
            ref = ref * sf
            layer = Layer(format="int8", sparsity="2:4", group=in_f, scale_kind="int",
                          shape=(in_f, out_f), codes=codes, idx=idx, scales=s, scale_exp=e,
                          scale_bits=int(scale_bits))
        validate_layer(layer)
        return Imported(layer=layer, reference=ref, scale_error=err)
    if scale is not None:
        raise ValueError("scale applies to int8 weights only; float weights carry their values")
    wf = _float_array(w, "weight", 2)
    kept = np.where(keep, wf, 0.0).T
    # Pruning keeps exactly the masked positions (masked-out weights are zero, saliency ranks
    # the mask first), so only the values are quantized.
    layer = compress(kept, fmt=fmt, sparsity="2:4", group=group, scale_kind=scale_kind,
                     scale_bits=scale_bits, saliency=keep.T.astype(np.float64))
    return Imported(layer=layer, reference=kept, values_exact=False)


def import_semi_structured(values, meta, *, meta_layout: str = "plain", scale=None,
                           fmt: str = "int8", group: int | None = None, scale_kind: str = "int",
                           scale_bits: int = 16) -> Imported:
    """Import PyTorch / NVIDIA 2:4 compressed ``values [out, in/2]`` + metadata.

    See `semi_structured_to_dense` for the metadata forms and `import_semi_structured_dense`
    for ``scale``, ``fmt``, ``group``, ``scale_kind`` and ``scale_bits``. The layer is
    re-packed canonically (SPEC §3): a named position holding a zero becomes padding at the
    lowest unused index, whatever padding PyTorch's encoder chose.
    """
    dense, mask = semi_structured_to_dense(values, meta, meta_layout=meta_layout)
    return import_semi_structured_dense(dense, mask, scale=scale, fmt=fmt, group=group,
                                        scale_kind=scale_kind, scale_bits=scale_bits)


# ----------------------------------------------------------------------------- GPTQ / AWQ


def _int4_layer(q: np.ndarray, z: np.ndarray, scales: np.ndarray, scale_bits: int,
                int4_if_symmetric: bool) -> tuple[Layer, np.ndarray, float]:
    """uint4 codes ``[K, N]``, zero points and float scales ``[G, N]`` → layer, reference."""
    K, N = q.shape
    G = scales.shape[0]
    group = K // G
    if (z > 15).any():
        g, n = (int(v[0]) for v in np.nonzero(z > 15))
        raise ValueError(f"zero point {int(z[g, n])} of group {g}, column {n} is outside the "
                         f"SPEC uint4 range 0..15 (a GPTQ v1 file stores 15 for z = 16)")
    s, e, err = _int_scales(scales, scale_bits)
    zk = np.repeat(z.astype(np.int64), group, axis=0)
    ref = (q.astype(np.int64) - zk) * np.repeat(scales, group, axis=0)
    common = dict(sparsity="dense", group=group, scale_kind="int", shape=(K, N), scales=s,
                  scale_exp=e, scale_bits=int(scale_bits))
    if int4_if_symmetric and (z == 8).all():
        codes = ((q.astype(np.int64) - 8) & 0xF).astype(np.uint8)
        layer = Layer(format="int4", codes=codes, **common)
    else:
        layer = Layer(format="uint4", codes=q.astype(np.uint8), zeros=z.astype(np.uint8),
                      **common)
    validate_layer(layer)
    return layer, ref, err


def _check_scales(scales, K: int, N: int, what: str) -> np.ndarray:
    sc = _float_array(scales, "scales", 2)
    if sc.shape[1] != N or sc.shape[0] == 0 or K % sc.shape[0]:
        raise ValueError(f"{what} scales must be [groups, {N}] with groups dividing "
                         f"in_features={K}, got {sc.shape}")
    return sc


def import_gptq(qweight, qzeros, scales, *, g_idx=None, bits: int = 4, version: int = 1,
                scale_bits: int = 16, int4_if_symmetric: bool = False) -> Imported:
    """Import a GPTQ int4 linear layer (AutoGPTQ / GPTQModel ``QuantLinear`` tensors).

    Parameters
    ----------
    qweight : array_like of int32, shape (in/8, out)
        Nibble ``j`` (bits ``4j..4j+3``) of ``qweight[i, n]`` is the code of input ``8i + j``.
    qzeros : array_like of int32, shape (groups, out/8)
        Nibble ``j`` of ``qzeros[g, c]`` is the stored zero point of output ``8c + j``.
    scales : array_like of float, shape (groups, out)
        Float16 in the checkpoints; any float dtype is accepted.
    g_idx : array_like of int, shape (in,), optional
        Group of every input channel. ``None`` or ``k // group`` keeps the input order; any
        other assignment (act-order / ``desc_act``) is imported with the inputs sorted by group,
        and `Imported.perm` gives that order (feed ``x[:, perm]``).
    bits : int
        Only 4 is representable (SPEC ``uint4``).
    version : int
        1: AutoGPTQ's ``checkpoint_format='gptq'``, stored zero = ``z − 1``; 2: GPTQModel's
        ``gptq_v2``, stored zero = ``z``.
    scale_bits : int
        Width of the ``int`` scales (16 on the default hardware).
    int4_if_symmetric : bool
        If every zero point is 8 (``sym=True``), store ``q − 8`` as ``int4`` without zero
        points (same values, 4 bits per group less).

    Returns
    -------
    Imported
        Codes and zero points are exact; scales as `Imported.scale_error` says. The reference
        is ``scales[g] · (q − z)``.
    """
    if bits != 4:
        raise ValueError(f"only 4-bit GPTQ maps onto SPEC uint4, got bits={bits}")
    if version not in (1, 2):
        raise ValueError(f"GPTQ zero-point version must be 1 or 2, got {version}")
    q = unpack_int32_nibbles(_int_array(qweight, "qweight", 2), axis=0)  # [K, N]
    K, N = q.shape
    zs = unpack_int32_nibbles(_int_array(qzeros, "qzeros", 2), axis=1)  # [G, N]
    sc = _check_scales(scales, K, N, "GPTQ")
    G = sc.shape[0]
    if zs.shape != (G, N):
        raise ValueError(f"qzeros must unpack to [{G}, {N}] (shape [{G}, {N // 8}]), got "
                         f"{zs.shape} from shape {np.shape(qzeros)}")
    z = zs.astype(np.int64) + (1 if version == 1 else 0)
    group = K // G
    perm = None
    if g_idx is not None:
        gi = _int_array(g_idx, "g_idx", 1).astype(np.int64)
        if gi.shape != (K,):
            raise ValueError(f"g_idx must have shape ({K},), got {gi.shape}")
        if gi.min() < 0 or gi.max() >= G:
            raise ValueError(f"g_idx values must lie in 0..{G - 1}")
        if not np.array_equal(gi, np.arange(K) // group):
            counts = np.bincount(gi, minlength=G)
            if (counts != group).any():
                raise ValueError(f"g_idx must put exactly {group} inputs in every group to be "
                                 f"reordered into contiguous groups, found counts "
                                 f"{counts.min()}..{counts.max()}")
            perm = np.argsort(gi, kind="stable").astype(np.int64)
            q = q[perm]
    layer, ref, err = _int4_layer(q, z, sc, scale_bits, int4_if_symmetric)
    return Imported(layer=layer, reference=ref, scale_error=err, perm=perm)


def import_awq(qweight, qzeros, scales, *, scale_bits: int = 16,
               int4_if_symmetric: bool = False) -> Imported:
    """Import an AutoAWQ ``WQLinear_GEMM`` int4 layer.

    Parameters
    ----------
    qweight : array_like of int32, shape (in, out/8)
        Nibble ``i`` of ``qweight[k, c]`` holds output ``8c + AWQ_ORDER[i]``
        (``AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]``).
    qzeros : array_like of int32, shape (groups, out/8)
        Zero points ``z`` (no offset), packed like ``qweight``.
    scales : array_like of float, shape (groups, out)
    scale_bits, int4_if_symmetric
        As in `import_gptq`.

    Returns
    -------
    Imported
        Reference ``(q − z) · scales[g]``.
    """
    q = unpack_int32_nibbles(_int_array(qweight, "qweight", 2), axis=1, order=AWQ_ORDER)
    K, N = q.shape
    z = unpack_int32_nibbles(_int_array(qzeros, "qzeros", 2), axis=1, order=AWQ_ORDER)
    sc = _check_scales(scales, K, N, "AWQ")
    if z.shape != sc.shape:
        raise ValueError(f"qzeros must unpack to {sc.shape} (shape [{sc.shape[0]}, {N // 8}]), "
                         f"got {z.shape} from shape {np.shape(qzeros)}")
    layer, ref, err = _int4_layer(q, z.astype(np.int64), sc, scale_bits, int4_if_symmetric)
    return Imported(layer=layer, reference=ref, scale_error=err)


# ----------------------------------------------------------------------------- BitNet I2_S


def unpack_i2s(data, shape, *, block: int = 128) -> np.ndarray:
    """Unpack bitnet.cpp ``I2_S`` 2-bit codes.

    The ``out × in`` codes are flattened row-major and cut into blocks of ``block`` elements
    (128 on x86, 64 on ARM builds), each stored in ``block/4`` bytes: element ``j`` of a block
    sits in byte ``j mod (block/4)`` at bit ``6 − 2·⌊j / (block/4)⌋``.

    Parameters
    ----------
    data : array_like of uint8
        At least ``out·in/4`` bytes (the tensor data may carry the scale after them).
    shape : (int, int)
        ``(out, in)``.
    block : int
        128 or 64.

    Returns
    -------
    ndarray of uint8, shape (out, in)
        Codes 0..3 (0, 1, 2 = −1, 0, +1; 3 is not a valid I2_S code).
    """
    if block not in (64, 128):
        raise ValueError(f"I2_S block must be 128 (x86) or 64 (ARM), got {block}")
    out_f, in_f = (int(v) for v in shape)
    n = out_f * in_f
    if n <= 0 or n % block:
        raise ValueError(f"I2_S needs out*in to be a positive multiple of {block}, got {n}")
    raw = np.asarray(data)
    if raw.dtype != np.uint8:
        raise ValueError(f"I2_S data must be uint8 bytes, got {raw.dtype}")
    raw = raw.ravel()
    if raw.size < n // 4:
        raise ValueError(f"I2_S data holds {raw.size} bytes, {out_f}x{in_f} needs {n // 4}")
    width = block // 4
    b = raw[: n // 4].reshape(n // block, 1, width).astype(np.int64)
    shifts = (6 - 2 * np.arange(4, dtype=np.int64))[None, :, None]
    codes = (b >> shifts) & 0b11  # [blocks, quarter, byte] → element quarter·width + byte
    return codes.reshape(out_f, in_f).astype(np.uint8)


def import_bitnet_i2s(data, shape, *, scale=None, block: int = 128,
                      scale_bits: int = 16) -> Imported:
    """Import a bitnet.cpp ``I2_S`` ternary weight (BitNet b1.58) as a SPEC ``ternary`` layer.

    Parameters
    ----------
    data : array_like of uint8
        The tensor's bytes: ``out·in/4`` code bytes (layout in `unpack_i2s`), then, when
        ``scale`` is not given, the float32 (little-endian) per-tensor scale.
    shape : (int, int)
        ``(out, in)`` (GGML ``ne1, ne0``).
    scale : float, optional
        Per-tensor scale; default: read from the 4 bytes after the codes.
    block : int
        128 (x86 builds) or 64 (ARM builds).
    scale_bits : int
        Width of the ``int`` scales. A float32 scale has a 24-bit significand, so it is exact
        from 25 bits on and rounded (relative error ≤ 2**−15) at the default 16.

    Returns
    -------
    Imported
        Ternary codes remapped ``0/1/2 → 0b11/0b00/0b01`` (exact), per-channel (``G = K``)
        ``int`` scales all equal to the tensor scale; reference ``(code − 1) · scale``.
    """
    out_f, in_f = (int(v) for v in shape)
    codes = unpack_i2s(data, shape, block=block)
    if (codes == 3).any():
        r, c = (int(v[0]) for v in np.nonzero(codes == 3))
        raise ValueError(f"I2_S code 3 (undefined) at output {r}, input {c}: "
                         f"{int((codes == 3).sum())} invalid codes")
    if scale is None:
        raw = np.asarray(data).ravel()
        n4 = out_f * in_f // 4
        if raw.size < n4 + 4:
            raise ValueError("I2_S data has no float32 scale after the codes; pass scale=")
        scale = float(raw[n4: n4 + 4].view("<f4")[0])
    scale = float(scale)
    if not np.isfinite(scale):
        raise ValueError(f"I2_S scale must be finite, got {scale}")
    sf = np.full((1, out_f), scale)
    s, e, err = _int_scales(sf, scale_bits)
    layer = Layer(format="ternary", sparsity="dense", group=in_f, scale_kind="int",
                  shape=(in_f, out_f), codes=I2S_TO_TERNARY[codes.T], scales=s, scale_exp=e,
                  scale_bits=int(scale_bits))
    validate_layer(layer)
    ref = (codes.T.astype(np.float64) - 1.0) * scale
    return Imported(layer=layer, reference=ref, scale_error=err)


# ----------------------------------------------------------------------------- NVFP4

#: NVFP4 per-tensor scale conventions: the tensor name and whether it multiplies (ModelOpt's
#: ``weight_scale_2``) or divides (compressed-tensors' ``weight_global_scale``) the weights.
NVFP4_CONVENTIONS = {"modelopt": ("weight", "weight_scale_2", False),
                     "compressed-tensors": ("weight_packed", "weight_global_scale", True)}


def unpack_uint8_nibbles(packed) -> np.ndarray:
    """Two 4-bit codes per byte along the last axis, low nibble first: ``[…, n] → […, 2n]``."""
    p = _array(packed, "packed tensor", 2)
    if p.dtype != np.uint8:
        raise ValueError(f"packed E2M1 weights must be uint8 (two nibbles a byte), got {p.dtype}")
    return np.stack([p & 0xF, p >> 4], axis=-1).reshape(p.shape[0], -1)


def import_nvfp4(weight, weight_scale, tensor_scale, *, convention: str = "modelopt",
                 scale_bits: int = NVFP4_SCALE_BITS) -> Imported:
    """Import an NVFP4 linear weight as a SPEC ``int``-scale ``fp4_e2m1`` layer (``G = 16``).

    Parameters
    ----------
    weight : array_like of uint8, shape (out, in/2)
        Packed E2M1 codes: byte ``j`` of a row holds input ``2j`` in its low nibble and
        ``2j + 1`` in its high nibble (sign in bit 3 of each nibble).
    weight_scale : array_like, shape (out, in/16)
        E4M3 block scales, as ``uint8`` codes or ``ml_dtypes.float8_e4m3fn`` values; NaN codes
        are refused.
    tensor_scale : float or array_like of one float
        The fp32 per-tensor scale: ModelOpt's ``weight_scale_2`` (``w = e2m1 · scale ·
        weight_scale_2``) or compressed-tensors' ``weight_global_scale`` (``w = e2m1 · scale /
        weight_global_scale``), chosen by ``convention``.
    convention : str
        ``'modelopt'`` or ``'compressed-tensors'``.
    scale_bits : int
        Width of the stored ``int`` scales, at least 19 (E4M3 · 2**9 up to 229 376).

    Returns
    -------
    Imported
        Codes and scales exact (``exact`` is True): ``reference = e2m1 · scale`` (float64),
        and ``tensor_scale`` the per-tensor factor (``weight_scale_2``, or
        ``1 / weight_global_scale`` rounded to float64), so the producer's weights are
        ``reference · tensor_scale``.
    """
    if convention not in NVFP4_CONVENTIONS:
        raise ValueError(f"NVFP4 convention must be one of {', '.join(NVFP4_CONVENTIONS)}, "
                         f"got {convention!r}")
    codes = unpack_uint8_nibbles(weight)  # [out, in]
    out_f, in_f = codes.shape
    sc = _array(weight_scale, "weight_scale", 2)
    if sc.dtype != np.uint8 and sc.dtype.name != "float8_e4m3fn":
        raise ValueError(f"weight_scale must be E4M3 (uint8 codes or float8_e4m3fn), got "
                         f"{sc.dtype}")
    sc = sc.view(np.uint8)
    if in_f % NVFP4_GROUP or sc.shape != (out_f, in_f // NVFP4_GROUP):
        raise ValueError(f"weight_scale must have shape ({out_f}, {in_f // NVFP4_GROUP}) for "
                         f"{out_f} x {in_f} weights (one scale per 16 inputs), got {sc.shape}")
    t = np.asarray(tensor_scale, dtype=np.float64).reshape(-1)
    name = NVFP4_CONVENTIONS[convention][1]
    if t.size != 1 or not np.isfinite(t[0]) or t[0] <= 0:
        raise ValueError(f"{name} must be one positive finite float, got "
                         f"{np.asarray(tensor_scale).tolist()}")
    factor = 1.0 / float(t[0]) if NVFP4_CONVENTIONS[convention][2] else float(t[0])
    layer = nvfp4_layer(codes.T, np.ascontiguousarray(sc.T), scale_bits=scale_bits)
    elem = decode_float("fp4_e2m1", codes.T) + 0.0  # −0 → 0
    ref = elem * np.repeat(decode_float("fp8_e4m3", sc.T), NVFP4_GROUP, axis=0)
    return Imported(layer=layer, reference=ref, tensor_scale=factor)


_SAFETENSORS_DTYPES = {"U8": np.uint8, "I8": np.int8, "F8_E4M3": np.uint8, "F8_E5M2": np.uint8,
                       "I16": "<i2", "I32": "<i4", "I64": "<i8", "F16": "<f2", "F32": "<f4",
                       "F64": "<f8", "BF16": "<u2"}


def read_safetensors_raw(path, names) -> dict[str, np.ndarray]:
    """Read tensors from a safetensors file without a framework, fp8 included.

    ``safetensors``' numpy reader has no float8 dtypes; this reads the header and the bytes
    directly. ``F8_E4M3`` / ``F8_E5M2`` tensors come back as their uint8 codes, ``BF16`` as
    ``ml_dtypes.bfloat16``, the rest as the matching numpy dtype.

    Parameters
    ----------
    path : str or PathLike
    names : iterable of str
        Tensors to read; missing ones are left out of the result.

    Raises
    ------
    ValueError
        For a file that is not safetensors or a tensor of an unknown dtype.
    """
    import ml_dtypes

    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its header)")
        n = int.from_bytes(head, "little")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a safetensors file ({exc})") from None
        base = 8 + n
        out = {}
        for name in names:
            if name not in header or name == "__metadata__":
                continue
            entry = header[name]
            dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"))
            if dtype is None:
                raise ValueError(f"tensor {name!r} in {path} has unsupported dtype "
                                 f"{entry.get('dtype')!r}")
            try:
                start, stop = (int(v) for v in entry["data_offsets"])
                f.seek(base + start)
                a = np.frombuffer(f.read(stop - start), dtype=dtype).reshape(entry["shape"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"tensor {name!r} in {path} is corrupt ({exc})") from None
            if entry["dtype"] == "BF16":
                a = a.view(ml_dtypes.bfloat16)
            out[name] = a.copy()
    return out
