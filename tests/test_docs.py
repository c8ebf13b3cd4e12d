"""flows.docs: docs/INTERFACE.md and its pictures are up to date with the generator (the
manifest and a fresh simulation trace), and every picture source has its rendering.
"""

import xml.etree.ElementTree as ET
from pathlib import Path

from flows.docs import PICTURES, stale_files
from gen.presets import PRESETS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_interface_doc_is_up_to_date():
    stale = stale_files(PRESETS["tiny"], DOCS, "tiny")
    assert not stale, f"regenerate with `make docs`: {stale}"


def test_every_picture_is_rendered_svg():
    sources = sorted((DOCS / PICTURES).glob("*.json"))
    assert sources
    for src in sources:
        svg = src.with_suffix(".svg")
        assert svg.exists(), svg
        assert ET.parse(svg).getroot().tag.endswith("svg")
    for name in ("pe_pipeline", "systolic"):
        assert ET.parse(DOCS / PICTURES / f"{name}.svg").getroot().tag.endswith("svg")
    text = (DOCS / "INTERFACE.md").read_text()
    for path in (DOCS / PICTURES).glob("*.svg"):
        assert f"interface/{path.name}" in text, f"{path.name} is not shown in INTERFACE.md"


def test_readme_links_every_doc():
    root = DOCS.parent
    readme = (root / "README.md").read_text()
    for path in [*sorted(DOCS.glob("*.md")), root / "CHANGELOG.md", root / "LICENSE"]:
        rel = path.relative_to(root).as_posix()
        assert f"]({rel})" in readme, f"README does not link {rel}"
