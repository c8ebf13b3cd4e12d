"""Host-side float conversions around the integer GEMM: output scales, requant parameters and
dequantization of results.

* `output_scales` — the float value of one accumulator unit per column (``2**scale_exp[n]``,
  times ``2**−frac_bits`` for ``pow2`` layers).
* `quantize_multiplier` — TFLite's ``QuantizeMultiplier``: a positive real multiplier as
  ``M0 · 2**(shift − 31)`` with ``M0`` in ``[2**30, 2**31)``.
* `requant_params` — ``out_mult``, ``out_shift``, ``bias`` and ``out_zp`` of a layer from the
  activation scale, the output scale and an optional float bias.
* `dequantize_output` — raw accumulators or requantized int8 back to floats.
"""

from __future__ import annotations

import math

import numpy as np

from .layer import Layer
from .tables import INT32_MAX, INT32_MIN, OUT_MULT_MAX, OUT_MULT_MIN, OUT_SHIFT_MAX, OUT_SHIFT_MIN

__all__ = ["output_scales", "quantize_multiplier", "requant_params", "dequantize_output"]


def output_scales(layer: Layer, frac_bits: int = 16) -> np.ndarray:
    """Float value of one raw accumulator unit per output column, ``[N]`` float64.

    Activations count in their own integer units (multiply by the activation scale on top);
    MXINT8 activation exponents are already inside a ``pow2`` accumulator.
    """
    exp = np.zeros(layer.N, np.int64) if layer.scale_exp is None else \
        layer.scale_exp.astype(np.int64)
    if layer.scale_kind == "pow2":
        exp = exp - int(frac_bits)
    return np.ldexp(1.0, exp)


def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``QuantizeMultiplier``: ``real ≈ M0 · 2**(shift − 31)`` per element.

    ``frexp`` gives ``real = q · 2**shift`` with ``q`` in ``[0.5, 1)``; ``M0 = round(q · 2**31)``
    (half away from zero, as ``std::round``), and ``M0 = 2**31`` becomes ``2**30`` with
    ``shift + 1``.

    Raises
    ------
    ValueError
        A multiplier that is not finite and positive, or whose shift leaves ``[−31, 30]``.
    """
    real = np.atleast_1d(np.asarray(real, np.float64))
    m0 = np.zeros(real.shape, np.int64)
    shift = np.zeros(real.shape, np.int64)
    for i, r in np.ndenumerate(real):
        if not math.isfinite(r) or r <= 0:
            raise ValueError(f"the real multiplier must be finite and positive, got {r!r}")
        q, sh = math.frexp(r)
        q_fixed = math.floor(q * (1 << 31) + 0.5)
        if q_fixed == 1 << 31:
            q_fixed //= 2
            sh += 1
        if not OUT_SHIFT_MIN <= sh <= OUT_SHIFT_MAX:
            raise ValueError(f"real multiplier {r:.6g} needs shift {sh}, outside "
                             f"[{OUT_SHIFT_MIN}, {OUT_SHIFT_MAX}]")
        assert OUT_MULT_MIN <= q_fixed <= OUT_MULT_MAX
        m0[i], shift[i] = q_fixed, sh
    return m0, shift


def requant_params(layer: Layer, x_scale: float, y_scale: float, *, bias=None, zp: int = 0,
                   frac_bits: int = 16) -> Layer:
    """The layer with its output stage set for int8 outputs of scale ``y_scale``.

    ``y_q = round(acc · x_scale · unit[n] / y_scale) + zp`` becomes ``out_mult[n]``,
    ``out_shift[n]`` (`quantize_multiplier`); a float ``bias [N]`` becomes accumulator units,
    ``round(bias / (x_scale · unit[n]))`` (half to even).

    Parameters
    ----------
    layer : Layer
    x_scale : float
        Per-tensor activation scale (``x ≈ x_q · x_scale``; 1 for MXINT8 activations, whose
        exponents are inside the accumulator).
    y_scale : float
        Scale of the int8 output (``y ≈ (y_q − zp) · y_scale``).
    bias : array_like of float, shape (N,), optional
    zp : int
        Output zero point.
    frac_bits : int
        Fractional bits of a ``pow2`` accumulator (the configuration's ``frac_bits``).
    """
    for name, v in (("x_scale", x_scale), ("y_scale", y_scale)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and positive, got {v!r}")
    if not INT32_MIN <= int(zp) <= INT32_MAX:
        raise ValueError(f"the output zero point {zp} is not an int32")
    unit = output_scales(layer, frac_bits) * float(x_scale)
    m0, shift = quantize_multiplier(unit / float(y_scale))
    changes = {"out_mult": m0.astype(np.int32), "out_shift": shift.astype(np.int32),
               "out_zp": np.full(layer.N, int(zp), np.int32)}
    if bias is not None:
        b = np.asarray(bias, np.float64).reshape(-1)
        if b.shape != (layer.N,):
            raise ValueError(f"bias has {b.size} values, the layer has N={layer.N} columns")
        if not np.isfinite(b).all():
            raise ValueError("bias contains NaN or infinity")
        q = np.rint(b / unit)
        if np.abs(q).max(initial=0) > INT32_MAX:
            raise ValueError("bias in accumulator units exceeds int32 (the hardware's bias)")
        changes["bias"] = q.astype(np.int64)
    return layer.copy(**changes)


def dequantize_output(y, layer: Layer, *, x_scale=None, y_scale: float | None = None,
                      frac_bits: int = 16) -> np.ndarray:
    """Results back to floats, ``[M, N]`` float64.

    A raw accumulator (int64) is ``y · x_scale[m] · unit[n]`` (`output_scales`; ``x_scale``
    scalar, per token ``[M]``, or None for 1). A requantized int8 output is
    ``(y − out_zp) · y_scale``.
    """
    y = np.asarray(y)
    if y.ndim != 2 or y.dtype.kind not in "iu":
        raise ValueError(f"results must be a 2-D integer array, got {y.dtype} {y.shape}")
    if y.shape[1] != layer.N:
        raise ValueError(f"results have {y.shape[1]} columns, the layer has N={layer.N}")
    if y.dtype == np.int8:
        if y_scale is None:
            raise ValueError("int8 (requantized) results need the output scale (--y-scale)")
        zp = 0 if layer.out_zp is None else np.asarray(layer.out_zp, np.int64)
        return (y.astype(np.int64) - zp) * float(y_scale)
    xs = np.ones(y.shape[0]) if x_scale is None else np.asarray(x_scale, np.float64)
    xs = np.broadcast_to(xs.reshape(-1), (y.shape[0],)) if xs.size in (1, y.shape[0]) else None
    if xs is None:
        raise ValueError(f"x_scale must be a scalar or one value per row ({y.shape[0]})")
    return y.astype(np.float64) * xs[:, None] * output_scales(layer, frac_bits)[None, :]
