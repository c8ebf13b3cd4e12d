"""Command line for real models: ``golden import`` from safetensors, ``quantize``,
``requant-params``, ``dequantize``, and the pointer from ``compress`` to ``import``.
"""

import numpy as np
import pytest
from safetensors.numpy import save_file

from golden.__main__ import main
from golden.compress import compress
from golden.gemm import dequantize_weights, gemm
from golden.host import quantize_multiplier
from golden.importers import import_gptq
from golden.layer import load_layer, save_layer
from tests.test_golden_importers import awq_pack, gptq_case, gptq_pack, i2s_pack


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("version", [1, 2])
def test_import_gptq_from_safetensors(tmp_path, capsys, version):
    q, z, scales = gptq_case()
    qweight, qzeros = gptq_pack(q, z, version)
    ckpt = tmp_path / "model.safetensors"
    save_file({"blk.0.qweight": qweight, "blk.0.qzeros": qzeros, "blk.0.scales": scales}, ckpt)
    status, out, _ = run(["import", "gptq", ckpt, "--prefix", "blk.0", "--gptq-version",
                          version, "-o", tmp_path / "L.npz"], capsys)
    assert status == 0 and "exact" in out
    layer = load_layer(tmp_path / "L.npz")
    ref = import_gptq(qweight, qzeros, scales, version=version).layer
    np.testing.assert_array_equal(dequantize_weights(layer), dequantize_weights(ref))


def test_import_awq_and_bitnet(tmp_path, capsys):
    rng = np.random.default_rng(5)
    K, N = 64, 16
    q, z = rng.integers(0, 16, (K, N)), rng.integers(0, 16, (1, N))
    save_file({"l.qweight": awq_pack(q), "l.qzeros": awq_pack(z),
               "l.scales": rng.uniform(0.01, 0.02, (1, N)).astype(np.float16)},
              tmp_path / "awq.safetensors")
    status, out, _ = run(["import", "awq", tmp_path / "awq.safetensors", "--prefix", "l",
                          "-o", tmp_path / "A.npz"], capsys)
    assert status == 0, out
    assert load_layer(tmp_path / "A.npz").format == "uint4"
    ternary = rng.integers(-1, 2, size=(4, 128))
    save_file({"w.weight": i2s_pack(ternary + 1),
               "w.weight_scale": np.array([0.5], np.float32)}, tmp_path / "b.safetensors")
    status, out, _ = run(["import", "bitnet-i2s", tmp_path / "b.safetensors", "--prefix", "w",
                          "--shape", "4,128", "-o", tmp_path / "B.npz"], capsys)
    assert status == 0, out
    np.testing.assert_array_equal(dequantize_weights(load_layer(tmp_path / "B.npz")),
                                  ternary.T * 0.5)


def test_import_errors_are_one_line(tmp_path, capsys):
    save_file({"x.qweight": np.zeros((8, 8), np.int32)}, tmp_path / "m.safetensors")
    status, _, err = run(["import", "gptq", tmp_path / "m.safetensors", "--prefix", "x",
                          "-o", tmp_path / "L.npz"], capsys)
    assert status == 2 and "'x.qzeros' not found" in err and len(err.splitlines()) == 1
    status, _, err = run(["import", "gptq", tmp_path / "nope.safetensors", "-o",
                          tmp_path / "L.npz"], capsys)
    assert status == 2 and "does not exist" in err


def test_compress_of_integer_tensor_points_to_import(tmp_path, capsys):
    save_file({"qweight": np.zeros((8, 8), np.int32)}, tmp_path / "g.safetensors")
    status, _, err = run(["compress", f"{tmp_path}/g.safetensors:qweight", "--format", "int4",
                          "--scale", "int", "-o", tmp_path / "L.npz"], capsys)
    assert status == 2 and "golden import" in err and len(err.splitlines()) == 1


def test_quantize_requant_dequantize(tmp_path, capsys):
    rng = np.random.default_rng(9)
    w, x = rng.standard_normal((64, 4)), rng.standard_normal((3, 64))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    save_layer(tmp_path / "L.npz", compress(w, fmt="int8", scale_kind="int"))
    status, _, _ = run(["quantize", tmp_path / "x.npy", "--per-tensor", "-o",
                        tmp_path / "xq.npy"], capsys)
    assert status == 0
    xq, xs = np.load(tmp_path / "xq.npy"), float(np.load(tmp_path / "xq.scale.npy"))
    assert xq.dtype == np.int8 and np.abs(xq).max() == 127
    np.testing.assert_allclose(xq * xs, x, atol=xs / 2 + 1e-12)
    status, out, _ = run(["requant-params", tmp_path / "L.npz", "--x-scale",
                          tmp_path / "xq.scale.npy", "--y-scale", "0.25", "--zp", "2", "-o",
                          tmp_path / "Lr.npz"], capsys)
    assert status == 0, out
    lr = load_layer(tmp_path / "Lr.npz")
    m0, sh = quantize_multiplier(xs * 2.0 ** lr.scale_exp / 0.25)
    np.testing.assert_array_equal(lr.out_mult, m0)
    np.testing.assert_array_equal(lr.out_shift, sh)
    y, _ = gemm(xq, lr, out_stage="requant")
    np.save(tmp_path / "yq.npy", y)
    status, out, _ = run(["dequantize", tmp_path / "yq.npy", "--layer", tmp_path / "Lr.npz",
                          "--y-scale", tmp_path / "Lr.yscale.npy", "--ref-x", tmp_path / "x.npy",
                          "--ref-w", tmp_path / "w.npy", "-o", tmp_path / "yf.npy"], capsys)
    assert status == 0 and "SQNR" in out
    np.testing.assert_allclose(np.load(tmp_path / "yf.npy"), (y.astype(np.int64) - 2) * 0.25)
    status, out, _ = run(["quantize", tmp_path / "x.npy", "--kind", "mxint8", "-o",
                          tmp_path / "xm.npy"], capsys)
    assert status == 0 and np.load(tmp_path / "xm.exp.npy").shape == (3, 2)
    np.save(tmp_path / "xi.npy", xq)
    status, _, err = run(["quantize", tmp_path / "xi.npy", "-o", tmp_path / "q.npy"], capsys)
    assert status == 2 and "floating point" in err


@pytest.mark.parametrize("convention", ["modelopt", "compressed-tensors"])
def test_import_nvfp4_from_safetensors(tmp_path, capsys, convention):
    import json
    import struct

    import ml_dtypes

    from golden.gemm import dequantize_weights

    rng = np.random.default_rng(2)
    codes = rng.integers(0, 16, size=(4, 32)).astype(np.uint8)  # [out, in]
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    scales = rng.uniform(0.1, 100, size=(4, 2)).astype(ml_dtypes.float8_e4m3fn)
    names = ({"modelopt": ("weight", "weight_scale_2"),
              "compressed-tensors": ("weight_packed", "weight_global_scale")}[convention])
    tensors = {f"l.{names[0]}": ("U8", packed),
               "l.weight_scale": ("F8_E4M3", scales.view(np.uint8)),
               f"l.{names[1]}": ("F32", np.array([4.0], np.float32))}
    header, blobs, off = {}, b"", 0
    for name, (tag, a) in tensors.items():
        header[name] = {"dtype": tag, "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        blobs += a.tobytes()
        off += a.nbytes
    text = json.dumps(header).encode()
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + blobs)
    status = main(["import", "nvfp4", str(tmp_path / "m.safetensors"), "--prefix", "l", "-o",
                   str(tmp_path / "l.npz")])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"nvfp4 ({convention})" in out and "exact" in out
    layer = load_layer(tmp_path / "l.npz")
    ref = (codes.view(ml_dtypes.float4_e2m1fn).astype(float)
           * np.repeat(scales.astype(float), 16, axis=1)).T
    np.testing.assert_array_equal(dequantize_weights(layer), ref)
    t = float(np.load(tmp_path / "l.tscale.npy"))
    assert t == (4.0 if convention == "modelopt" else 0.25)
    status = main(["import", "nvfp4", str(tmp_path / "m.safetensors"), "--prefix", "x", "-o",
                   str(tmp_path / "l.npz")])
    _, err = capsys.readouterr()
    assert status == 2 and "tensor 'x.weight' not found" in err and err.count("\n") == 1
