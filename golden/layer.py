"""The compressed layer file (SPEC §7): the `Layer` record, validation, save and load.

Files are ``.npz`` archives written deterministically (fixed key order, fixed timestamps,
stored uncompressed), so saving the same layer twice gives identical bytes.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, fields

import numpy as np

from .blocks import block_problem, block_slot_keep, groups_dropped
from .formats import FORMATS, SCALE_KINDS
from .sparsity import SPARSITY_PATTERNS, block_positions, padding_idx, parse_sparsity
from .tables import E8M0_BIAS, MX_BLOCK, OUT_MULT_MAX, OUT_MULT_MIN, OUT_SHIFT_MAX, OUT_SHIFT_MIN

__all__ = [
    "LAYER_VERSION", "Layer", "LayerError", "load_layer", "pad_k", "save_layer", "validate_layer",
]

LAYER_VERSION = 1

_ARRAY_KEYS = (
    "codes", "idx", "scales", "scale_exp", "zeros", "bias", "out_mult", "out_shift", "out_zp",
    "block_shape", "block_mask",
)


class LayerError(ValueError):
    """A layer (file or in memory) breaks SPEC §7; the message names the offending key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"layer key {key!r}: {problem}")

    def __reduce__(self):  # keep the two-argument form picklable (e.g. across pytest-xdist)
        return type(self), (self.key, self.problem)


@dataclass(eq=False)
class Layer:
    """One compressed weight matrix with its scales and optional output stage (SPEC §7).

    Attributes
    ----------
    format : str
        Element format (`golden.formats.FORMATS`).
    sparsity : str
        ``'dense'`` or ``'N:M'``.
    group : int
        Group size G along K (K for per-channel).
    scale_kind : str
        ``'none'``, ``'int'`` or ``'pow2'``.
    shape : tuple of int
        ``(K, N)`` of the dense weight.
    codes : ndarray of uint8, shape (K·N_sp/M_sp, N)
        One element code per slot.
    idx : ndarray of uint8, same shape as codes, or None
        Position of each slot inside its block (None when dense).
    scales : ndarray of int32 (``int``) or uint8 E8M0 (``pow2``), shape (K/G, N), or None
    scale_exp : ndarray of int32, shape (N,), or None
        Per column power of two turning the integer result into floats (required for ``int``
        and ``none``; optional for ``pow2``).
    zeros : ndarray of uint8, shape (K/G, N), or None
        Zero points (``uint4`` only, required there).
    bias : ndarray of int64 or int32, shape (N,), or None
        Added to the raw accumulator before requantization (accumulator units).
    out_mult : ndarray of int32, shape (N,), or None
        ``M0`` in ``[2**30, 2**31)``.
    out_shift : ndarray of int32, shape (N,), or None
        ``sh`` in ``[−31, 30]`` (positive = left shift).
    out_zp : ndarray of int32, shape (N,) or scalar, or None
        Output zero point.
    scale_bits : int or None
        Extension key: width of the ``int`` scales (bits per weight accounting); ignored by
        readers that do not know it.
    version : int
        File format version, 1.
    block_shape : ndarray of int64, shape (2,), or None
        ``(bk, bn)`` of block sparsity (SPEC §3, `golden.blocks`); None when not block sparse.
    block_mask : ndarray of uint8, shape (K/bk, N/bn), or None
        1 where a block is kept; every weight of a dropped block is zero-valued.
    """

    format: str
    sparsity: str
    group: int
    scale_kind: str
    shape: tuple[int, int]
    codes: np.ndarray
    idx: np.ndarray | None = None
    scales: np.ndarray | None = None
    scale_exp: np.ndarray | None = None
    zeros: np.ndarray | None = None
    bias: np.ndarray | None = None
    out_mult: np.ndarray | None = None
    out_shift: np.ndarray | None = None
    out_zp: np.ndarray | None = None
    scale_bits: int | None = None
    version: int = LAYER_VERSION
    block_shape: np.ndarray | None = None
    block_mask: np.ndarray | None = None

    @property
    def n_sp(self) -> int:
        """Kept slots per sparsity block (1 when dense)."""
        return parse_sparsity(self.sparsity)[0]

    @property
    def m_sp(self) -> int:
        """Sparsity block length along K (1 when dense)."""
        return parse_sparsity(self.sparsity)[1]

    @property
    def K(self) -> int:
        """Reduction depth of the dense weight."""
        return int(self.shape[0])

    @property
    def N(self) -> int:
        """Number of output columns."""
        return int(self.shape[1])

    @property
    def n_groups(self) -> int:
        """Scale groups per column, ``K / G``."""
        return self.K // int(self.group)

    @property
    def is_dense(self) -> bool:
        """True for the ``dense`` pattern."""
        return self.sparsity == "dense"

    @property
    def is_block_sparse(self) -> bool:
        """True when the layer carries a block mask (SPEC §3 block sparsity)."""
        return self.block_mask is not None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The file representation: key → numpy array, absent optional keys left out."""
        out = {
            "version": np.array(self.version, dtype=np.int64),
            "format": np.array(self.format),
            "sparsity": np.array(self.sparsity),
            "group": np.array(self.group, dtype=np.int64),
            "scale_kind": np.array(self.scale_kind),
            "shape": np.array(self.shape, dtype=np.int64),
        }
        if self.scale_bits is not None:
            out["scale_bits"] = np.array(self.scale_bits, dtype=np.int64)
        for key in _ARRAY_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = np.asarray(value)
        return out

    @classmethod
    def from_arrays(cls, arrays) -> Layer:
        """Build a layer from a validated key → array mapping (unknown keys ignored)."""
        kw = {key: np.asarray(arrays[key]) for key in _ARRAY_KEYS if key in arrays}
        return cls(
            format=str(arrays["format"]),
            sparsity=str(arrays["sparsity"]),
            group=int(arrays["group"]),
            scale_kind=str(arrays["scale_kind"]),
            shape=tuple(int(v) for v in arrays["shape"]),
            scale_bits=int(arrays["scale_bits"]) if "scale_bits" in arrays else None,
            version=int(arrays["version"]),
            **kw,
        )

    def copy(self, **changes) -> Layer:
        """A copy with some fields replaced (arrays are shared unless replaced)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw.update(changes)
        return Layer(**kw)


def pad_k(layer: Layer, K: int) -> Layer:
    """Pad a per-channel layer along K with zero-valued weights, up to ``K``.

    The padding slots hold the zero-valued code (the zero point for formats that have one) at
    the canonical N:M positions (`golden.sparsity.padding_idx`), so the GEMM is unchanged when
    the activations are padded with anything.

    Raises
    ------
    ValueError
        If the layer is grouped (a group cannot grow) or ``K`` is not a whole number of blocks.
    """
    K0, N = (int(v) for v in layer.shape)
    n_sp, m_sp = parse_sparsity(layer.sparsity)
    if int(layer.group) != K0:
        raise ValueError(f"only per-channel layers can be padded along K (group {layer.group})")
    if K < K0 or K % m_sp:
        raise ValueError(f"cannot pad K={K0} to {K} (blocks of {m_sp})")
    extra_slots = (K - K0) * n_sp // m_sp
    pad_codes = np.zeros((extra_slots, N), np.uint8)
    if layer.zeros is not None:
        pad_codes[:] = layer.zeros[0]
    changes = {"shape": (K, N), "group": K, "codes": np.concatenate([layer.codes, pad_codes])}
    if layer.block_mask is not None:  # the padding is dropped blocks
        bk = int(layer.block_shape[0])
        if (K - K0) % bk:
            raise ValueError(f"cannot pad K={K0} to {K} in whole blocks of bk={bk}")
        extra = np.zeros(((K - K0) // bk, layer.block_mask.shape[1]), np.uint8)
        changes["block_mask"] = np.concatenate([layer.block_mask, extra])
    if layer.idx is not None:
        pad_idx = np.tile(padding_idx(extra_slots, n_sp)[:, None], (1, N)).astype(np.uint8)
        changes["idx"] = np.concatenate([layer.idx, pad_idx])
    return layer.copy(**changes)


# ----------------------------------------------------------------------------- validation


def _scalar(arrays, key: str, kind: str):
    if key not in arrays:
        raise LayerError(key, "required key is missing")
    a = np.asarray(arrays[key])
    if a.ndim != 0:
        raise LayerError(key, f"must be a scalar, got shape {a.shape}")
    if kind == "str":
        if a.dtype.kind != "U":
            raise LayerError(key, f"must be a string, got dtype {a.dtype}")
        return str(a)
    if a.dtype.kind not in "iu":
        raise LayerError(key, f"must be an integer, got dtype {a.dtype}")
    return int(a)


def _array(arrays, key: str, dtypes, shape, required: bool):
    if key not in arrays or arrays[key] is None:
        if required:
            raise LayerError(key, "required key is missing")
        return None
    a = np.asarray(arrays[key])
    names = [np.dtype(d).name for d in dtypes]
    if a.dtype.name not in names:
        raise LayerError(key, f"dtype must be {' or '.join(names)}, got {a.dtype}")
    if shape is not None and a.shape != tuple(shape):
        raise LayerError(key, f"shape must be {tuple(shape)}, got {a.shape}")
    return a


def _forbid(arrays, key: str, why: str):
    if key in arrays and arrays[key] is not None:
        raise LayerError(key, f"must be absent {why}")


def _check_range(key: str, a, lo: int, hi: int):
    if a.size and (a.min() < lo or a.max() > hi):
        raise LayerError(key, f"values must lie in [{lo}, {hi}], found {a.min()}..{a.max()}")


def validate_arrays(arrays) -> None:  # noqa: C901 - one flat branch per rule of the file format
    """Validate a key → array mapping against SPEC §7 and NUMERICS.md.

    Raises
    ------
    LayerError
        Naming the first offending key.
    """
    version = _scalar(arrays, "version", "int")
    if version != LAYER_VERSION:
        raise LayerError("version", f"unsupported version {version}, expected {LAYER_VERSION}")
    fmt = _scalar(arrays, "format", "str")
    if fmt not in FORMATS:
        raise LayerError("format", f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    info = FORMATS[fmt]
    sparsity = _scalar(arrays, "sparsity", "str")
    if sparsity not in SPARSITY_PATTERNS:
        raise LayerError(
            "sparsity", f"bad sparsity {sparsity!r}; expected one of {', '.join(SPARSITY_PATTERNS)}"
        )
    n_sp, m_sp = SPARSITY_PATTERNS[sparsity]
    group = _scalar(arrays, "group", "int")
    kind = _scalar(arrays, "scale_kind", "str")
    if kind not in SCALE_KINDS:
        raise LayerError("scale_kind", f"unknown scale kind {kind!r}; expected none, int or pow2")
    if kind not in info.allowed_scales:
        raise LayerError(
            "scale_kind",
            f"{kind!r} is not allowed for {fmt} (allowed: {', '.join(info.allowed_scales)})",
        )
    shape = _array(arrays, "shape", [np.int64], (2,), True)
    K, N = (int(v) for v in shape)
    if K <= 0 or N <= 0:
        raise LayerError("shape", f"K and N must be positive, got {K}, {N}")
    if K % m_sp:
        raise LayerError("shape", f"K={K} is not a multiple of the sparsity block M={m_sp}")
    if group <= 0 or group % m_sp or K % group:
        raise LayerError(
            "group", f"G={group} must be a positive multiple of M={m_sp} that divides K={K}"
        )
    if kind == "pow2" and group != MX_BLOCK:
        raise LayerError("group", f"pow2 scales need G = {MX_BLOCK}, got {group}")
    if "scale_bits" in arrays:
        scale_bits = _scalar(arrays, "scale_bits", "int")
        if not 2 <= scale_bits <= 32:
            raise LayerError("scale_bits", f"must lie in [2, 32], got {scale_bits}")
    else:
        scale_bits = 32

    slots = (K // m_sp * n_sp, N)
    codes = _array(arrays, "codes", [np.uint8], None, True)
    if codes.shape != slots:
        raise LayerError(
            "codes",
            f"shape must be {slots} (K*N_sp/M_sp rows for {sparsity} of K={K}), got {codes.shape}",
        )
    _check_range("codes", codes, 0, info.n_codes - 1)
    if n_sp == m_sp:
        _forbid(arrays, "idx", "for dense layers")
    else:
        idx = _array(arrays, "idx", [np.uint8], slots, True)
        _check_range("idx", idx, 0, m_sp - 1)
        first, later = block_positions(slots[0], n_sp)
        bad = idx[later] <= idx[first]
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise LayerError(
                "idx",
                f"not strictly increasing within block {int(later[row]) // n_sp} of column {col}",
            )

    gshape = (K // group, N)
    if kind == "none":
        _forbid(arrays, "scales", "for scale_kind 'none'")
    elif kind == "int":
        scales = _array(arrays, "scales", [np.int32], gshape, True)
        if scale_bits < 32:
            _check_range("scales", scales, -(1 << (scale_bits - 1)), (1 << (scale_bits - 1)) - 1)
    else:
        _array(arrays, "scales", [np.uint8], gshape, True)
    _array(arrays, "scale_exp", [np.int32], (N,), kind != "pow2")
    if info.has_zero_point:
        _check_range("zeros", _array(arrays, "zeros", [np.uint8], gshape, True), 0,
                     info.zero_max)
    else:
        _forbid(arrays, "zeros", f"for {fmt} (it has no zero point)")

    _array(arrays, "bias", [np.int32, np.int64], (N,), False)
    mult = _array(arrays, "out_mult", [np.int32], (N,), False)
    shift = _array(arrays, "out_shift", [np.int32], (N,), False)
    if (mult is None) != (shift is None):
        missing = "out_shift" if shift is None else "out_mult"
        raise LayerError(missing, "out_mult and out_shift must be given together")
    if mult is not None:
        _check_range("out_mult", mult, OUT_MULT_MIN, OUT_MULT_MAX)
        _check_range("out_shift", shift, OUT_SHIFT_MIN, OUT_SHIFT_MAX)
    if "out_zp" in arrays and arrays["out_zp"] is not None:
        zp = _array(arrays, "out_zp", [np.int32], None, False)
        if zp.shape not in ((), (N,)):
            raise LayerError("out_zp", f"shape must be () or ({N},), got {zp.shape}")
    _validate_blocks(arrays, K, N, n_sp, m_sp, group, kind, info, codes)


def _validate_blocks(arrays, K, N, n_sp, m_sp, group, kind, info, codes) -> None:
    """SPEC §3 block sparsity: the optional ``block_shape`` / ``block_mask`` keys."""
    has_shape = arrays.get("block_shape") is not None
    has_mask = arrays.get("block_mask") is not None
    if has_shape != has_mask:
        missing = "block_mask" if has_shape else "block_shape"
        raise LayerError(missing, "block_shape and block_mask must be given together")
    if not has_shape:
        return
    block_shape = _array(arrays, "block_shape", [np.int64], (2,), True)
    problem = block_problem(block_shape, K, N, m_sp, kind)
    if problem:
        raise LayerError("block_shape", problem)
    bk, bn = (int(v) for v in block_shape)
    mask = _array(arrays, "block_mask", [np.uint8], (K // bk, N // bn), True)
    _check_range("block_mask", mask, 0, 1)
    slot_keep = block_slot_keep(block_shape, mask, n_sp, m_sp)
    dropped_g = groups_dropped(block_shape, mask, group)
    zeros = arrays.get("zeros") if info.has_zero_point else None
    if zeros is not None and (np.asarray(zeros)[dropped_g] != 0).any():
        raise LayerError("zeros", "zero points of groups wholly in dropped blocks must be 0")
    zero_code = 0
    if zeros is not None:
        zero_code = np.asarray(zeros)[(np.arange(codes.shape[0]) // n_sp * m_sp) // group]
    bad = ~slot_keep & (codes != zero_code)
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise LayerError("codes", f"slot {row} of column {col} lies in a dropped block and "
                                  "is not the zero-valued code")
    if n_sp != m_sp:
        idx = np.asarray(arrays["idx"])
        pad = (np.arange(idx.shape[0]) % n_sp)[:, None]
        if (~slot_keep & (idx != pad)).any():
            raise LayerError("idx", "slots of dropped blocks must sit at their canonical "
                                    "(padding) indices")
    if kind != "none":
        canon = E8M0_BIAS if kind == "pow2" else 0
        if (np.asarray(arrays["scales"])[dropped_g] != canon).any():
            raise LayerError("scales", f"scales of groups wholly in dropped blocks must be "
                                       f"{canon}")


def validate_layer(layer: Layer) -> None:
    """Check a `Layer` against SPEC §7; raise `LayerError` naming the offending key."""
    validate_arrays(layer.to_arrays())


# ----------------------------------------------------------------------------- file I/O

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def save_layer(path, layer: Layer) -> None:
    """Validate and write a layer as a deterministic ``.npz`` (path or binary file object)."""
    arrays = layer.to_arrays()
    validate_arrays(arrays)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(value, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def load_layer(path) -> Layer:
    """Read and validate a layer file.

    Raises
    ------
    LayerError
        If the file is unreadable, not an ``.npz`` archive, or breaks SPEC §7 (the message
        names the key; file-level problems name the key ``'file'``).
    """
    name = os.fspath(path) if isinstance(path, str | os.PathLike) else "<stream>"
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LayerError("file", f"cannot read {name} as an .npz archive ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise LayerError("file", f"{name} is a single .npy array, not an .npz archive")
    try:
        with npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LayerError("file", f"cannot read {name} as an .npz archive ({exc})") from None
    validate_arrays(arrays)
    return Layer.from_arrays(arrays)
