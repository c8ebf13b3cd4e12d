"""Activation-aware compression helpers: Wanda saliency and SmoothQuant smoothing.

Both take float calibration activations ``x`` (tokens × K, leading axes are flattened) and the
float weight ``w [K, N]`` in the compressor's layout (reduction along rows):

* `wanda_saliency` — Wanda (Sun et al., 2023): the pruning score of a weight is its magnitude
  times the L2 norm of its input channel over the calibration tokens,
  ``S[k, n] = |w[k, n]| · ‖x[:, k]‖₂``. Pass it as ``compress(..., saliency=S)``: N:M blocks run
  along K, so the activation norm changes which weights of a block survive.
* `smooth_factors` / `smooth` — SmoothQuant (Xiao et al., 2023): per input channel
  ``s_k = max|x_k|**α / max|w_k|**(1−α)``; the weights become ``w · s`` (row k times ``s_k``)
  and the activations ``x / s``, so ``(x/s) @ (s·w) = x @ w`` in exact arithmetic, while the
  activation outlier channels are flattened before per-token int8 quantization.

Wanda's score is invariant under smoothing (``|w_k s_k| · ‖x_k / s_k‖ = |w_k| · ‖x_k‖``), so the
two compose in either order. Nothing here imports the hardware packages.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "activation_channel_absmax",
    "activation_channel_norms",
    "smooth",
    "smooth_factors",
    "wanda_saliency",
]


def _activations(x, K: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"activations must be [tokens, K] (or [..., K]), got shape {x.shape}")
    x = x.reshape(-1, x.shape[-1])
    if x.shape[0] == 0:
        raise ValueError("activations hold no tokens")
    if K is not None and x.shape[1] != K:
        raise ValueError(f"activations have K={x.shape[1]} channels, the weights have K={K}")
    if not np.isfinite(x).all():
        raise ValueError("activations contain NaN or infinity")
    return x


def _weights(w) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D [K, N], got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or infinity")
    return w


def activation_channel_norms(x) -> np.ndarray:
    """L2 norm of every input channel over all tokens: ``‖x[:, k]‖₂``, float64 ``[K]``."""
    return np.sqrt(np.sum(np.square(_activations(x)), axis=0))


def activation_channel_absmax(x) -> np.ndarray:
    """Largest ``|x[:, k]|`` of every input channel over all tokens, float64 ``[K]``."""
    return np.abs(_activations(x)).max(axis=0)


def wanda_saliency(w, x) -> np.ndarray:
    """Wanda pruning score ``|w[k, n]| · ‖x[:, k]‖₂``.

    Parameters
    ----------
    w : array_like of float, shape (K, N)
        Dense weights, reduction along K (the compressor's layout; a PyTorch ``[out, in]``
        weight is ``w.T``).
    x : array_like of float, shape (tokens, K) or (..., K)
        Calibration activations feeding this layer.

    Returns
    -------
    ndarray of float64, shape (K, N)
        Pass as ``golden.compress.compress(w, ..., saliency=S)``. Ties (for example a channel
        that is zero on every calibration token) keep the lower index, as for ``|w|``.
    """
    w = _weights(w)
    norms = activation_channel_norms(_activations(x, w.shape[0]))
    return np.abs(w) * norms[:, None]


def smooth_factors(x, w, alpha: float = 0.5) -> np.ndarray:
    """SmoothQuant per-input-channel factors ``s_k = max|x_k|**α / max|w_k|**(1−α)``.

    Parameters
    ----------
    x : array_like of float, shape (tokens, K) or (..., K)
        Calibration activations.
    w : array_like of float, shape (K, N)
        Weights; ``max|w_k|`` is taken over row k (all outputs of input channel k).
    alpha : float
        Migration strength in [0, 1]; 0.5 is SmoothQuant's default.

    Returns
    -------
    ndarray of float64, shape (K,)
        Positive factors. A channel whose activations or weights are all zero gets 1.0 (there
        is nothing to migrate, and a factor of 0 or infinity would break ``x / s``).
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    w = _weights(w)
    a_max = activation_channel_absmax(_activations(x, w.shape[0]))
    w_max = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
    ok = (a_max > 0) & (w_max > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.power(a_max, alpha) / np.power(w_max, 1.0 - alpha)
    ok &= np.isfinite(s) & (s > 0)
    return np.where(ok, s, 1.0)


def smooth(x, w, s=None, *, alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold SmoothQuant factors into a layer: ``x / s`` and ``w · s`` (row k times ``s_k``).

    Parameters
    ----------
    x : array_like of float, shape (..., K)
        Activations to transform (calibration or evaluation tokens).
    w : array_like of float, shape (K, N)
        Weights.
    s : array_like of float, shape (K,), optional
        Factors, for example computed on calibration data with `smooth_factors` and reused on
        other tokens. Default: `smooth_factors` of this ``x`` and ``w``.
    alpha : float
        Migration strength used when ``s`` is computed here.

    Returns
    -------
    x_smooth : ndarray of float64, same shape as ``x``
    w_smooth : ndarray of float64, shape (K, N)
    s : ndarray of float64, shape (K,)
        ``x_smooth @ w_smooth`` equals ``x @ w`` up to float rounding.
    """
    w = _weights(w)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"activations have shape {x.shape}, the weights need K={w.shape[0]}")
    if s is None:
        s = smooth_factors(x, w, alpha)
    s = np.asarray(s, dtype=np.float64)
    if s.shape != (w.shape[0],):
        raise ValueError(f"smoothing factors must have shape ({w.shape[0]},), got {s.shape}")
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("smoothing factors must be finite and positive")
    return x / s, w * s[:, None], s
