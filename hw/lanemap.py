"""Where each lane of each mode sits: the host–hardware co-designed lane order.

The host packs every beat, so it is free to put any element of a beat on any multiplier and
any activation at any window position, as long as hardware and packer agree. This module is
that agreement, computed once per configuration (pure Python, no Amaranth): the packer
(`gen.pack`) places codes, indices and activations by it, the activation select
(`hw.pe.ActivationSelect`) wires only the window positions it makes reachable.

The order is chosen so that every multiplier reaches as few window positions as possible over
all enabled modes (the select mux is the routing tax of N:M sparsity):

* every multiplier ``(slot s, quarter q)`` has a *home* position ``s·stride + rank(q)``
  (``stride = window / slots``; quarters ranked 0, 2, 1, 3: the int8 multiplier first, then
  the one the 4-bit formats add, then the 2-bit ones). Dense modes put each lane's activation
  at its multiplier's home, so a dense-only build has no select mux at all;
* an N:M mode puts each of its blocks of ``M`` activations at an ``M``-aligned window block
  and serves it with ``N`` multipliers whose homes lie in that block where it can (preferring
  the multipliers of lower rank, which other formats already route there), so a multiplier
  reaches its home block and, for some int8 patterns, one more;
* within a block the stored slots' indices are strictly increasing (SPEC §3), so the ``j``-th
  slot of a block has ``j ≤ idx ≤ M − N + j``: its multiplier is wired for those ``M − N + 1``
  positions of the block only (3 of 4 for 2:4, 5 of 8 for 4:8, 7 of 8 for 2:8). An index
  outside them cannot come from a valid layer; the hardware flags it as an invalid code
  (`hw.pe.ActivationSelect`).

`LaneMap.reach` gives the positions each multiplier can select; docs/ARCHITECTURE.md has the
resulting counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from golden.sparsity import parse_sparsity
from hw.config import ArrayConfig

__all__ = ["QUARTER_RANK", "ModeLanes", "LaneMap", "lane_map"]

#: Quarters of a slot in the order their multipliers are given home positions: quarter 0
#: serves every format, quarter 2 the 4- and 2-bit ones, quarters 1 and 3 the 2-bit ones.
QUARTER_RANK = (0, 2, 1, 3)


@dataclass(frozen=True)
class ModeLanes:
    """The lane order of one (format, sparsity) mode.

    Attributes
    ----------
    lane_mult : tuple of (int, int)
        Multiplier ``(slot, quarter)`` of logical lane ``j`` (``j = block·N + slot_in_block``:
        the order of the layer file's stored slots within a beat).
    k_pos : tuple of int
        Window position of beat-local reduction index ``k`` (``0 … step − 1``).
    routes : dict
        ``{(slot, quarter): (base, M, lo, hi)}``: the multiplier selects ``window[base + idx]``
        (``idx`` = its N:M index, which lies in ``lo … hi`` for the ``j``-th slot of a block:
        ``lo = j``, ``hi = M − N + j``; for dense ``M`` = 1, ``lo = hi = 0`` and ``base`` is the
        position).
    """

    lane_mult: tuple[tuple[int, int], ...]
    k_pos: tuple[int, ...]
    routes: dict


def _format_multipliers(cfg: ArrayConfig, fmt: str):
    """Multipliers a format uses: quarters that are multiples of 4 / lanes_per_slot."""
    stride = 4 // cfg.lanes_per_slot(fmt)
    return [(s, q) for (s, q) in cfg.lanes if q % stride == 0]


class LaneMap:
    """The lane order of every enabled mode of a configuration (see the module docstring)."""

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        stride = cfg.window // cfg.slots
        self.home = {}
        for s, q in cfg.lanes:
            rank = QUARTER_RANK.index(q)
            if stride >= 1 and rank < stride:
                self.home[(s, q)] = s * stride + rank
            elif stride == 0 and q == 0 and s < cfg.window:
                self.home[(s, q)] = s
        self.modes: dict[tuple[str, str], ModeLanes] = {}
        for fmt in cfg.formats:
            for pattern in cfg.sparsity:
                self.modes[(fmt, pattern)] = self._assign(fmt, pattern)

    def _key(self, mult):
        s, q = mult
        return (QUARTER_RANK.index(q), self.home.get(mult, 1 << 30), s)

    def _assign(self, fmt: str, pattern: str) -> ModeLanes:
        cfg = self.cfg
        n, m = parse_sparsity(pattern)
        step = cfg.step_k(fmt, pattern)
        mults = sorted(_format_multipliers(cfg, fmt), key=self._key)
        if m == 1:
            homed = [x for x in mults if x in self.home][:step]
            homed.sort(key=lambda x: self.home[x])
            if len(homed) < step:  # pragma: no cover - the homes cover every dense step
                raise AssertionError(f"{fmt}: {len(homed)} homed multipliers for step {step}")
            routes = {x: (self.home[x], 1, 0, 0) for x in homed}
            return ModeLanes(tuple(homed), tuple(self.home[x] for x in homed), routes)
        free = list(mults)
        free_blocks = list(range(cfg.window // m))
        lane_mult, k_pos, routes = [], [0] * step, {}
        for b in range(step // m):
            def at_home(x, w):
                return x in self.home and self.home[x] // m == w
            # The window block with the most free multipliers at home, then the lowest.
            w = max(free_blocks, key=lambda w: (sum(at_home(x, w) for x in free), -w))
            chosen = [x for x in free if at_home(x, w)][:n]
            chosen += [x for x in free if x not in chosen][:n - len(chosen)]
            for j, x in enumerate(chosen):
                free.remove(x)
                routes[x] = (w * m, m, j, m - n + j)
            free_blocks.remove(w)
            lane_mult += chosen
            for t in range(m):
                k_pos[b * m + t] = w * m + t
        return ModeLanes(tuple(lane_mult), tuple(k_pos), routes)

    def reach(self, mult) -> list[int]:
        """Window positions multiplier ``(slot, quarter)`` can select over all modes."""
        out = set()
        for lanes in self.modes.values():
            if mult in lanes.routes:
                base, _, lo, hi = lanes.routes[mult]
                out.update(range(base + lo, base + hi + 1))
        return sorted(out)

    def idx_index(self, mult) -> int:
        """Position of a multiplier's N:M index in the packet's ``idx`` array."""
        s, q = mult
        max_lps = max(self.cfg.lanes_per_slot(f) for f in self.cfg.formats)
        return s * max_lps + q // (4 // max_lps)

    def to_json(self) -> dict:
        """The map as the manifest records it.

        Per mode ``"<format>/<sparsity>"``: ``lane_mult`` (slot, quarter) of every stored slot
        of a beat, ``lane_idx`` the position of its N:M index in the packet's ``idx`` array,
        ``k_pos`` the window position of every beat-local k.
        """
        return {f"{fmt}/{pattern}": {"lane_mult": [list(x) for x in lanes.lane_mult],
                                     "lane_idx": [self.idx_index(x) for x in lanes.lane_mult],
                                     "k_pos": list(lanes.k_pos)}
                for (fmt, pattern), lanes in self.modes.items()}


@cache
def lane_map(cfg: ArrayConfig) -> LaneMap:
    """The (cached) `LaneMap` of a configuration."""
    return LaneMap(cfg)
