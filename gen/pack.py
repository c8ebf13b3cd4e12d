"""Host-side packing: a layer file and activations → the beats the core consumes, and back.

Every bit offset comes from the hardware's own `lib.data` layouts (`hw.layouts.Layouts`):
the packer walks the layouts once, then places whole columns of fields with numpy, so a
testbench assigns one word per stream per cycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.hdl import Const
from amaranth.lib import data

from golden.blocks import block_dense_keep
from golden.formats import activation_format, decode, pow2_exponent
from golden.sparsity import padding_idx, parse_sparsity
from golden.tables import E8M0_BIAS, E8M0_NAN, OUT_MULT_MIN
from hw.config import (
    FORMAT_BITS,
    FORMAT_CODES,
    FP8_FORMATS,
    MX_BLOCK,
    SCALE_CODES,
    SPARSITY_CODES,
    ArrayConfig,
    ConfigError,
    Mode,
)
from hw.lanemap import lane_map
from hw.layouts import Layouts

__all__ = ["PackError", "GemmProgram", "BeatFiles", "Packer", "HEADER_WORDS",
           "fp8_activation_format"]

#: Words of ``header.hex`` per GEMM (`Packer.write_gemms`).
HEADER_WORDS = 10


class PackError(ValueError):
    """A GEMM this configuration cannot run as given (message says why)."""


def _offset(layout, *path) -> tuple[int, object]:
    """Offset and shape of the field at ``path`` inside ``layout``."""
    offset, shape = 0, layout
    for key in path:
        fld = data.Layout.cast(shape)[key]
        offset += fld.offset
        shape = fld.shape
    return offset, shape


def _width(shape) -> int:
    if isinstance(shape, data.Layout):
        return shape.size
    from amaranth.hdl import Shape
    return Shape.cast(shape).width


def _place(bits: np.ndarray, offset: int, width: int, stride: int, values: np.ndarray) -> None:
    """Write ``values[n, count]`` (two's complement, ``width`` bits) at ``offset + i·stride``."""
    values = np.asarray(values, dtype="<i8")
    values = np.ascontiguousarray(values[:, None] if values.ndim == 1 else values)
    n, count = values.shape
    # Two's complement, least significant bit first: the low bytes of each little-endian int64.
    low_bytes = values.view(np.uint8).reshape(n, count, 8)[:, :, :-(-width // 8)]
    expanded = np.unpackbits(low_bytes, axis=2, bitorder="little")[:, :, :width].reshape(n, -1)
    if count == 1 or stride == width:  # the fields are one run of bits
        bits[:, offset:offset + count * width] = expanded
    else:
        cols = (offset + np.arange(count) * stride)[:, None] + np.arange(width)[None, :]
        bits[:, cols.ravel()] = expanded


def _to_ints(bits: np.ndarray) -> list[int]:
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _hex_text(packed: np.ndarray, digits: int) -> bytes:
    """Rows of bytes (most significant first) → ``$readmemh`` lines of their last ``digits``."""
    n = packed.shape[0]
    text = np.frombuffer(np.ascontiguousarray(packed).tobytes().hex().encode(),
                         np.uint8).reshape(n, -1)
    lines = np.empty((n, digits + 1), np.uint8)
    lines[:, :digits] = text[:, text.shape[1] - digits:]
    lines[:, digits] = ord("\n")
    return lines.tobytes()


def _hex_lines(bits: np.ndarray) -> bytes:
    """Rows of bits (LSB first) → ``$readmemh`` lines, exactly ``ceil(width / 4)`` digits."""
    packed = np.packbits(bits, axis=1, bitorder="little")[:, ::-1]  # most significant first
    return _hex_text(packed, -(-bits.shape[1] // 4))


def _hex32_lines(values: np.ndarray) -> bytes:
    """Unsigned 32-bit words → ``$readmemh`` lines of 8 digits."""
    words = np.asarray(values, dtype=">u4")
    return _hex_text(words.view(np.uint8).reshape(len(words), 4), 8)


def _requant_columns(layer, N: int, Np: int):
    """Requant parameters per (padded) column: bias, M0, shift, zero point."""
    for key in ("out_mult", "out_shift"):
        if getattr(layer, key, None) is None:
            raise PackError(f"requant needs the layer key {key!r}")
    bias = np.zeros(Np, np.int64)
    if layer.bias is not None:
        bias[:N] = layer.bias
    mult = np.full(Np, OUT_MULT_MIN, np.int64)
    mult[:N] = layer.out_mult
    shift = np.zeros(Np, np.int64)
    shift[:N] = layer.out_shift
    zp = np.zeros(Np, np.int64)
    if layer.out_zp is not None:
        zp[:N] = np.broadcast_to(np.asarray(layer.out_zp, np.int64), (N,))
    return bias, mult, shift, zp


@dataclass
class GemmProgram:
    """Everything a driver streams into the core for one GEMM, and how to read the results."""

    mode: Mode
    mode_word: int
    step: int
    k_beats: int
    group_beats: int
    M: int
    N: int
    tiles: list[tuple[int, int]]          # (m0, n0) of each tile, in stream order
    act_beats: list[int] = field(repr=False)
    wgt_beats: list[int] = field(repr=False)
    prm_beats: list[int] = field(repr=False)
    tile_beats: list[int] = field(default_factory=list, repr=False)  # beats of each tile
    sched: bool = False                   # block schedule: boundaries in the weight beats

    @property
    def beats(self) -> int:
        """Beats per stream of the whole GEMM."""
        return len(self.act_beats)


@dataclass
class BeatFiles:
    """The ``$readmemh`` files of one GEMM and how to read back its results.

    Written by `Packer.write_beat_files`; `Packer.assemble` takes it like a `GemmProgram`.
    """

    directory: Path
    mode: Mode
    mode_word: int
    step: int
    k_beats: int
    group_beats: int
    M: int
    N: int
    m_tiles: int
    n_tiles: int
    rows: int
    offsets: tuple[int, int, int]   # first word in act.hex, wgt.hex (and sched.hex), prm.hex
    tiles: list[tuple[int, int]] = field(repr=False)
    tile_beats: list[int] = field(default_factory=list, repr=False)  # beats of each tile
    wgt_words: int = 0              # words in wgt.hex (and sched.hex)
    sched: bool = False             # block schedule (mode.sched)

    @property
    def beats(self) -> int:
        """Beats streamed (every tile's, in stream order)."""
        return sum(self.tile_beats) if self.tile_beats else len(self.tiles) * self.k_beats

    @property
    def result_rows(self) -> int:
        """Result rows the GEMM returns (one per row of every tile)."""
        return len(self.tiles) * self.rows


@dataclass
class _TilePlan:
    """A checked GEMM laid out for packing, tile by tile."""

    mode: Mode
    mode_word: int
    step: int
    k_beats: int
    group_beats: int
    M: int
    N: int
    m_tiles: int
    n_tiles: int
    requant: bool
    act_bits: Callable[[int], np.ndarray]
    wgt_bits: Callable[[int], np.ndarray]
    prm_word: Callable[[int], int]
    kept: list[np.ndarray]          # per column tile: the beats streamed (all without blocks)
    sched: bool                     # block schedule (mode.sched)

    def tile_beats(self) -> list[int]:
        """Beats of every tile in stream order (column tiles outer)."""
        return [len(self.kept[nt]) for nt in range(self.n_tiles) for _ in range(self.m_tiles)]


def fp8_activation_format(x: np.ndarray, x_exp, x_format: str | None) -> str | None:
    """The fp8 format of ``x``'s codes (None for int8 and MXINT8), its dtype checked
    (`PackError` otherwise): int8 arrays for int8 and MXINT8, uint8 codes for fp8."""
    try:
        x_format = activation_format(x_format, x_exp)
    except ValueError as exc:
        raise PackError(str(exc)) from None
    fp8 = x_format if x_format in FP8_FORMATS else None
    if x.ndim != 2:
        raise PackError(f"activations must be a 2-D array [M, K], not of shape {x.shape}")
    if fp8 is None and x.dtype != np.int8:
        raise PackError(f"activations must be int8, not {x.dtype}")
    if fp8 is not None and x.dtype != np.uint8:
        raise PackError(f"{fp8} activation codes must be uint8, not {x.dtype}")
    return fp8


class Packer:
    """Packs GEMMs for one configuration."""

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        self.lay = lay = Layouts(cfg)
        self.act_bits = lay.act_beat.size
        self.wgt_bits = lay.wgt_beat.size
        self.res_bits = lay.res_beat.size
        self.prm_bits = lay.col_params.size * cfg.cols
        self.mode_bits = lay.mode.size
        self._x_off, _ = _offset(lay.act_beat, "x")
        self._xexp_off = _offset(lay.act_beat, "x_exp")[0] if lay.has_x_exp else None
        self._pkt_size = lay.packet.size
        self._codes_off = _offset(lay.packet, "codes")[0]
        self._idx_off = _offset(lay.packet, "idx")[0] if cfg.idx_bits else None
        self._scale_off = _offset(lay.packet, "scale")[0] if cfg.scale_field_bits else None
        self._zero_off = _offset(lay.packet, "zero")[0] if cfg.has_zero_points else None
        self._col0 = _offset(lay.wgt_beat, "col")[0]
        self._glast_off = _offset(lay.wgt_beat, "ctl", "group_last")[0]
        self._tlast_off = _offset(lay.wgt_beat, "ctl", "tile_last")[0]

    # -- mode ------------------------------------------------------------------------------

    def mode_word(self, mode: Mode, group_beats: int, k_beats: int, sched: bool = False) -> int:
        """The ``mode`` port word of a GEMM, through the mode layout."""
        const = self.lay.mode.const({
            "fmt": FORMAT_CODES[mode.fmt],
            "sparsity": SPARSITY_CODES[mode.sparsity],
            "scale": SCALE_CODES[mode.scale_kind],
            "mx_act": int(mode.mx_act),
            "requant": int(mode.out_stage == "requant"),
            "group_beats": group_beats,
            "k_beats": k_beats,
            "sched": int(sched),
            **({"x_fmt": self.cfg.x_fmt_codes[mode.x_format]}
               if "x_fmt" in dict(self.lay.mode.members) else {}),
        })
        return Const.cast(const.as_value()).value

    def prm_word(self, bias, mult, shift, zp) -> int:
        """One ``prm`` beat: the requant parameters of every column."""
        layout = data.ArrayLayout(self.lay.col_params, self.cfg.cols)
        const = layout.const([
            {"bias": int(bias[c]), "mult": int(mult[c]), "shift": int(shift[c]), "zp": int(zp[c])}
            for c in range(self.cfg.cols)
        ])
        return Const.cast(const.as_value()).value

    # -- packing ---------------------------------------------------------------------------

    def pack(self, layer, x: np.ndarray, *, x_exp: np.ndarray | None = None,
             out_stage: str = "raw", x_format: str | None = None) -> GemmProgram:
        """Pack ``x [M, K]`` and a golden ``Layer`` into tiles of beats.

        ``x`` holds int8 activations, or MX element codes with ``x_exp`` (``x_format``:
        ``'mxint8'``, the default with ``x_exp``, or ``'fp8_e4m3'`` / ``'fp8_e5m2'`` as uint8
        codes). M and N are padded up to whole tiles (zero activations, zero-valued weight
        columns).
        """
        plan = self._plan(layer, x, x_exp, out_stage, x_format)
        act_blocks = [_to_ints(plan.act_bits(mt)) for mt in range(plan.m_tiles)]
        act_beats, wgt_beats, prm_beats, tiles = [], [], [], []
        for nt in range(plan.n_tiles):
            w_ints = _to_ints(plan.wgt_bits(nt))
            kept = plan.kept[nt].tolist()
            for mt in range(plan.m_tiles):
                act_beats += [act_blocks[mt][b] for b in kept]
                wgt_beats += w_ints
                tiles.append((mt * self.cfg.rows, nt * self.cfg.cols))
                if plan.requant:
                    prm_beats.append(plan.prm_word(nt))
        return GemmProgram(
            mode=plan.mode, mode_word=plan.mode_word, step=plan.step, k_beats=plan.k_beats,
            group_beats=plan.group_beats, M=plan.M, N=plan.N, tiles=tiles,
            act_beats=act_beats, wgt_beats=wgt_beats, prm_beats=prm_beats,
            tile_beats=plan.tile_beats(), sched=plan.sched)

    def write_beat_files(self, layer, x: np.ndarray, out_dir, *,
                         x_exp: np.ndarray | None = None, out_stage: str = "raw",
                         x_format: str | None = None) -> BeatFiles:
        """Write one GEMM's beats as ``$readmemh`` files plus ``index.json`` into ``out_dir``.

        `write_gemms` with one GEMM.
        """
        gemm = {"layer": layer, "x": x, "x_exp": x_exp, "out_stage": out_stage,
                "x_format": x_format}
        return self.write_gemms([gemm], out_dir)[0]

    def write_gemms(self, gemms: list[dict], out_dir) -> list[BeatFiles]:
        """Write GEMMs to run one after the other as ``$readmemh`` files into ``out_dir``.

        Each GEMM is a dict of ``layer``, ``x``, ``x_exp``, ``out_stage`` and optionally
        ``x_format`` (as for `pack`); ``index.json`` lists them.

        Unlike `pack`, every activation row tile and weight column tile is written once
        (``act.hex``: ``m_tiles × k_beats`` words per GEMM, ``wgt.hex``: the beats each column
        tile streams, ``k_beats`` or fewer with block sparsity, ``prm.hex``: one word per
        column tile in requant mode); a reader replays them in the stream order of `pack`
        (column tile by column tile, the row tiles inside). ``sched.hex`` has one word per
        ``wgt.hex`` word: the beat's index ``b`` within the tile (its activations are word
        ``mt · k_beats + b`` of the row tile) and, in bit 31, whether it is the tile's last.
        ``header.hex``: the number of GEMMs, then per GEMM the mode word, ``k_beats``,
        ``m_tiles``, ``n_tiles``, the requant flag, its first word in each of act.hex,
        wgt.hex (and sched.hex) and prm.hex, the beats it streams and its words in wgt.hex,
        one a line (`HEADER_WORDS` per GEMM).
        """
        plans = [self._plan(g["layer"], g["x"], g.get("x_exp"), g.get("out_stage", "raw"),
                            g.get("x_format")) for g in gemms]
        if not plans:
            raise PackError("no GEMM to write")
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PackError(f"cannot create the output directory {out}: "
                            f"{exc.strerror or exc}") from None
        prm_digits = -(-self.prm_bits // 4)
        header = [len(plans)]
        result: list[BeatFiles] = []
        offsets = [0, 0, 0]
        with (open(out / "act.hex", "wb") as act, open(out / "wgt.hex", "wb") as wgt,
              open(out / "sched.hex", "wb") as sched, open(out / "prm.hex", "w") as prm):
            for plan in plans:
                for mt in range(plan.m_tiles):
                    act.write(_hex_lines(plan.act_bits(mt)))
                wgt_words = 0
                for nt in range(plan.n_tiles):
                    wgt.write(_hex_lines(plan.wgt_bits(nt)))
                    kept = plan.kept[nt]
                    last = np.zeros(len(kept), np.int64)
                    last[-1] = 1 << 31
                    sched.write(_hex32_lines(kept + last))
                    wgt_words += len(kept)
                if plan.requant:
                    for nt in range(plan.n_tiles):
                        prm.write(f"{plan.prm_word(nt):0{prm_digits}x}\n")
                tile_beats = plan.tile_beats()
                header += [plan.mode_word, plan.k_beats, plan.m_tiles, plan.n_tiles,
                           int(plan.requant), *offsets, sum(tile_beats), wgt_words]
                result.append(BeatFiles(
                    directory=out, mode=plan.mode, mode_word=plan.mode_word, step=plan.step,
                    k_beats=plan.k_beats, group_beats=plan.group_beats, M=plan.M, N=plan.N,
                    m_tiles=plan.m_tiles, n_tiles=plan.n_tiles, rows=self.cfg.rows,
                    offsets=tuple(offsets),
                    tiles=[(mt * self.cfg.rows, nt * self.cfg.cols)
                           for nt in range(plan.n_tiles) for mt in range(plan.m_tiles)],
                    tile_beats=tile_beats, wgt_words=wgt_words, sched=plan.sched))
                offsets[0] += plan.m_tiles * plan.k_beats
                offsets[1] += wgt_words
                offsets[2] += plan.n_tiles if plan.requant else 0
        (out / "header.hex").write_text("".join(f"{v:016x}\n" for v in header))
        index = {
            "config": self.cfg.name, "rows": self.cfg.rows, "cols": self.cfg.cols,
            "bits": {"act": self.act_bits, "wgt": self.wgt_bits, "prm": self.prm_bits,
                     "res": self.res_bits, "mode": self.mode_bits},
            "files": {"header": "header.hex", "act": "act.hex", "wgt": "wgt.hex",
                      "sched": "sched.hex", "prm": "prm.hex"},
            "words": {"act": offsets[0], "wgt": offsets[1], "prm": offsets[2]},
            "stream_order": "tile t = nt * m_tiles + mt; the column tile's words are "
                            "wgt.hex words wgt_first + (beats of the column tiles before nt) + "
                            "i, i < its beats; sched word s of the same index: act word "
                            "act_first + mt * k_beats + (s & 0x7fffffff), tile ends where bit "
                            "31 is set; prm word prm_first + nt",
            "gemms": [{"mode": f.mode.name, "out_stage": f.mode.out_stage,
                       "mode_word": f"{f.mode_word:x}", "M": f.M, "N": f.N, "step": f.step,
                       "k_beats": f.k_beats, "group_beats": f.group_beats,
                       "m_tiles": f.m_tiles, "n_tiles": f.n_tiles, "beats": f.beats,
                       "wgt_words": f.wgt_words, "sched": int(f.sched),
                       "result_rows": f.result_rows, "act_first": f.offsets[0],
                       "wgt_first": f.offsets[1], "prm_first": f.offsets[2]}
                      for f in result],
        }
        (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
        return result

    def _plan(self, layer, x, x_exp, out_stage: str, x_format: str | None = None) -> _TilePlan:
        """Check the GEMM and lay out its arrays; tiles are packed on demand."""
        cfg = self.cfg
        K, N = (int(v) for v in layer.shape)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != K:
            raise PackError(f"activations have shape {x.shape}, the layer needs [M, {K}]")
        fp8 = fp8_activation_format(x, x_exp, x_format)
        mode = Mode(layer.format, layer.sparsity, layer.scale_kind, mx_act=x_exp is not None,
                    out_stage=out_stage, x_format=fp8)
        try:
            step = cfg.check_mode(mode, group=int(layer.group), k=K)
        except ConfigError as exc:
            raise PackError(str(exc)) from None
        M = x.shape[0]
        k_beats, group_beats = K // step, int(layer.group) // step
        G = int(layer.group)

        rows, cols = cfg.rows, cfg.cols
        m_tiles, n_tiles = -(-M // rows), -(-N // cols)
        Mp, Np = m_tiles * rows, n_tiles * cols
        xp = np.zeros((Mp, K), np.int64)
        xp[:M] = x
        # One exponent per 32-block (a partial last block when K is not a multiple of 32: only
        # MXINT8 activations need whole blocks, and those are checked with the mode).
        xe = np.full((Mp, -(-K // MX_BLOCK)), E8M0_BIAS, np.int64)
        if x_exp is not None:
            x_exp = np.asarray(x_exp)
            if x_exp.shape != (M, K // MX_BLOCK):
                raise PackError(f"x_exp has shape {x_exp.shape}, expected ({M}, {K // MX_BLOCK})")
            xe[:M, :K // MX_BLOCK] = x_exp

        slot_bytes, lane_idx, scales, zeros, k_pos = self._weight_fields(layer, k_beats, Np)
        beat_group = (np.arange(k_beats) * step) // G
        beat_block = (np.arange(k_beats) * step) // MX_BLOCK
        x_bad = None if fp8 is None else decode(fp8, x)[1].any(axis=0)
        kept = self._kept_beats(layer, step, k_beats, n_tiles, x_exp, x_bad)
        sched = layer.block_mask is not None

        requant = out_stage == "requant"
        prm = None
        if requant:
            bias, mult, shift, zp = _requant_columns(layer, N, Np)
            prm = (bias, mult, shift, zp)

        # Column-major copies: a column tile reads its own columns' beats from contiguous rows.
        slot_cols = np.ascontiguousarray(slot_bytes.transpose(2, 0, 1))
        idx_cols = (np.ascontiguousarray(lane_idx.transpose(2, 0, 1))
                    if self._idx_off is not None else None)

        def wgt_bits(nt: int) -> np.ndarray:
            n0 = nt * cols
            b = kept[nt]
            wbits = np.zeros((len(b), self.wgt_bits), np.uint8)
            for c in range(cols):
                base = self._col0 + c * self._pkt_size
                _place(wbits, base + self._codes_off, 8, 8, slot_cols[n0 + c][b])
                if idx_cols is not None:
                    _place(wbits, base + self._idx_off, cfg.idx_bits, cfg.idx_bits,
                           idx_cols[n0 + c][b])
                if self._scale_off is not None:
                    _place(wbits, base + self._scale_off, cfg.scale_field_bits, 0,
                           scales[beat_group[b], n0 + c])
                if self._zero_off is not None:
                    _place(wbits, base + self._zero_off, cfg.zero_point_bits, 0,
                           zeros[beat_group[b], n0 + c])
            self._schedule(wbits, beat_group[b], sched)
            return wbits

        V = cfg.window

        def act_bits(mt: int) -> np.ndarray:
            m0 = mt * rows
            abits = np.zeros((k_beats, self.act_bits), np.uint8)
            win = np.zeros((k_beats, rows, V), np.int64)
            win[:, :, k_pos] = xp[m0:m0 + rows].reshape(rows, k_beats, step).transpose(1, 0, 2)
            _place(abits, self._x_off, 8, 8, win.reshape(k_beats, rows * V))
            if self._xexp_off is not None:
                _place(abits, self._xexp_off, 8, 8, xe[m0:m0 + rows][:, beat_block].T)
            return abits

        def prm_word(nt: int) -> int:
            sl = slice(nt * cols, nt * cols + cols)
            return self.prm_word(*(a[sl] for a in prm))

        return _TilePlan(mode=mode, mode_word=self.mode_word(mode, group_beats, k_beats, sched),
                         step=step, k_beats=k_beats, group_beats=group_beats, M=M, N=N,
                         m_tiles=m_tiles, n_tiles=n_tiles, requant=requant,
                         act_bits=act_bits, wgt_bits=wgt_bits, prm_word=prm_word, kept=kept,
                         sched=sched)

    def _schedule(self, wbits: np.ndarray, groups: np.ndarray, sched: bool) -> None:
        """The block schedule of a tile's streamed beats: where they close groups and the tile."""
        if not sched:
            return
        wbits[:, self._glast_off] = np.append(groups[1:] != groups[:-1], True)
        wbits[-1, self._tlast_off] = 1

    def _kept_beats(self, layer, step: int, k_beats: int, n_tiles: int,
                    x_exp, x_bad=None) -> list[np.ndarray]:
        """The beats each column tile streams: all of them, or without block sparsity's skips.

        A beat is left out when every k it covers lies in blocks dropped for every column of
        the tile (those weights are zero-valued, SPEC §3), unless leaving it out could change
        an error flag: a ``pow2`` group whose canonical scale (127) with some row's activation
        exponent is NaN or outside the exponent window streams (golden flags it), and so does
        a beat with an invalid fp8 activation code (``x_bad``: it flags its row). A tile keeps
        at least its first beat, so its rows still come out.
        """
        cfg = self.cfg
        if layer.block_mask is None:
            return [np.arange(k_beats)] * n_tiles
        K, N = (int(v) for v in layer.shape)
        cols = cfg.cols
        live = np.zeros((K, n_tiles * cols), bool)
        live[:, :N] = block_dense_keep(layer.block_shape, layer.block_mask)
        beat_live = live.reshape(k_beats, step, n_tiles, cols).any(axis=(1, 3))
        if layer.scale_kind == "pow2":
            e_x = None if x_exp is None else np.asarray(x_exp, np.int64)
            t = pow2_exponent(layer.format, E8M0_BIAS, e_x)
            flagged = (t < cfg.t_min) | (t > cfg.t_max)
            if e_x is not None:
                flagged = (flagged | (e_x == E8M0_NAN)).any(axis=0)
            group_flagged = np.broadcast_to(flagged, (K // MX_BLOCK,))
            beat_live |= group_flagged[(np.arange(k_beats) * step) // MX_BLOCK][:, None]
        if x_bad is not None:  # an invalid activation code (fp8 NaN, Inf) flags its row
            beat_live |= x_bad.reshape(k_beats, step).any(axis=1)[:, None]
        kept = []
        for nt in range(n_tiles):
            b = np.flatnonzero(beat_live[:, nt])
            kept.append(b if b.size else np.zeros(1, np.int64))
        return kept

    def _weight_fields(self, layer, k_beats: int, Np: int):
        """Slot bytes, N:M indices, scales and zero points of every beat and (padded) column.

        Returns ``slot_bytes [k_beats, slots, Np]``, ``lane_idx [k_beats, max_lanes, Np]`` (uint8),
        ``scales`` and ``zeros`` ``[groups, Np]`` (padded columns hold zero-valued weights) and
        ``k_pos``, the window position of every beat-local k (`hw.lanemap`).
        """
        cfg = self.cfg
        K, N = (int(v) for v in layer.shape)
        n_sp, m_sp = parse_sparsity(layer.sparsity)
        lanes = cfg.lanes_used(layer.format, layer.sparsity)
        lps = cfg.lanes_per_slot(layer.format)
        bits = FORMAT_BITS[layer.format]
        G = int(layer.group)
        # Weight lanes per beat: [k_beats, lanes, Np].
        codes = np.zeros((K * n_sp // m_sp, Np), np.int64)
        codes[:, :N] = layer.codes
        idx = np.zeros_like(codes)
        if layer.idx is not None:
            idx[:, :N] = layer.idx
        else:
            idx[:] = 0
        if Np > N and layer.idx is not None:  # canonical padding slots for the padded columns
            idx[:, N:] = padding_idx(codes.shape[0], n_sp)[:, None]
        n_groups = K // G
        scales = np.zeros((n_groups, Np), np.int64)
        if layer.scales is not None:
            scales[:, :N] = layer.scales
            if layer.scale_kind == "pow2":
                scales[:, N:] = E8M0_BIAS
        zeros = np.zeros((n_groups, Np), np.int64)
        if layer.zeros is not None:
            zeros[:, :N] = layer.zeros
        codes = codes.reshape(k_beats, lanes, Np)
        idx = idx.reshape(k_beats, lanes, Np)
        # Logical lanes onto multipliers by the co-designed lane order (hw.lanemap): lane j's
        # code goes to its multiplier's slot byte and quarter, its index to the multiplier's
        # idx field, and beat-local k's activation to window position k_pos[k].
        order = lane_map(cfg)
        lanes_of_mode = order.modes[(layer.format, layer.sparsity)]
        # Bytes: a slot is one byte of the packet, an index `cfg.idx_bits` (below 8) wide.
        slot_bytes = np.zeros((k_beats, cfg.slots, Np), np.uint8)
        lane_idx = np.zeros((k_beats, cfg.max_lanes, Np), np.uint8)
        for j, (s, q) in enumerate(lanes_of_mode.lane_mult):
            sub = q // (4 // lps)
            slot_bytes[:, s] |= (codes[:, j] << (sub * bits)).astype(np.uint8)
            lane_idx[:, order.idx_index((s, q))] = idx[:, j]
        return slot_bytes, lane_idx, scales, zeros, np.asarray(lanes_of_mode.k_pos)

    # -- results ---------------------------------------------------------------------------

    def unpack_result(self, word: int) -> tuple[list[int], list[int], int]:
        """One result beat → (values per column, error bits per column, last).

        Decoded through the result layout (`hw.layouts.Layouts.res_beat`): no bit offset here.
        """
        row = self.lay.res_beat.from_bits(word)
        return list(row.value), list(row.err), row.last

    def unpack_results(self, words: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Result beats → (values [n, cols] int64, err [n, cols] bool, last [n] bool).

        `unpack_result` on many beats at once: the fields' offsets and widths come from the
        result layout, the bits are taken apart with numpy.
        """
        lay = self.lay.res_beat
        n_bytes = -(-lay.size // 8)
        raw = np.frombuffer(b"".join(w.to_bytes(n_bytes, "little") for w in words), np.uint8)
        bits = np.unpackbits(raw.reshape(len(words), n_bytes), axis=1, bitorder="little")
        value_off, value_shape = _offset(lay, "value")
        width = _width(value_shape.elem_shape)
        cols = value_shape.length
        fields = bits[:, value_off:value_off + cols * width].reshape(len(words), cols, width)
        weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
        unsigned_values = (fields.astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)
        # Two's complement: the field's sign bit moved to bit 63, shifted back arithmetically.
        shift = np.uint64(64 - width)
        values = (unsigned_values << shift).view(np.int64) >> np.int64(64 - width)
        err_off, _ = _offset(lay, "err")
        err = bits[:, err_off:err_off + cols].astype(bool)
        last = bits[:, _offset(lay, "last")[0]].astype(bool)
        return values, err, last

    def assemble(self, prog: GemmProgram, results: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Result beats in stream order → (Y [M, N] int64, err [M, N] bool)."""
        rows, cols = self.cfg.rows, self.cfg.cols
        expected = len(prog.tiles) * rows
        if len(results) != expected:
            raise PackError(f"expected {expected} result beats, got {len(results)}")
        Mp, Np = prog.tiles and (max(t[0] for t in prog.tiles) + rows,
                                 max(t[1] for t in prog.tiles) + cols)
        y = np.zeros((Mp, Np), np.int64)
        err = np.zeros((Mp, Np), bool)
        values, errs, last = self.unpack_results(results)
        wrong = np.flatnonzero(last != (np.arange(expected) % rows == rows - 1))
        if wrong.size:
            t, r = divmod(int(wrong[0]), rows)
            raise PackError(f"tile {t} row {r}: 'last' flag is {int(last[wrong[0]])}")
        origin = np.asarray(prog.tiles, np.int64)
        row = origin[:, 0, None, None] + np.arange(rows)[None, :, None]
        col = origin[:, 1, None, None] + np.arange(cols)[None, None, :]
        y[row, col] = values.reshape(-1, rows, cols)
        err[row, col] = errs.reshape(-1, rows, cols)
        y = y[:prog.M, :prog.N]
        if prog.mode.out_stage == "requant":
            y = y.astype(np.int8)
        return y, err[:prog.M, :prog.N]
