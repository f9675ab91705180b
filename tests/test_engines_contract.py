"""One contract for every backend present: same graphs, same numbers as the PyTorch reference.

Checked on real face crops (centre crops of a ../shared talking-head clip) with the
tiny config: each graph at batch 1, 3 and 5 with ``max_batch=4`` (so 5 is split),
max abs error <= 1e-4 in FP32 and <= 2e-2 in FP16 (times max(1, max|reference|) for
outputs whose untrained scale exceeds 1). Backends that are not usable on
this machine skip with the reason :mod:`engines.select` gives.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engines import open_backend
from engines.probes import default_probes
from engines.select import canonical, check
from facecycle.errors import ModelError
from tests.conftest import VIDEOS, run_in_threads

MAX_BATCH = 4
BATCHES = (1, 3, MAX_BATCH + 1)
CLIP = "3ddfa_obama.mp4"

# (id, backend name, options, tolerance, needs GPU)
CASES = [
    ("onnxruntime-cpu", "onnxruntime", {}, 1e-4, False),
    ("onnxruntime-cpu-fp16", "onnxruntime", {"precision": "fp16"}, 2e-2, False),
    ("torch-cpu", "torch", {}, 1e-4, False),
    ("torch-cuda", "torch-cuda", {"device": "cuda"}, 1e-4, True),
    ("torch-cuda-graphs", "torch-cuda", {"device": "cuda", "cuda_graphs": True}, 1e-4, True),
    ("torch-cuda-fp16", "torch-cuda", {"device": "cuda", "precision": "fp16"}, 2e-2, True),
    ("onnxruntime-cuda", "onnxruntime-cuda", {}, 1e-4, True),
    ("onnxruntime-cuda-fp16", "onnxruntime-cuda", {"precision": "fp16"}, 2e-2, True),
    ("tensorrt-fp32", "tensorrt", {"precision": "fp32"}, 1e-4, True),
    ("tensorrt-fp16", "tensorrt", {"precision": "fp16"}, 2e-2, True),
]


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    """Keep converted graphs / engines out of the real user cache."""
    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path_factory.getbasetemp() / "facecycle_cache"))


@pytest.fixture(scope="module")
def contract_model(tiny_export, tmp_path_factory):
    """(model, dir): the tiny_export model with non-degenerate flows, exported, plus safetensors weights.

    A randomly initialised motion decoder outputs flows of ~1e-5, which would make
    any absolute tolerance on flow/backflow/intensity meaningless; the last flow
    conv is rescaled so real crops give flows of a few tenths (as a trained model does).
    """
    import copy

    torch = pytest.importorskip("torch")
    from facecycle.checkpoint import save_checkpoint
    from facecycle.export import export_onnx

    model = copy.deepcopy(tiny_export[0]).eval()
    conv = model.exptoflow.toflow4[3]
    with torch.no_grad():
        x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        conv.weight.mul_(0.3 / float(model.analyze(x).flow.abs().max()))
    d = tmp_path_factory.mktemp("tiny_contract")
    export_onnx(model, d, source="random:tiny:flow-rescaled")
    save_checkpoint(model, d / "model.safetensors")
    return model, d


@pytest.fixture(scope="module")
def model_dir(contract_model):
    return contract_model[1]


@pytest.fixture(scope="module")
def reference(contract_model):
    """Real inputs and the PyTorch fp32 reference outputs of every graph at batch 5."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    from facecycle.preprocess import to_input
    from tests.realdata import center_face_crops

    p = VIDEOS / CLIP
    if not p.is_file():
        pytest.skip(f"{p} is absent (../shared not mounted); contract tests need real face crops")
    model, _ = contract_model
    x = to_input(center_face_crops(p, MAX_BATCH + 1, model.config.image_size))
    with torch.no_grad():
        a = model.analyze(torch.from_numpy(x))
        neutral = model.Swap_Generator(torch.from_numpy(x), a.flow)
        image = model.Swap_Generator(neutral, a.backflow)
    inputs = {"analyze": {"image": x},
              "neutralize": {"image": x, "flow": a.flow.numpy()},
              "reexpress": {"neutral": neutral.numpy(), "backflow": a.backflow.numpy()}}
    outputs = {"analyze": {k: getattr(a, k).numpy() for k in ("feature", "code", "flow", "backflow", "intensity")},
               "neutralize": {"neutral": neutral.numpy()}, "reexpress": {"image": image.numpy()}}
    assert float(np.abs(a.flow.numpy()).max()) > 0.05, "degenerate reference: flows are ~zero"
    return inputs, outputs


def _open(case, model_dir, request):
    cid, name, opts, tol, gpu = case
    ok, why = check(canonical(name), default_probes(), model_dir, opts)
    if not ok:
        pytest.skip(f"{cid}: {why}")
    if gpu and not request.config.getoption("--cuda"):
        pytest.skip(f"{cid}: GPU case, available here but only run with --cuda")
    extra = {"profile": (1, 2, MAX_BATCH)} if name == "tensorrt" else {"max_batch": MAX_BATCH}
    return open_backend(model_dir, name, **opts, **extra)


def _params(cases):
    return [pytest.param(c, id=c[0], marks=[pytest.mark.gpu] if c[4] else []) for c in cases]


@pytest.mark.parametrize("case", _params(CASES))
def test_backend_matches_pytorch_reference(case, model_dir, reference, request):
    inputs, outputs = reference
    tol = case[3]
    with _open(case, model_dir, request) as be:
        assert be.max_batch == MAX_BATCH
        assert set(be.graphs) >= {"analyze", "neutralize", "reexpress"}
        assert be.precision == case[2].get("precision", "fp32")
        for graph in ("analyze", "neutralize", "reexpress"):
            for b in BATCHES:
                got = be.run(graph, {k: v[:b] for k, v in inputs[graph].items()})
                assert set(got) == set(outputs[graph])
                for k, ref in outputs[graph].items():
                    assert got[k].dtype == np.float32 and got[k].shape == ref[:b].shape, (graph, k, b)
                    err = float(np.abs(got[k] - ref[:b]).max())
                    # untrained generators output values ~1e1..1e2: the tolerance scales with max(1, |ref|)
                    lim = tol * max(1.0, float(np.abs(ref).max()))
                    assert err <= lim, f"{case[0]} {graph}.{k} batch {b}: max abs err {err:.3g} > {lim:.3g}"


@pytest.mark.parametrize("case", _params([c for c in CASES if c[0] in ("onnxruntime-cpu", "torch-cpu",
                                                                        "torch-cuda", "tensorrt-fp32")]))
def test_zero_copy_torch_path(case, model_dir, reference, request):
    torch = pytest.importorskip("torch")
    inputs, outputs = reference
    with _open(case, model_dir, request) as be:
        dev = "cuda" if case[4] else "cpu"
        x = torch.from_numpy(inputs["analyze"]["image"]).to(dev)
        got = be.run_torch("analyze", {"image": x})
        assert isinstance(got["code"], torch.Tensor) and got["code"].device.type == dev
        assert float((got["code"].cpu() - torch.from_numpy(outputs["analyze"]["code"])).abs().max()) <= 1e-4


def test_onnxruntime_is_thread_safe(model_dir, reference):
    """One ORT backend shared by 4 threads gives exactly the serial results."""
    inputs, _ = reference
    with open_backend(model_dir, "onnxruntime", max_batch=MAX_BATCH, intra_op_threads=1) as be:
        want = be.run("analyze", inputs["analyze"])["code"]
        results, errs = run_in_threads(lambda: be.run("analyze", inputs["analyze"])["code"], threads=4, calls=5)
    assert not errs and len(results) == 20
    assert all(np.array_equal(r, want) for r in results)


def test_empty_batch_and_bad_inputs(model_dir):
    with open_backend(model_dir, "onnxruntime") as be:
        out = be.run("analyze", {"image": np.zeros((0, 3, 32, 32), np.float32)})
        assert out["code"].shape == (0, 16) and out["flow"].shape == (0, 2, 16, 16)
        with pytest.raises(ValueError, match="expected \\[3, 32, 32\\]"):
            be.run("analyze", {"image": np.zeros((1, 3, 64, 64), np.float32)})
        with pytest.raises(ModelError, match="graph 'nope' not in"):
            be.run("nope", {})


def test_describe_and_auto_choice(model_dir, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        be = open_backend(model_dir)  # auto: ORT CPU on this machine (TensorRT/ORT-CUDA where present)
    with be:
        d = be.describe()
        assert d["backend"] in ("tensorrt", "onnxruntime") and d["graphs"] == sorted(be.graphs)
        assert "auto:" in be.choice.reason
    assert "auto:" in caplog.text


# ------------------------------------------------------------------------------ corrupt / missing files
@pytest.fixture()
def broken_dir(model_dir, tmp_path):
    d = tmp_path / "broken"
    shutil.copytree(model_dir, d)
    return d


def test_truncated_onnx_is_a_model_error(broken_dir):
    f = broken_dir / "analyze.onnx"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    with open_backend(broken_dir, "onnxruntime") as be:
        with pytest.raises(ModelError, match="analyze.onnx: sha256 .* does not match the manifest.*truncated"):
            be.run("analyze", {"image": np.zeros((1, 3, 32, 32), np.float32)})
    # without the checksum, ONNX Runtime's own failure still becomes one clear ModelError
    with open_backend(broken_dir, "onnxruntime", verify=False) as be:
        with pytest.raises(ModelError, match="analyze.onnx: ONNX Runtime cannot load this graph"):
            be.run("analyze", {"image": np.zeros((1, 3, 32, 32), np.float32)})


def test_garbage_onnx_and_missing_files(broken_dir):
    (broken_dir / "neutralize.onnx").write_bytes(b"this is not a protobuf" * 10)
    (broken_dir / "reexpress.onnx").unlink()
    with open_backend(broken_dir, "onnxruntime", verify=False) as be:
        with pytest.raises(ModelError, match="neutralize.onnx: ONNX Runtime cannot load"):
            be.run("neutralize", {"image": np.zeros((1, 3, 32, 32), np.float32),
                                  "flow": np.zeros((1, 2, 16, 16), np.float32)})
        with pytest.raises(ModelError, match="reexpress.onnx: graph file missing"):
            be.warmup(graphs=["reexpress"])


def test_corrupt_manifest_and_torch_weights(broken_dir):
    (broken_dir / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ModelError):
        open_backend(broken_dir, "torch")
    (broken_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="corrupt manifest"):
        open_backend(broken_dir, "onnxruntime")


def test_torch_weights_must_match_manifest_config(model_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from facecycle.checkpoint import save_checkpoint
    from facecycle.config import get_config
    from facecycle.model import FaceCycle

    other = FaceCycle(get_config("tiny").replace(code_dim=8)).eval()
    ck = tmp_path / "other.safetensors"
    save_checkpoint(other, ck)
    with pytest.raises(ModelError, match="config differs in code_dim"):
        open_backend(model_dir, "torch", checkpoint=str(ck))
    del torch


def test_torch_weights_without_identity_modules_offer_no_identity_graph(model_dir, tmp_path):
    """A motion-stage checkpoint over a folder whose manifest lists `identity`: the graph was offered and calling
    it raised a bare RuntimeError."""
    pytest.importorskip("torch")
    from facecycle.checkpoint import save_checkpoint
    from facecycle.model import MOTION_MODULES, FaceCycle

    ck = tmp_path / "motion.safetensors"
    save_checkpoint(FaceCycle("tiny", modules=MOTION_MODULES).eval(), ck)
    b = open_backend(model_dir, "torch", checkpoint=str(ck))
    try:
        assert "identity" not in b.graphs and "analyze" in b.graphs
        with pytest.raises(ModelError, match="graph 'identity' not in"):
            b.run("identity", {"image": np.zeros((1, 3, 32, 32), np.float32)})
    finally:
        b.close()


def test_cli_errors_are_one_line_with_exit_codes(broken_dir, capsys):
    from facecycle_cli import main

    f = broken_dir / "analyze.onnx"
    f.write_bytes(f.read_bytes()[:1000])
    rc = main(["bench", "engines", "--model", str(broken_dir), "--backend", "onnxruntime", "--baseline", "none",
               "--batch", "1", "--repeats", "1", "--json", str(broken_dir / "b.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 5 and len(err) == 1 and "sha256" in err[0]
    if not check("tensorrt", default_probes())[0]:  # machines without TensorRT: exit 6 naming it
        rc = main(["bench", "engines", "--model", str(broken_dir), "--backend", "tensorrt", "--baseline", "none",
                   "--json", str(broken_dir / "b.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 6 and len(err) == 1 and "tensorrt" in err[0]
    with pytest.raises(SystemExit) as e:  # argparse usage errors exit 2 with one line
        main(["bench", "engines", "--model", str(broken_dir), "--batch", "0", "--json", str(broken_dir / "b.json")])
    assert e.value.code == 2 and "batch sizes must be >= 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- benchmark
def test_bench_engines_cli_writes_records(model_dir, tmp_path, capsys):
    from facecycle_cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "engines", "--model", str(model_dir), "--backend", "onnxruntime", "--baseline", "torch",
               "--batch", "1,4", "--repeats", "3", "--warmup", "1", "--json", str(out)])
    assert rc == 0
    recs = json.loads(out.read_text())
    keys = {"backend", "device", "precision", "graph", "batch", "faces_per_s", "latency_ms_p50",
            "latency_ms_p95", "baseline", "speedup_vs_baseline"}
    assert len(recs) == 4 and all(keys <= set(r) for r in recs)
    by = {(r["variant"], r["batch"]): r for r in recs}
    for b in (1, 4):
        ort, ref = by[("onnxruntime-cpu", b)], by[("torch-cpu", b)]
        assert ref["speedup_vs_baseline"] == 1.0 and ref["role"] == "baseline"
        assert ort["speedup_vs_baseline"] == pytest.approx(ort["faces_per_s"] / ref["faces_per_s"], rel=1e-2)
        assert ort["latency_ms_p95"] >= ort["latency_ms_p50"] > 0
        assert ort["faces_per_s"] == pytest.approx(b / (ort["latency_ms_p50"] / 1e3), rel=1e-2)
    assert "faces/s" in capsys.readouterr().out


def test_engine_cli_list_build_clean(model_dir, tmp_path, monkeypatch, capsys):
    from facecycle_cli import main

    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path / "cache"))
    assert main(["engine", "list"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime-cpu" in out and "(no cached TensorRT engines)" in out
    assert main(["engine", "build", "--backend", "onnxruntime", "--precision", "fp16", "--model",
                 str(model_dir), "--graphs", "analyze"]) == 0
    built = list((tmp_path / "cache" / "engines" / "onnx16").glob("*-fp16.onnx"))
    assert len(built) == 1
    capsys.readouterr()
    assert main(["engine", "list"]) == 0  # what build wrote is listed (it said "no cached engines")
    assert f"fp16 graph: {built[0].name}" in capsys.readouterr().out
    assert main(["engine", "clean"]) == 0
    # the graph and the record of its sha256 beside it
    assert "removed 2 file(s)" in capsys.readouterr().out and not built[0].exists()
    if not check("tensorrt", default_probes())[0]:
        assert main(["engine", "build", "--backend", "tensorrt", "--model", str(model_dir)]) == 6
        assert "'tensorrt' Python package is not installed" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- int8
def test_onnxruntime_int8_calibrated_on_a_real_clip(model_dir, reference):
    """Static int8 analyze graph: calibrated on centre crops of a real clip, close to fp32, cached."""
    from facecycle.errors import UsageError

    inputs, outputs = reference
    with pytest.raises(UsageError, match="calibration"):
        open_backend(model_dir, "onnxruntime", precision="int8")
    clip = VIDEOS / CLIP
    with open_backend(model_dir, "onnxruntime", precision="int8", calibration=str(clip)) as be:
        got = be.run("analyze", inputs["analyze"])
        path = be.graph_path("analyze")
        assert "onnx8" in str(path) and path.name.endswith("-int8.onnx")
        assert be.graph_path("neutralize").name == "neutralize.onnx"  # generator graphs stay fp32
        # the sidecar says which crops calibrated it: the hash in the cached graph's name
        d = be.describe()
        assert d["calibration"] == str(clip) and d["calibration_crops_sha256"][:12] in path.name
    import onnx

    g = onnx.load(str(path)).graph
    ops = {n.op_type for n in g.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # convolutions run in int8; a MatMul of two activations (attention) stays fp32: ONNX Runtime 1.23's quantizer
    # turned the flow to a cosine of 0.56 here with both of its operands quantized (1.32's kept it)
    made_by = {o: n for n in g.node for o in n.output}
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}

    def dequantized_activation(name):
        n = made_by.get(name)
        return n is not None and n.op_type == "DequantizeLinear" and n.input[0] not in consts \
            and not (made_by.get(n.input[0]) is not None and made_by[n.input[0]].op_type == "QuantizeLinear"
                     and made_by[n.input[0]].input[0] in consts)

    conv_in = [i for n in g.node if n.op_type == "Conv" for i in n.input[:1]]
    assert conv_in and all(made_by[i].op_type == "DequantizeLinear" for i in conv_in)
    act_matmuls = [n.name for n in g.node if n.op_type == "MatMul" and all(map(dequantized_activation, n.input))]
    assert not act_matmuls, act_matmuls
    for k in ("feature", "code", "flow"):
        a, b = outputs["analyze"][k].reshape(5, -1), got[k].reshape(5, -1)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cos.min() >= 0.98, f"int8 {k}: cosine to fp32 {cos.min():.4f}"
    with open_backend(model_dir, "onnxruntime", precision="int8", calibration=str(clip)) as be:
        assert be.graph_path("analyze") == path  # reused from the cache, not re-quantized


def test_unnamed_nodes_are_named_before_an_exclusion_list_names_them(tmp_path):
    """ONNX Runtime's quantizer matches ``nodes_to_exclude`` by name: an unnamed attention MatMul gave "" in the list,
    which would have kept every unnamed Conv in fp32 too (a graph from another exporter)."""
    import onnx
    from onnx import TensorProto, helper

    from engines.quantize import _activation_matmuls, _name_nodes

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["a", "a"], ["b"]),
         helper.make_node("Relu", ["b"], ["y"], name="Relu_fc0")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], [w])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(g), str(path))
    _name_nodes(path)
    names = [n.name for n in onnx.load(str(path)).graph.node]
    assert all(names) and len(set(names)) == 3 and names[2] == "Relu_fc0"
    assert _activation_matmuls(path) == [names[1]]  # the MatMul of two activations only, by its new name


@pytest.mark.parametrize("field, value", [("feature_flip", True), ("detail_px", 16), ("crop_scale", 1.0),
                                          ("gray_input", True), ("encoder_width", 2.0), ("mean", (0.5, 0.5, 0.5))])
def test_torch_weights_must_match_every_config_field(model_dir, tmp_path, field, value):
    """Only the sizes were compared: weights of a feature_flip / detail_px / gray_input / ... model ran in a folder
    whose graphs compute something else."""
    pytest.importorskip("torch")
    from facecycle.checkpoint import save_checkpoint
    from facecycle.config import get_config
    from facecycle.model import FaceCycle

    ck = tmp_path / "other.safetensors"
    save_checkpoint(FaceCycle(get_config("tiny").replace(**{field: value})).eval(), ck)
    with pytest.raises(ModelError, match=f"config differs in {field}"):
        open_backend(model_dir, "torch", checkpoint=str(ck))
    same = tmp_path / "same.safetensors"  # the name alone may differ
    save_checkpoint(FaceCycle(get_config("tiny").replace(name="renamed")).eval(), same)
    open_backend(model_dir, "torch", checkpoint=str(same)).close()


def _edit_manifest(d, fn):
    p = d / "manifest.json"
    man = json.loads(p.read_text())
    fn(man)  # edits in place
    p.write_text(json.dumps(man))


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["graphs"]["analyze"].pop("file"), "graph 'analyze' names no file"),
    (lambda m: m["graphs"]["analyze"].pop("inputs"), "graph 'analyze' has no inputs list"),
    (lambda m: m["graphs"]["analyze"]["outputs"][0].pop("name"), "bad outputs entry"),
    (lambda m: m["graphs"].__setitem__("analyze", ["x"]), "graph 'analyze' is a JSON list"),
    (None, "not a FaceCycle ONNX manifest"),  # a JSON list
    (lambda m: m.__setitem__("config", [1]), "'config' is a JSON list"),
    (lambda m: m["input"].__setitem__("mean", "abc"), "'input' needs"),
    (lambda m: m["graphs"]["analyze"].__setitem__("file", "../elsewhere/analyze.onnx"), "leaves the model folder"),
    (lambda m: m["graphs"]["analyze"].__setitem__("file", "/abs/analyze.onnx"), "leaves the model folder"),
])
def test_malformed_manifest_is_a_model_error(broken_dir, edit, match):
    """A manifest entry without "file" or "inputs", a manifest that is a JSON list, a graph file outside the folder
    gave KeyError / AttributeError (internal errors) or read files elsewhere."""
    if edit is None:
        (broken_dir / "manifest.json").write_text("[1, 2]")
    else:
        _edit_manifest(broken_dir, edit)
    with pytest.raises(ModelError, match=match):
        open_backend(broken_dir, "onnxruntime")


def test_manifest_output_names_must_be_the_graphs(broken_dir):
    """An output renamed in the manifest failed only when run, with ONNX Runtime's own error."""
    _edit_manifest(broken_dir, lambda m: m["graphs"]["analyze"]["outputs"][0].__setitem__("name", "feat"))
    with open_backend(broken_dir, "onnxruntime") as be:
        with pytest.raises(ModelError, match="graph outputs .* do not match the manifest"):
            be.warmup(graphs=["analyze"])


def test_a_manifest_without_crop_scale_warns(broken_dir, caplog):
    """The framing fell back to 1.7 without a word."""
    import logging

    from realtime.inference import FaceInference

    _edit_manifest(broken_dir, lambda m: m["config"].pop("crop_scale"))
    with open_backend(broken_dir, "onnxruntime") as be, caplog.at_level(logging.WARNING, logger="realtime.inference"):
        assert FaceInference(be).crop_scale == 1.7
    assert "no config.crop_scale" in caplog.text and str(broken_dir) in caplog.text
    caplog.clear()
    _edit_manifest(broken_dir, lambda m: m["config"].__setitem__("crop_scale", 1.7))
    with open_backend(broken_dir, "onnxruntime") as be, caplog.at_level(logging.WARNING, logger="realtime.inference"):
        FaceInference(be)
    assert "crop_scale" not in caplog.text


# ------------------------------------------------------------------------------------------- security probe
@pytest.mark.parametrize("sha", ["../../../x/", "", "ab" * 31, "zz" * 32, 42])
def test_a_manifest_sha256_that_is_not_64_hex_digits_is_a_model_error(broken_dir, tmp_path, monkeypatch, capsys,
                                                                       sha):
    """A manifest sha256 of '../../../x/' (with verify=False) had a cached fp16 graph written outside the cache: the
    sha256 names cache files. Only 64 hex digits (any case) or null are accepted."""
    from facecycle_cli import main

    cache = tmp_path / "deep" / "er" / "cache"
    monkeypatch.setenv("FACECYCLE_CACHE", str(cache))
    _edit_manifest(broken_dir, lambda m: m["graphs"]["analyze"].__setitem__("sha256", sha))
    with pytest.raises(ModelError, match=r"manifest\.json: graph 'analyze' \(analyze\.onnx\) has a bad sha256"):
        open_backend(broken_dir, "onnxruntime", precision="fp16", verify=False)
    assert main(["engine", "build", "--backend", "onnxruntime", "--precision", "fp16", "--model", str(broken_dir),
                 "--graphs", "analyze"]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has a bad sha256" in err[0] and str(broken_dir / "manifest.json") in err[0]
    assert not (tmp_path / "deep" / "x").exists() and not list(tmp_path.rglob("*-fp16.onnx"))


def test_a_manifest_sha256_may_be_upper_case_or_null(broken_dir):
    from facecycle.files import sha256_file

    sha = sha256_file(broken_dir / "analyze.onnx")
    _edit_manifest(broken_dir, lambda m: m["graphs"]["analyze"].__setitem__("sha256", sha.upper()))
    with open_backend(broken_dir, "onnxruntime") as be:
        assert be.graphs["analyze"].sha256 == sha
        be.warmup(graphs=["analyze"])
    _edit_manifest(broken_dir, lambda m: m["graphs"]["analyze"].__setitem__("sha256", None))
    with open_backend(broken_dir, "onnxruntime", warmup=["analyze"]) as be:
        assert be.graphs["analyze"].sha256 == ""


def _set_dim(m):
    m["graphs"]["analyze"]["inputs"][0]["shape"][-1] = 16  # the graph takes 32


def _add_output(m):
    m["graphs"]["analyze"]["outputs"].append({"name": "extra", "shape": ["batch", 4]})


def _set_output_dim(m):
    m["graphs"]["analyze"]["outputs"][1]["shape"][1] += 1


def _drop_output(m):
    m["graphs"]["analyze"]["outputs"].pop()


@pytest.mark.parametrize("edit, match", [
    (_set_dim, r"graph input 'image' has shape \['batch', 3, 32, 32\], the manifest says \['batch', 3, 32, 16\]"),
    (_add_output, r"graph outputs \[.*\] do not match the manifest \[.*'extra'\]"),
    (_set_output_dim, r"graph output 'code' has shape \['batch', \d+\], the manifest says"),
    (_drop_output, r"graph outputs \[.*'intensity'\] do not match the manifest"),
])
def test_manifest_shapes_must_be_the_graphs_and_no_backend_falls_back(broken_dir, capsys, edit, match):
    """A manifest whose input is 32 where the graph takes 64 failed in ONNX Runtime's warm-up, fell back to torch,
    then "internal error: RuntimeError" (exit 1); an extra output: "internal error: zip() argument 2 is shorter".
    The session's names, count and static dims are compared with the manifest's: a ModelError naming the graph and
    the difference, exit 5, and not a reason to fall back (the folder has torch weights: torch-cpu is a candidate)."""
    from engines.select import candidates
    from facecycle_cli import main

    _edit_manifest(broken_dir, edit)
    assert [c.name for c in candidates("auto", None, broken_dir)][-2:] == ["onnxruntime-cpu", "torch-cpu"]
    with pytest.raises(ModelError, match=r"analyze\.onnx: " + match + r".*graph 'analyze' of .*manifest\.json") \
            as e:
        open_backend(broken_dir, "auto", warmup=["analyze"])
    from engines.base import GraphMismatch

    assert isinstance(e.value, GraphMismatch) and e.value.exit_code == 5
    with open_backend(broken_dir, "onnxruntime") as be:  # Python, no warm-up while opening: at the first run
        with pytest.raises(ModelError, match=match):
            be.warmup(graphs=["analyze"])
    rc = main(["bench", "engines", "--model", str(broken_dir), "--backend", "onnxruntime", "--baseline", "none",
               "--batch", "1", "--repeats", "1", "--graphs", "analyze", "--json", str(broken_dir / "b.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 5 and len(err) == 1 and "the manifest" in err[0], err



def test_an_extra_manifest_output_on_the_torch_backend_is_a_model_error(broken_dir):
    """Named explicitly, torch ran the weights' module and zipped its outputs with the manifest's: an extra output
    in the manifest was "internal error: zip() argument 2 is shorter" (exit 1)."""
    pytest.importorskip("torch")
    from engines.base import GraphMismatch

    _edit_manifest(broken_dir, _add_output)
    with pytest.raises(GraphMismatch, match=r"analyze: the weights' module gives \d+ outputs, the manifest lists"):
        open_backend(broken_dir, "torch-cpu", warmup=["analyze"])

def test_io_mismatch_treats_symbolic_dims_as_any_size():
    from engines.base import GraphSpec, io_mismatch

    spec = GraphSpec("analyze", {"file": "analyze.onnx", "inputs": [{"name": "image", "shape": ["batch", 3, 64, 64]}],
                                 "outputs": [{"name": "code", "shape": ["batch", 8]}]})
    assert io_mismatch(spec, [("image", ["N", 3, 64, 64])], [("code", [None, 8])]) is None
    assert io_mismatch(spec, [("image", [-1, 3, 64, 64])], [("code", [-1, 8])]) is None  # TensorRT's dynamic batch
    assert io_mismatch(spec, [("image", ["batch", 3, "h", "w"])], [("code", ["batch", 8])]) is None
    assert "has shape" in io_mismatch(spec, [("image", ["batch", 3, 64])], [("code", ["batch", 8])])  # rank
    assert "has shape" in io_mismatch(spec, [("image", [-1, 3, 64, 32])], [("code", [-1, 8])])
    assert "graph inputs" in io_mismatch(spec, [("img", [-1, 3, 64, 64])], [("code", [-1, 8])])
    assert "graph outputs" in io_mismatch(spec, [("image", [-1, 3, 64, 64])], [("code", [-1, 8]), ("x", [-1])])


def test_an_explicit_torch_backend_needs_no_onnx_files(broken_dir):
    """Review finding: the up-front check of the warm-up graphs, made for explicit backends too, refused a folder whose
    ONNX files torch never reads (it runs the weights, whose sha256 it checks)."""
    pytest.importorskip("torch")
    (broken_dir / "neutralize.onnx").unlink()
    with open_backend(broken_dir, "torch-cpu", warmup=["analyze", "neutralize"]) as be:
        assert "neutralize" in be.graphs
    with pytest.raises(ModelError, match="neutralize.onnx"):  # a backend that reads the graphs: said at once
        open_backend(broken_dir, "onnxruntime", warmup=["analyze", "neutralize"])


def test_the_shipped_default_gives_the_same_numbers_on_every_cpu_backend(tmp_path):
    """Probe finding (h78): the default shipped its PyTorch weights in float16 while its graphs hold float32, so
    ``--backend torch`` ran a rounded model: up to 1.35e-3 off ONNX Runtime in the feature on real crops, and an
    emotion label flipped at the 0.10 margin. The weights are float32 now, recorded (sha256) in the manifest, which
    the PyTorch backend checks; both backends agree within the contract's 1e-4 on real crops (or, without
    ../shared, on a smooth synthetic face-sized image)."""
    pytest.importorskip("torch")
    import cv2

    from facecycle.assets import default_model_dir
    from facecycle.files import sha256_file
    from facecycle.preprocess import to_input

    d = default_model_dir()
    man = json.loads((d / "manifest.json").read_text())
    assert man["weights"]["sha256"] == sha256_file(d / man["weights"]["file"])
    assert man["head"]["sha256"] == sha256_file(d / man["head"]["file"])
    size = int(man["input"]["size"])
    p = VIDEOS / CLIP
    if p.is_file():
        from tests.realdata import center_face_crops

        crops = center_face_crops(p, 5, size)
    else:  # a smooth pattern in place of faces: the rounding shows on any input
        yy, xx = np.mgrid[0:size, 0:size] / size
        crops = np.stack([cv2.GaussianBlur(((np.dstack([np.sin(6 * xx + k), np.cos(5 * yy - k), xx * yy]) + 1) * 110)
                                           .astype(np.uint8), (0, 0), 1.0) for k in range(5)])
    x = to_input(crops)
    ort_be, torch_be = open_backend(d, "onnxruntime"), open_backend(d, "torch")
    try:
        a, b = ort_be.run("analyze", {"image": x}), torch_be.run("analyze", {"image": x})
    finally:
        ort_be.close()
        torch_be.close()
    for k in ("feature", "code", "flow", "intensity"):
        err = float(np.abs(a[k] - b[k]).max())
        assert err <= 1e-4 * max(1.0, float(np.abs(a[k]).max())), (k, err)
