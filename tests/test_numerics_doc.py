"""docs/NUMERICS.md: every format, sparsity, scale, output-stage and layer-file row it lists as
implemented is implemented exactly as written, and no row is left as not implemented yet.
"""

import dataclasses
import re
from pathlib import Path

import numpy as np

from golden.compress import compress
from golden.formats import FORMATS, SCALE_KINDS
from golden.host import requant_params
from golden.layer import Layer
from golden.sparsity import SPARSITY_PATTERNS

DOC = Path(__file__).resolve().parent.parent / "docs" / "NUMERICS.md"
NOT_YET = {"formats": set(), "sparsity": set(), "scales": set(), "layer": set(),
           "stages": set()}


def _section_table(title: str) -> list[dict[str, str]]:
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"section {title!r} missing"
    lines = [ln for ln in match.group(1).splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows.append(dict(zip(head, cells, strict=True)))
    return rows


def _name(cell: str) -> str:
    return cell.strip("`")


def _split(rows, key="status"):
    done = {_name(r[next(iter(r))]): r for r in rows if r[key] == "implemented"}
    later = {_name(r[next(iter(r))]) for r in rows if r[key] == "not implemented yet"}
    assert len(done) + len(later) == len(rows), "every row is implemented or not yet"
    return done, later


def _int(text: str) -> int:
    return int(text.replace("−", "-"))


def test_formats_table():
    rows = _section_table("2. Element formats")
    done, later = _split(rows)
    assert set(done) == set(FORMATS)
    assert later == NOT_YET["formats"] and not later & set(FORMATS)
    for name, row in done.items():
        info = FORMATS[name]
        lo, hi = (_int(v) for v in row["integer range"].split("…"))
        assert (int(row["bits"]), int(row["lanes per slot"])) == (info.bits, info.lanes_per_slot)
        assert (lo, hi) == (info.value_min, info.value_max), name
        assert (row["zero points"] == "yes") == info.has_zero_point, name
        assert tuple(s.strip() for s in row["scale kinds"].split(",")) == info.allowed_scales
        assert _int(row["pow2 adj"]) == info.pow2_adj, name


def test_sparsity_table():
    done, later = _split(_section_table("3. Sparsity"))
    assert later == NOT_YET["sparsity"]
    assert {k: (int(r["N"]), int(r["M"])) for k, r in done.items()} == SPARSITY_PATTERNS


def test_scales_table():
    from golden.compress import NVFP4_GROUP, NVFP4_SCALE_BITS, compress_nvfp4

    done, later = _split(_section_table("4. Scales"))
    assert tuple(k for k in done if k != "nvfp4") == SCALE_KINDS and later == NOT_YET["scales"]
    layer, _ = compress_nvfp4(np.ones((32, 2)))  # the nvfp4 row: an int-scale fp4 layer
    assert (layer.format, layer.scale_kind, layer.group) == ("fp4_e2m1", "int", NVFP4_GROUP)
    assert layer.scale_bits == NVFP4_SCALE_BITS


def test_output_stage_table():
    from golden.gemm import gemm
    done, later = _split(_section_table("6. Output stage"))
    assert set(done) == {"raw", "requant"} and later == NOT_YET["stages"]
    rng = np.random.default_rng(1)
    layer = requant_params(compress(rng.standard_normal((32, 4)), fmt="int8",
                                    scale_kind="int"), 0.01, 0.1)
    x = rng.integers(-127, 128, (2, 32)).astype(np.int8)
    assert gemm(x, layer, out_stage="raw")[0].dtype == np.int64
    assert gemm(x, layer, out_stage="requant")[0].dtype == np.int8


def test_layer_file_table():
    done, later = _split(_section_table("7. The layer file (`.npz`, version 1)"))
    assert later == NOT_YET["layer"]
    fields = {f.name for f in dataclasses.fields(Layer)}
    assert set(done) == fields, set(done) ^ fields
    assert not later & fields
