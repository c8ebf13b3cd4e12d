"""examples.e2e: the end-to-end MiniLM evaluation on the golden GEMM (small, fast slices)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from examples.e2e import (
    DATA,
    Choice,
    Encoder,
    cosine_stats,
    erf,
    linear_names,
    load_sentences,
    split_sentences,
)
from examples.minilm import MiniLM
from gen.presets import preset


def synthetic_model(path, seed=0):
    """A MiniLM-shaped model with random weights and a small vocabulary."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", ".", ",", "the", "a", "is", "of", "to", "and",
             "in", "value", "object", "name", "##s", "list", "type", "function"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    t = {"embeddings.word_embeddings.weight": rng.normal(0, 0.5, (len(words), 384)),
         "embeddings.position_embeddings.weight": rng.normal(0, 0.1, (512, 384)),
         "embeddings.token_type_embeddings.weight": rng.normal(0, 0.1, (2, 384)),
         "embeddings.LayerNorm.weight": np.ones(384), "embeddings.LayerNorm.bias": np.zeros(384)}
    shapes = {"attention.self.query": (384, 384), "attention.self.key": (384, 384),
              "attention.self.value": (384, 384), "attention.output.dense": (384, 384),
              "intermediate.dense": (1536, 384), "output.dense": (384, 1536)}
    for i in range(6):
        p = f"encoder.layer.{i}."
        for name, shape in shapes.items():
            t[p + name + ".weight"] = rng.normal(0, 1 / math.sqrt(shape[1]), shape)
            t[p + name + ".bias"] = rng.normal(0, 0.02, shape[0])
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + ln + ".weight"] = np.ones(384)
            t[p + ln + ".bias"] = np.zeros(384)
    save_file({k: v.astype(np.float32) for k, v in t.items()}, str(path / "model.safetensors"))
    return MiniLM(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The packaged all-MiniLM-L6-v2 when installed, else a random model of the same shape."""
    try:
        from examples.minilm import model_dir

        return MiniLM(model_dir())
    except SystemExit:
        return synthetic_model(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="module")
def sentences():
    cal, ev = split_sentences(load_sentences(), 96)
    return cal[:4], ev[:4]


def test_sentence_file_is_real_text_with_source_and_licence():
    header = [s for s in DATA.read_text().splitlines() if s.startswith("#")]
    assert any("Source" in s for s in header) and any("Licence" in s for s in header)
    sents = load_sentences()
    assert len(sents) >= 400 and len(set(sents)) == len(sents)
    cal, ev = split_sentences(sents, 96)
    assert len(cal) == 96 and not set(cal) & set(ev) and len(cal) + len(ev) == len(sents)
    assert split_sentences(sents, 96) == (cal, ev)
    with pytest.raises(ValueError, match="calibration"):
        split_sentences(sents, 0)


def test_erf_matches_math_erf():
    x = np.linspace(-6, 6, 2001)
    assert np.max(np.abs(erf(x) - np.vectorize(math.erf)(x))) < 1.5e-7


def test_choice_validation_and_round_trip():
    ch = Choice("int4", "2:4", group=128, calib="smooth+wanda")
    assert Choice.from_dict(ch.to_dict()) == ch
    assert ch.label == "int4/g128 2:4 +smooth+wanda"
    with pytest.raises(ValueError, match="N:M"):
        Choice("int8", calib="wanda")
    with pytest.raises(ValueError, match="pow2"):
        Choice("int8", act="mxint8")
    with pytest.raises(ValueError, match="unknown"):
        Choice.from_dict({"fmt": "int8", "colour": 1})


def test_float_forward_matches_the_demo_model(model, sentences):
    enc = Encoder(model, preset("default"))
    ref = model.sentence_embeddings(sentences[1][:2])  # exact math.erf GELU, one by one
    got = enc.forward(sentences[1][:2])
    assert cosine_stats(ref, got)["worst"] > 1 - 1e-9


def test_int8_and_mxint8_are_near_identity_and_harsh_modes_are_not(model, sentences):
    cal, ev = sentences
    enc = Encoder(model, preset("default"), n_layers=2)
    assert enc.names == linear_names(2) and len(enc.names) == 12
    x_cal = enc.calibration_inputs(cal)
    ref = enc.forward(ev)
    stats = {}
    for ch in (Choice("int8"), Choice("mxint8", scale_kind="pow2", act="mxint8"),
               Choice("ternary", "1:4")):
        plan = {n: enc.compress(n, ch, x_cal[n]) for n in enc.names}
        stats[ch.label] = cosine_stats(ref, enc.forward(ev, plan))
    assert stats["int8/ch dense"]["worst"] > 0.995
    assert stats["MXINT8+MXINT8 act dense"]["worst"] > 0.995
    assert stats["ternary/ch 1:4"]["mean"] < 0.99
    assert enc.gemm_errors == 0
    for s in stats.values():
        assert s["worst"] <= s["p5"] <= s["mean"] <= 1 + 1e-12 and s["sentences"] == len(ev)


def test_compressed_linear_is_the_golden_gemm(model, sentences):
    """One layer by hand: quantize, gemm_raw, scales, bias."""
    from golden.gemm import gemm_raw
    from golden.quant import quantize_activations_int8

    cal, _ = sentences
    enc = Encoder(model, preset("default"), n_layers=1)
    x = enc.calibration_inputs(cal)["0.ffn_up"]
    comp = enc.compress("0.ffn_up", Choice("int4", group=128), x)
    x_q, x_scale = quantize_activations_int8(x)
    acc, err = gemm_raw(x_q, comp.layer)
    expect = acc * np.ldexp(1.0, comp.layer.scale_exp.astype(np.int64)) * x_scale[:, None]
    assert not err.any()
    np.testing.assert_array_equal(enc.run_linear(x, comp), expect + enc.bias("0.ffn_up"))
