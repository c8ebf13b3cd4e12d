"""`lib.data` layouts of every port payload, derived from one `ArrayConfig`.

Testbenches and the host-side packer build their stimuli through these same layouts
(``layout.const({...})``), so no bit offset exists anywhere else.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from golden.tables import ACT_BITS, OUT_SHIFT_MAX, OUT_SHIFT_MIN, SLOT_BITS, signed_width
from hw.config import FORMAT_CODES, SCALE_CODES, SPARSITY_CODES, ArrayConfig

__all__ = ["Layouts"]


def _code_bits(codes: dict) -> int:
    return max(max(codes.values()).bit_length(), 1)


class Layouts:
    """All payload layouts of a configuration.

    Attributes
    ----------
    mode : StructLayout
        Per-GEMM runtime mode: ``fmt``, ``sparsity``, ``scale`` (codes of ``hw.config``),
        ``mx_act``, ``requant``, ``group_beats`` and ``k_beats`` (beats per group / per tile),
        ``sched`` (group and tile boundaries from the weight beats' ``ctl`` instead of the
        counters: block-sparse GEMMs, whose tiles skip the beats of dropped blocks), ``inband``
        (on the ``mode`` port only: every GEMM's mode word comes from the ``dsc`` stream),
        ``x_fmt`` (with fp8 activations: which element format the activation codes are).
    col_params : StructLayout
        Output stage parameters of one column: ``bias``, ``mult`` (M0), ``shift``, ``zp``.
    act_beat : StructLayout
        One activation beat: ``x[row][v]`` window of 8-bit element codes per row and
        ``x_exp[row]``.
    x_window : ArrayLayout
        A PE's activation window: int8, or with fp8 activations ``x_elem`` =
        ``{v, c}`` per position (the row edge's decode).
    packet : StructLayout
        One column's weight packet: ``codes[slot]``, ``idx[lane]``, ``scale``, ``zero``.
    wgt_beat : StructLayout
        ``col``: ``packet`` for every column (column 0 at bit 0); ``ctl`` (`wgt_ctl`):
        ``group_last`` and ``tile_last`` of the beat, read only when ``mode.sched`` is set;
        ``gemm_last`` (the GEMM's last beat: the next beat runs the next descriptor), read only
        with ``mode.inband``.
    res_beat : StructLayout
        One drained output row: ``value[col]``, ``err[col]``, ``last`` (last row of a tile).
    """

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        count_bits = max((cfg.k_max).bit_length(), 1)
        self.count_bits = count_bits
        self.mode = data.StructLayout({
            # As wide as the enabled formats' codes need (the fp8 codes are 8 and 9).
            "fmt": unsigned(_code_bits({f: FORMAT_CODES[f] for f in cfg.formats})),
            "sparsity": unsigned(_code_bits(SPARSITY_CODES)),
            "scale": unsigned(_code_bits(SCALE_CODES)),
            "mx_act": unsigned(1),
            "requant": unsigned(1),
            "group_beats": unsigned(count_bits),
            "k_beats": unsigned(count_bits),
            "sched": unsigned(1),
            "inband": unsigned(1),
            # With fp8 activations: `ArrayConfig.x_fmt_codes` (0 = int8 / MXINT8 codes).
            **({"x_fmt": unsigned(len(cfg.fp8_activations).bit_length())}
               if cfg.fp8_activations else {}),
        })
        self.col_params = data.StructLayout({
            "bias": signed(32),
            "mult": signed(32),
            "shift": signed(signed_width(OUT_SHIFT_MIN, OUT_SHIFT_MAX)),
            "zp": signed(32),
        })
        # An activation beat carries 8-bit element codes; the row edge decodes fp8 codes to
        # ``v · 2**(LANE_SHIFT_CHUNK · c)`` (`hw.pe.ActivationDecode`), the form the PEs' windows
        # hold. Without fp8 activations the two are the same int8 window.
        self.x_codes = data.ArrayLayout(signed(ACT_BITS), cfg.window)
        if cfg.fp8_activations:
            self.x_elem = data.StructLayout({
                "v": signed(cfg.x_value_bits),
                "c": unsigned(max(cfg.x_coarse_max.bit_length(), 1))})
            self.x_window = data.ArrayLayout(self.x_elem, cfg.window)
        else:
            self.x_elem = signed(ACT_BITS)
            self.x_window = self.x_codes
        act_fields = {"x": data.ArrayLayout(self.x_codes, cfg.rows)}
        if self.has_x_exp:
            act_fields["x_exp"] = data.ArrayLayout(unsigned(8), cfg.rows)
        self.act_beat = data.StructLayout(act_fields)

        packet = {"codes": data.ArrayLayout(unsigned(SLOT_BITS), cfg.slots)}
        if cfg.idx_bits:
            packet["idx"] = data.ArrayLayout(unsigned(cfg.idx_bits), cfg.max_lanes)
        if cfg.scale_field_bits:
            packet["scale"] = unsigned(cfg.scale_field_bits)
        if cfg.has_zero_points:
            packet["zero"] = unsigned(cfg.zero_point_bits)
        self.packet = data.StructLayout(packet)
        # Beat control of a scheduled GEMM (``mode.sched``): where groups and tiles end.
        self.wgt_ctl = data.StructLayout({
            "group_last": unsigned(1),
            "tile_last": unsigned(1),
            "gemm_last": unsigned(1),
        })
        self.wgt_beat = data.StructLayout({
            "col": data.ArrayLayout(self.packet, cfg.cols),
            "ctl": self.wgt_ctl,
        })

        self.res_beat = data.StructLayout({
            "value": data.ArrayLayout(signed(cfg.acc_bits), cfg.cols),
            "err": data.ArrayLayout(unsigned(1), cfg.cols),
            "last": unsigned(1),
        })
        # Per-beat control that travels through the array with the activations.
        self.ctl = data.StructLayout({
            "valid": unsigned(1),
            "group_first": unsigned(1),
            "group_last": unsigned(1),
            "tile_first": unsigned(1),
            "tile_last": unsigned(1),
        })
        # One row's activation traffic inside the array.
        row = {"x": self.x_window, "ctl": self.ctl}
        if self.has_x_exp:
            row["x_exp"] = unsigned(8)
        if cfg.fp8_activations:
            row["x_bad"] = unsigned(1)  # an invalid (NaN, Inf) activation code in the beat
        self.row_beat = data.StructLayout(row)

    @property
    def has_x_exp(self) -> bool:
        """Whether activation beats carry MXINT8 exponents."""
        return "pow2" in self.cfg.scale_kinds
