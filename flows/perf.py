"""Analytic performance model of the PE array: cycles of one GEMM, and what limits them.

Plain numbers in, plain numbers out: the model takes the array size, the beat (``step``) and
the latencies of a generated core (all in its JSON manifest, see `ArrayTiming.from_manifest`)
and never imports the hardware packages.

The model reproduces the core's schedule (``hw/core.py``) exactly when the streams never stall:

* A GEMM is cut into ``T = ceil(M/rows) · ceil(N/cols)`` tiles; each tile streams
  ``B = ceil(K/step)`` beats (``step`` = dense-equivalent k per beat in the mode, so per-channel
  K is padded up to whole beats).
* Drain interlock: the next tile's *last* beat waits until the previous tile has drained, i.e.
  ``drain_delay + rows + 1`` cycles after the previous last beat. Tile period
  ``P = max(S, drain_delay + rows + 1)``, ``S`` the cycles to stream one tile's beats.
* Fill and drain: after the last tile's last beat, ``drain_delay`` cycles until the drain
  starts (row 0 holds the result, row ``r`` ``r`` cycles later), ``rows`` rows through the
  output stage (one per cycle) and its ``out_latency``.

``cycles = S + (T − 1)·P + drain_delay + rows + out_latency``, counted like the testbench does
(from the cycle the first beat is taken to the cycle the last result row is taken, both
included).

Block sparsity (SPEC §3): a tile streams only the beats whose k-range is kept for some column
of its column tile (`block_tile_beats`), so tiles differ in length. With ``S_i`` the cycles of
tile ``i``, its last beat is taken at ``L_i = L_{i−1} + max(S_i, drain_delay + rows + 1)``
(``L_1 = S_1 − 1``) and ``cycles = L_T + 1 + drain_delay + rows + out_latency``; the uniform
formula above is the case of equal tiles.

Bandwidth: the core takes one whole weight packet per column and one activation window per
row every beat. Behind an interface of ``weight_bw`` bits per cycle (the compressed stream:
codes of the lanes the mode uses, their N:M indices and the group's scale and zero point,
amortised over the group's beats) a beat costs ``weight_bits / weight_bw`` cycles, so
``S = ceil(B · max(1, weight_bits/weight_bw, act_bits/act_bw))``. With no interface given the
core's full-width ports are assumed (no bandwidth limit), as in the RTL simulations. Output
backpressure is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from golden.blocks import block_dense_keep
from golden.formats import FORMATS, format_info
from golden.sparsity import parse_sparsity
from golden.tables import E8M0_BITS, MX_BLOCK

__all__ = ["ArrayTiming", "PerfEstimate", "estimate", "estimate_mode", "weight_bits_per_beat",
           "act_bits_per_beat", "block_tile_beats", "MX_BLOCK", "POW2_SCALE_BITS",
           "ZERO_POINT_BITS"]

POW2_SCALE_BITS = E8M0_BITS
ZERO_POINT_BITS = max(f.zero_point_bits for f in FORMATS.values())


def _pos_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def _nonneg(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, not {value!r}")
    return value


@dataclass(frozen=True)
class ArrayTiming:
    """The numbers of a generated core the model needs.

    Parameters
    ----------
    rows, cols : int
        Array size.
    slots : int
        8-bit weight slots per PE per beat.
    window : int
        Activation window V (int8 activations per PE per beat).
    drain_delay : int
        Cycles from taking a tile's last beat until the drain starts (row 0 holds its result).
    out_latency : int
        Cycles a row spends in the output stage (raw or requant; the same in both modes).
    idx_bits : int
        Width of one N:M index in the weight packet (0 when only dense is enabled).
    max_lanes : int
        Index fields per packet.
    scale_field_bits : int
        Width of the scale field in the weight packet.
    zero_bits : int
        Width of the zero-point field in the weight packet (0 without uint4).
    """

    rows: int
    cols: int
    slots: int
    window: int
    drain_delay: int
    out_latency: int
    idx_bits: int = 0
    max_lanes: int = 0
    scale_field_bits: int = 0
    zero_bits: int = 0

    def __post_init__(self):
        for name in ("rows", "cols", "slots", "window"):
            _pos_int(name, getattr(self, name))
        for name in ("drain_delay", "out_latency", "idx_bits", "max_lanes", "scale_field_bits",
                     "zero_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {v!r}")

    @classmethod
    def from_manifest(cls, manifest: dict) -> ArrayTiming:
        """Read a core's JSON manifest (``gen.emit``), as a dict."""
        try:
            cfg, lat, der = manifest["config"], manifest["latency"], manifest["derived"]
            packet = manifest["layouts"]["packet"]
            drain = int(lat["drain_delay"])
            # first_result = drain_delay + 1 (drain row register) + output stage latency
            out_lat = int(lat["first_result"]) - drain - 1
            return cls(rows=int(cfg["rows"]), cols=int(cfg["cols"]), slots=int(cfg["slots"]),
                       window=int(cfg["window"]), drain_delay=drain, out_latency=out_lat,
                       idx_bits=int(der["idx_bits"]), max_lanes=int(der["max_lanes"]),
                       scale_field_bits=int(der["scale_field_bits"]),
                       zero_bits=int(packet["zero"]["width"]) if "zero" in packet else 0)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a core manifest: missing or bad key {exc}") from None

    # -- beats ------------------------------------------------------------------------------

    def lanes_per_beat(self, fmt: str) -> int:
        """Lanes of ``fmt`` in one weight packet."""
        return self.slots * format_info(fmt).lanes_per_slot

    def step_k(self, fmt: str, sparsity: str = "dense") -> int:
        """Dense-equivalent k per beat: ``min(window, lanes · M_sp / N_sp)``."""
        n, m = parse_sparsity(sparsity)
        return min(self.window, self.lanes_per_beat(fmt) // n * m)

    def lanes_used(self, fmt: str, sparsity: str = "dense") -> int:
        """Lanes that carry a weight in one beat of this mode."""
        n, m = parse_sparsity(sparsity)
        return self.step_k(fmt, sparsity) // m * n

    def step_limiter(self, fmt: str, sparsity: str = "dense") -> str:
        """``'window'`` when the activation window caps the beat, else ``'lanes'``."""
        n, m = parse_sparsity(sparsity)
        return "window" if self.window < self.lanes_per_beat(fmt) // n * m else "lanes"

    @property
    def interlock_period(self) -> int:
        """Shortest tile period the drain interlock allows: ``drain_delay + rows + 1``."""
        return self.drain_delay + self.rows + 1

    @property
    def port_weight_bits(self) -> int:
        """Bits of one column's weight packet on the core's port (every mode, every beat)."""
        return (self.slots * 8 + self.max_lanes * self.idx_bits + self.scale_field_bits
                + self.zero_bits)

    @property
    def port_act_bits(self) -> int:
        """Bits of one row's activation window on the core's port (without MX exponents)."""
        return self.window * 8


def weight_bits_per_beat(timing: ArrayTiming, fmt: str, sparsity: str = "dense",
                         scale_kind: str = "none", group: int | None = None,
                         scale_bits: int = 16) -> dict[str, float]:
    """Compressed weight bits one column needs per beat, by kind.

    ``codes``: the lanes the mode uses × code width; ``idx``: ``log2(M_sp)`` bits per used lane
    (sparse modes); ``scales``: the group's scale (``scale_bits`` for ``int``, 8 for ``pow2``)
    plus a 4-bit zero point for uint4, divided by the group's beats; ``total`` their sum.
    ``group`` None means one group per column (per-channel; amortised to ~0 over K).
    """
    info = format_info(fmt)
    n, m = parse_sparsity(sparsity)
    step = timing.step_k(fmt, sparsity)
    lanes = timing.lanes_used(fmt, sparsity)
    codes = lanes * info.bits
    idx = lanes * (m - 1).bit_length() if m > 1 else 0
    per_group = {"none": 0, "int": scale_bits, "pow2": POW2_SCALE_BITS}[scale_kind]
    per_group += info.zero_point_bits
    if scale_kind == "pow2":
        group = MX_BLOCK
    scales = per_group * step / group if group else 0.0
    return {"codes": float(codes), "idx": float(idx), "scales": float(scales),
            "total": float(codes + idx + scales)}


def act_bits_per_beat(timing: ArrayTiming, fmt: str, sparsity: str = "dense",
                      mx_act: bool = False) -> float:
    """Activation bits one row needs per beat: ``step`` int8 (+ MXINT8 exponents, amortised)."""
    step = timing.step_k(fmt, sparsity)
    return step * 8 + (8 * step / MX_BLOCK if mx_act else 0.0)


@dataclass(frozen=True)
class PerfEstimate:
    """Predicted schedule of one GEMM (cycles counted like ``verif.runner``'s report)."""

    M: int
    N: int
    K: int
    step: int
    tiles: int
    beats_per_tile: int
    beats: int
    stream_cycles: int        # S: cycles to stream one tile's beats (the longest tile's)
    tile_period: int          # P = max(S, interlock period) (the longest tile's)
    cycles: int
    ideal_cycles: float       # M·N·K / (rows·cols·step)
    fill_drain_cycles: int    # drain_delay + rows + out_latency after the last beat
    interlock_cycles: int     # (T−1)·(P − S)
    bandwidth_cycles: int     # T·(S − B) (stall cycles of the interfaces; 0 without them)
    padding_cycles: float     # T·B − ideal: beats spent on padded rows, columns and K
    weight_bits_per_cycle: float   # needed at full speed, whole array
    act_bits_per_cycle: float
    limiter: str

    @property
    def utilization(self) -> float:
        """Ideal over modelled cycles."""
        return self.ideal_cycles / self.cycles

    @property
    def macs_per_cycle(self) -> float:
        """Dense-equivalent MACs per cycle of the whole GEMM."""
        return self.M * self.N * self.K / self.cycles

    def to_dict(self) -> dict:
        """The estimate as a JSON-ready dict, derived figures included."""
        d = asdict(self)
        d["utilization"] = self.utilization
        d["macs_per_cycle"] = self.macs_per_cycle
        return d


def block_tile_beats(M: int, K: int, *, rows: int, cols: int, step: int, block_shape,
                     block_mask) -> list[int]:
    """Beats of every tile of a block-sparse GEMM, in stream order (column tiles outer).

    A beat is streamed when some k it covers is kept for some column of its column tile
    (`gen.pack.Packer`); a tile streams at least one beat. (The packer also streams the beats
    of ``pow2`` groups whose canonical scale would raise an error flag with the GEMM's
    activation exponents; the model assumes there are none.)
    """
    keep = block_dense_keep(block_shape, block_mask)
    N = keep.shape[1]
    n_tiles, m_tiles = math.ceil(N / cols), math.ceil(M / rows)
    k_beats = math.ceil(K / step)
    live = np.zeros((k_beats * step, n_tiles * cols), bool)
    live[:K, :N] = keep
    beats = live.reshape(k_beats, step, n_tiles, cols).any(axis=(1, 3)).sum(axis=0)
    return [max(int(b), 1) for b in beats for _ in range(m_tiles)]


def estimate(M: int, N: int, K: int, *, rows: int, cols: int, step: int, drain_delay: int,
             out_latency: int, weight_bits: float = 0.0, act_bits: float = 0.0,
             weight_bw: float | None = None, act_bw: float | None = None,
             tile_beats: list[int] | None = None) -> PerfEstimate:
    """Cycles of an ``M × K`` by ``K × N`` GEMM on a ``rows × cols`` array.

    Parameters
    ----------
    M, N, K : int
        GEMM shape (tokens, output columns, reduction).
    rows, cols, step : int
        Array size and dense-equivalent k per beat in the GEMM's mode.
    drain_delay, out_latency : int
        Latencies of the core (manifest ``latency.drain_delay``; ``first_result −
        drain_delay − 1``).
    weight_bits, act_bits : float
        Bits per beat of the whole array: ``cols ×`` one column's weight bits and ``rows ×``
        one row's activation bits (`weight_bits_per_beat`, `act_bits_per_beat`).
    weight_bw, act_bw : float or None
        Interface bandwidths in bits per cycle; None for the core's full-width ports.
    tile_beats : list of int, optional
        Beats of every tile in stream order when they differ (block sparsity,
        `block_tile_beats`); default ``ceil(K / step)`` each.

    Returns
    -------
    PerfEstimate
    """
    for name, v in (("M", M), ("N", N), ("K", K), ("rows", rows), ("cols", cols),
                    ("step", step)):
        _pos_int(name, v)
    for name, v in (("drain_delay", drain_delay), ("out_latency", out_latency),
                    ("weight_bits", weight_bits), ("act_bits", act_bits)):
        _nonneg(name, v)
    for name, v in (("weight_bw", weight_bw), ("act_bw", act_bw)):
        if v is not None and (_nonneg(name, v) == 0):
            raise ValueError(f"{name} must be positive (bits per cycle), not {v!r}")
    tiles = math.ceil(M / rows) * math.ceil(N / cols)
    B = math.ceil(K / step)
    if tile_beats is None:
        tile_beats = [B] * tiles
    if len(tile_beats) != tiles or any(not 1 <= int(b) <= B for b in tile_beats):
        raise ValueError(f"tile_beats must list {tiles} tiles of 1..{B} beats")
    w_rate = weight_bits / weight_bw if weight_bw else 0.0
    a_rate = act_bits / act_bw if act_bw else 0.0
    rate = max(1.0, w_rate, a_rate)
    S_t = [max(int(b), math.ceil(int(b) * rate - 1e-9)) for b in tile_beats]
    interlock = drain_delay + rows + 1
    tail = drain_delay + rows + out_latency
    last = S_t[0] - 1 + sum(max(s, interlock) for s in S_t[1:])
    cycles = last + 1 + tail
    S = max(S_t)
    P = max(S, interlock)
    ideal = M * N * K / (rows * cols * step)
    beats = sum(int(b) for b in tile_beats)
    interlocked = sum(max(interlock - s, 0) for s in S_t[1:])
    if S > B or sum(S_t) > beats:
        limiter = "weight bandwidth" if w_rate >= a_rate else "activation bandwidth"
    elif interlocked and tiles > 1:
        limiter = "drain interlock"
    else:
        limiter = "compute"
    return PerfEstimate(
        M=M, N=N, K=K, step=step, tiles=tiles, beats_per_tile=B, beats=beats,
        stream_cycles=S, tile_period=P, cycles=cycles, ideal_cycles=ideal,
        fill_drain_cycles=tail, interlock_cycles=interlocked,
        bandwidth_cycles=sum(S_t) - beats, padding_cycles=tiles * B - ideal,
        weight_bits_per_cycle=float(weight_bits), act_bits_per_cycle=float(act_bits),
        limiter=limiter)


def estimate_mode(timing: ArrayTiming, M: int, N: int, K: int, fmt: str,
                  sparsity: str = "dense", scale_kind: str = "none", *,
                  group: int | None = None, mx_act: bool = False, scale_bits: int = 16,
                  weight_bw: float | None = None, act_bw: float | None = None,
                  block_shape=None, block_mask=None) -> PerfEstimate:
    """`estimate` for a GEMM in one runtime mode of the core described by ``timing``.

    ``block_shape`` and ``block_mask`` (a block-sparse layer's keys) shorten the tiles
    (`block_tile_beats`).
    """
    step = timing.step_k(fmt, sparsity)
    tile_beats = None
    if block_mask is not None:
        tile_beats = block_tile_beats(M, K, rows=timing.rows, cols=timing.cols, step=step,
                                      block_shape=block_shape, block_mask=block_mask)
    wb = weight_bits_per_beat(timing, fmt, sparsity, scale_kind, group or K, scale_bits)
    ab = act_bits_per_beat(timing, fmt, sparsity, mx_act)
    return estimate(M, N, K, rows=timing.rows, cols=timing.cols, step=step,
                    drain_delay=timing.drain_delay, out_latency=timing.out_latency,
                    weight_bits=timing.cols * wb["total"], act_bits=timing.rows * ab,
                    weight_bw=weight_bw, act_bw=act_bw, tile_beats=tile_beats)
