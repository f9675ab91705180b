"""The graphs ONNX Runtime converts into the engine cache (fp16, int8): damaged copies, concurrent builders.

Probe findings: a truncated cached int8 graph was never rebuilt (``out.is_file()`` was the only check): with
``--backend onnxruntime`` every run failed (exit 5), under ``auto`` the fallback to torch CPU replaced that error
with its own "precision must be fp32 or fp16, not 'int8'" (exit 2). And the int8 builder's temporaries had fixed
names (``X.pre.onnx``, ``X.onnx.tmp``) shared by every process, which one builder's cleanup deleted under another.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time

import numpy as np
import pytest

from engines import open_backend
from engines.probes import Probes
from facecycle.errors import ModelError

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A cache of this test's own (``$FACECYCLE_CACHE``): ``<tmp>/cache/engines/...``."""
    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "engines"


def _calib(model_dir) -> np.ndarray:
    """Normalised (16, 3, S, S) inputs for the tiny analyze graph (a test's calibration; real use takes faces)."""
    from engines import read_manifest

    s = int(read_manifest(model_dir)["graphs"]["analyze"]["inputs"][0]["shape"][-1])
    return np.random.RandomState(0).uniform(-1, 1, (16, 3, s, s)).astype(np.float32)


def _opts(precision: str, model_dir) -> dict:
    return {"precision": precision, **({"calibration": _calib(model_dir)} if precision == "int8" else {})}


def _run(be) -> dict:
    x = np.zeros((2, *[int(v) for v in be.graphs["analyze"].inputs[0]["shape"][1:]]), np.float32)
    return be.run("analyze", {"image": x})


def _only_graph(folder):
    files = sorted(folder.iterdir())
    # the graph and the record of its sha256 (``X.json``), no temporaries left behind
    assert len(files) == 2 and files[0].suffix == ".json" and files[1] == files[0].with_suffix(".onnx"), files
    return files[1]


@pytest.mark.parametrize("precision, sub", [("int8", "onnx8"), ("fp16", "onnx16")])
def test_a_truncated_cached_graph_is_rebuilt_with_a_warning(tiny_export, cache, caplog, precision, sub):
    model_dir = tiny_export[1]
    with open_backend(model_dir, "onnxruntime", **_opts(precision, model_dir)) as be:
        want = _run(be)
        path = be.graph_path("analyze")
    assert path.parent == cache / sub and path == _only_graph(cache / sub)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # a crash of the disk, a copy cut short
    with caplog.at_level(logging.WARNING, logger="engines"):
        with open_backend(model_dir, "onnxruntime", **_opts(precision, model_dir)) as be:
            got = _run(be)
            assert be.graph_path("analyze") == path
    warns = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warns) == 1, warns
    assert warns[0].startswith(f"onnxruntime: cached {precision} graph {path} cannot be loaded (")
    assert "rebuilding it from analyze.onnx" in warns[0]
    assert path.stat().st_size > len(good) // 3 and _only_graph(cache / sub) == path
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)


def test_a_rebuilt_graph_that_still_cannot_be_loaded_is_the_error(tiny_export, cache, caplog, monkeypatch):
    import engines.cache as cache_mod

    model_dir = tiny_export[1]
    with open_backend(model_dir, "onnxruntime", precision="fp16") as be:
        path = be.graph_path("analyze")
    path.write_bytes(path.read_bytes()[:1000])
    real = cache_mod.write_atomic
    monkeypatch.setattr(cache_mod, "write_atomic", lambda p, data: real(p, data[:1000]))  # every build is bad
    with caplog.at_level(logging.WARNING, logger="engines"):
        with open_backend(model_dir, "onnxruntime", precision="fp16") as be:
            with pytest.raises(ModelError, match=r"-fp16\.onnx: ONNX Runtime cannot load the fp16 graph just built "
                                                 r"from .*analyze\.onnx \(.*\); `facecycle engine clean` removes it"):
                _run(be)
    assert sum("rebuilding it" in r.getMessage() for r in caplog.records) == 1  # rebuilt once, not in a loop


def test_under_auto_a_failing_int8_graph_is_the_error_shown_not_torchs_refusal(tiny_export, tmp_path, monkeypatch):
    """The fallback to torch CPU (which has no int8) hid ONNX Runtime's real error behind "precision must be fp32
    or fp16, not 'int8'" (exit 2): a backend that cannot run the precision is no fallback."""
    import engines.quantize as q

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_export[1], model_dir)
    (model_dir / "model.safetensors").write_bytes(b"")  # torch-cpu becomes a candidate
    cpu = Probes(has_module=lambda m: m in ("onnxruntime", "torch"), gpu_name=lambda: None,
                 ort_providers=lambda: ["CPUExecutionProvider"], torch_cuda=lambda: False)

    def broken(src, *a, **kw):
        raise ModelError(f"{src}: int8 quantization failed (RuntimeError: disk on fire)")

    monkeypatch.setattr(q, "int8_onnx", broken)
    with pytest.raises(ModelError, match="int8 quantization failed .*disk on fire"):
        open_backend(model_dir, "auto", probes=cpu, warmup=["analyze"], **_opts("int8", model_dir))


def test_two_int8_builds_use_temporaries_of_their_own(tiny_export, cache, monkeypatch):
    import onnxruntime.quantization as oq

    model_dir = tiny_export[1]
    seen = []
    real = oq.quant_pre_process

    def spy(src, out, *a, **kw):
        seen.append(os.path.basename(out))
        return real(src, out, *a, **kw)

    monkeypatch.setattr(oq, "quant_pre_process", spy)
    for _ in range(2):
        with open_backend(model_dir, "onnxruntime", **_opts("int8", model_dir)) as be:
            path = be.graph_path("analyze")
        path.unlink()
    assert len(seen) == 2 and seen[0] != seen[1], seen
    assert all(f".{os.getpid()}-" in n for n in seen), seen


def test_a_build_that_runs_during_another_leaves_the_others_files_alone(tiny_export, cache, monkeypatch):
    """Builder B starts and finishes while builder A is between its pre-processing and its quantization (two
    processes, empty cache): B's cleanup deleted A's ``X.pre.onnx``, and A failed or read B's half-written file."""
    import onnxruntime.quantization as oq

    from engines.quantize import int8_onnx

    model_dir = tiny_export[1]
    src = model_dir / "analyze.onnx"
    sha = "ab" * 32
    calib = _calib(model_dir)
    real = oq.quantize_static
    started, nested = [], []

    def quantize_static(pre, out, *a, **kw):
        if not started:  # A, mid-build (the graph not yet in place): B runs from start to end, and cleans up
            started.append(pre)
            nested.append(int8_onnx(src, sha, calib))
        return real(pre, out, *a, **kw)

    monkeypatch.setattr(oq, "quantize_static", quantize_static)
    a = int8_onnx(src, sha, calib)
    assert nested == [a] and _only_graph(cache / "onnx8") == a
    import onnxruntime as ort

    ort.InferenceSession(str(a), providers=["CPUExecutionProvider"])


def test_a_killed_builders_temporaries_are_removed_a_running_ones_kept(tmp_path):
    from engines.cache import is_temporary, list_converted, remove_stale_temporaries
    from facecycle.files import temp_path

    d = tmp_path / "engines" / "onnx8"
    d.mkdir(parents=True)
    graph = d / "0123456789abcdef-0123456789ab-ort1.0-int8.onnx"
    graph.write_bytes(b"graph")
    mine = temp_path(graph)  # a build running now (this process): kept however old
    dead = d / f".{graph.name}.999999999-0badc0de.tmp"  # no such process
    fresh_dead = d / f".{graph.name}.999999998-0badc0de.tmp"  # no such process here, but written a moment ago
    old_fixed = d / (graph.stem + ".pre.onnx")  # an older builder's fixed name
    for f in (mine, dead, fresh_dead, old_fixed):
        f.write_bytes(b"half")
    hour_ago = time.time() - 7200
    for f in (mine, dead, old_fixed):
        os.utime(f, (hour_ago, hour_ago))
    assert all(is_temporary(f.name) for f in (mine, dead, fresh_dead, old_fixed)) and not is_temporary(graph.name)
    kinds = {os.path.basename(r["path"]): r["kind"] for r in list_converted(tmp_path / "engines")}
    assert kinds[graph.name] == "int8 graph" and kinds[dead.name].startswith("temporary")
    assert remove_stale_temporaries(d) == 2
    assert sorted(f.name for f in d.iterdir()) == sorted(f.name for f in (graph, mine, fresh_dead))


def test_a_plans_temporaries_in_the_cache_root_are_listed_and_cleaned(tmp_path):
    """A review's finding: a TensorRT plan is written through a temporary in the cache root, and `engine clean` and
    `engine list` looked only at `*.engine`: a killed build's plan temporary (hundreds of MB) stayed for good."""
    from engines.cache import clean_engines, engine_key, list_converted

    root = tmp_path / "engines"
    root.mkdir()
    plan = root / engine_key("analyze", "ab" * 32, "10.13.0", "NVIDIA H100", "9.0", "fp16", (1, 8, 64)).filename()
    plan.write_bytes(b"plan")
    left = root / f".{plan.name}.999999-deadbeef.tmp"
    left.write_bytes(b"half a plan")
    assert any(r["path"] == str(left) and r["kind"].startswith("temporary") for r in list_converted(root))
    n, _ = clean_engines(root)
    assert n >= 2 and not left.exists() and not plan.exists()


# ------------------------------------------------------------------------------------------- security probe
def _flip_weights(path):
    """Overwrite the largest initializer's bytes inside the graph file with 0xFF (fp16 NaN, int8 -1), in place:
    same size, same mtime, still a valid protobuf (as the probe did)."""
    import onnx

    st = path.stat()
    raw = max((t.raw_data for t in onnx.load(str(path)).graph.initializer), key=len)
    data = bytearray(path.read_bytes())
    at = data.find(raw)
    assert len(raw) > 64 and at > 0 and data.find(raw, at + 1) < 0
    data[at:at + len(raw)] = b"\xff" * len(raw)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("precision, sub", [("fp16", "onnx16"), ("int8", "onnx8")])
def test_an_altered_cached_graph_is_rebuilt_not_run(tiny_export, cache, caplog, precision, sub):
    """The probe flipped weights inside a cached fp16 graph (same mtime) and `process --precision fp16` ran it: NaN
    features. The sha256 of a converted graph is recorded beside it when written and checked before it is used."""
    model_dir = tiny_export[1]
    with open_backend(model_dir, "onnxruntime", **_opts(precision, model_dir)) as be:
        want = _run(be)
        path = be.graph_path("analyze")
    _flip_weights(path)
    with caplog.at_level(logging.WARNING, logger="engines"):
        with open_backend(model_dir, "onnxruntime", **_opts(precision, model_dir)) as be:
            got = _run(be)
            assert be.graph_path("analyze") == path
    for k in want:
        assert np.isfinite(got[k]).all(), k
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)
    warns = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warns) == 1, warns
    assert warns[0].startswith(f"onnxruntime: cached {precision} graph {path} cannot be loaded (")
    assert "recorded when it was written" in warns[0] and "rebuilding it from analyze.onnx" in warns[0]

    from engines.cache import derived_problem, derived_record
    from facecycle.files import sha256_file

    rec = json.loads(derived_record(path).read_text())
    assert rec["sha256"] == sha256_file(path) and rec["kind"] == precision and derived_problem(path) is None
    assert _only_graph(cache / sub) == path
    _flip_weights(path)
    assert "recorded when it was written" in derived_problem(path)
    # a cached graph without a record (an older FaceCycle's) is not trusted either: rebuilt once
    with open_backend(model_dir, "onnxruntime", **_opts(precision, model_dir)) as be:
        _run(be)
    derived_record(path).unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="engines"):
        with open_backend(model_dir, "onnxruntime", **_opts(precision, model_dir)) as be:
            _run(be)
    said = [r for r in caplog.records if "no sha256 was recorded" in r.getMessage()]
    assert len(said) == 1
    # an upgrade's first run: a graph without its record is an earlier version's, not damage (one WARNING a graph
    # read as such): said at INFO
    assert said[0].levelno == logging.INFO, said[0].levelname
    assert derived_problem(path) is None


class _FakeRuntime:
    """Stands in for ``trt.Runtime``: any plan deserializes."""

    def __init__(self) -> None:
        self.plans = []

    def deserialize_cuda_engine(self, plan):
        self.plans.append(plan)
        return object()


def _trt_without_tensorrt(model_dir, cache_dir):
    """A TensorRTBackend's cache logic without TensorRT or a GPU: its constructor needs both, so the attributes it
    sets are set here (a runtime that deserializes anything)."""
    import threading

    from engines.base import Backend
    from engines.tensorrt_backend import TensorRTBackend

    be = TensorRTBackend.__new__(TensorRTBackend)
    Backend.__init__(be, model_dir)
    be.trt_version, be.gpu_name, be.compute_capability = "10.13.0", "NVIDIA FakeGPU", "9.0"
    be.precision, be.fp16_mode, be.profile, be.rebuild = "fp32", "graph", (1, 8, 64), False
    be.cache_dir, be._verify, be._runtime, be._engine_files = cache_dir, True, _FakeRuntime(), {}
    be._lock, be._local, be._engines = threading.Lock(), threading.local(), {}
    return be


def test_tensorrt_checks_the_graph_before_using_a_cached_plan(tiny_export, tmp_path, cache):
    """With a cached plan the graph's sha256 was never checked: a replaced analyze.onnx ran the old engine. (The
    TensorRT backend's cache logic, without TensorRT: test_engines_tensorrt.py runs it on a GPU.)"""
    from engines.cache import engine_path
    from facecycle.files import sha256_file

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_export[1], model_dir)
    be = _trt_without_tensorrt(model_dir, cache)
    spec = be.graphs["analyze"]
    key = be.key_for(spec)
    assert key.onnx_sha256 == spec.sha256 == sha256_file(model_dir / "analyze.onnx")  # plans keyed by graph sha
    plan = engine_path(key, cache)
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"a plan built from the exported analyze.onnx")
    be._load_or_build(spec)  # the graph is the manifest's: the cached plan is used
    assert be._runtime.plans == [plan.read_bytes()]
    g = model_dir / "analyze.onnx"
    g.write_bytes(g.read_bytes()[:-10] + b"\0" * 10)  # replaced (same size)
    with pytest.raises(ModelError, match=r"analyze\.onnx: sha256 .* does not match the manifest"):
        _trt_without_tensorrt(model_dir, cache)._load_or_build(spec)
    # without a sha256 in the manifest, the plan is keyed by the file's content
    man = json.loads((model_dir / "manifest.json").read_text())
    man["graphs"]["analyze"]["sha256"] = None
    (model_dir / "manifest.json").write_text(json.dumps(man))
    be = _trt_without_tensorrt(model_dir, cache)
    assert be.key_for(be.graphs["analyze"]).onnx_sha256 == sha256_file(g) != key.onnx_sha256


class _NoCheckBackend:
    """Stands in for a backend that runs a cached engine without reading the graph (TensorRT with a plan)."""

    name = "tensorrt"

    def __new__(cls, model_dir, **kw):
        from engines.base import Backend

        class _B(Backend):
            name = "tensorrt"

            def _run(self, spec, inputs):
                return {o["name"]: np.zeros([len(next(iter(inputs.values())))] + o["shape"][1:], np.float32)
                        for o in spec.outputs}

        return _B(model_dir)


def test_an_explicit_backend_checks_the_graphs_it_warms_up(tiny_export, tmp_path, monkeypatch):
    """open_backend checked the graphs up front only under auto: `--backend tensorrt` with a cached plan ran a
    replaced analyze.onnx's old engine."""
    import engines.tensorrt_backend as trt_mod

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_export[1], model_dir)
    monkeypatch.setattr(trt_mod, "TensorRTBackend", _NoCheckBackend)
    gpu = Probes(has_module=lambda m: True, gpu_name=lambda: "NVIDIA FakeGPU",
                 ort_providers=lambda: ["CPUExecutionProvider"], torch_cuda=lambda: True)
    open_backend(model_dir, "tensorrt", probes=gpu, warmup=["analyze"]).close()
    g = model_dir / "analyze.onnx"
    g.write_bytes(g.read_bytes()[:-10] + b"\0" * 10)
    with pytest.raises(ModelError, match=r"analyze\.onnx: sha256 .* does not match the manifest"):
        open_backend(model_dir, "tensorrt", probes=gpu, warmup=["analyze"])
    open_backend(model_dir, "tensorrt", probes=gpu, warmup=["analyze"], verify=False).close()  # the way out


def _export_copy(tmp_path, name, scale=None):
    """A copy of the shipped model folder; ``scale``: its analyze graph's first float weights scaled (another export
    of the same architecture: same file name, node names and shapes, other weights), the manifest updated."""
    import onnx
    from onnx import numpy_helper

    from facecycle.assets import default_model_dir
    from facecycle.files import sha256_file

    d = tmp_path / name
    shutil.copytree(default_model_dir(), d)
    if scale is not None:
        m = onnx.load(str(d / "analyze.onnx"))
        t = next(t for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 4)
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * scale, t.name))
        onnx.save(m, str(d / "analyze.onnx"))
        man = json.loads((d / "manifest.json").read_text())
        man["graphs"]["analyze"]["sha256"] = sha256_file(d / "analyze.onnx")
        (d / "manifest.json").write_text(json.dumps(man))
    return d


def _trt_cache_path(providers):
    return next(o for p, o in (q for q in providers if not isinstance(q, str))
                if p == "TensorrtExecutionProvider")["trt_engine_cache_path"]


_EPS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_ort_tensorrt_provider_caches_engines_per_graph(tmp_path, cache, monkeypatch):
    """`--backend onnxruntime-trt` gave every model one `ort-trt` folder; the TensorRT execution provider names its
    engines by model file name, node names and versions, so `--model B` after `--model A` (both analyze.onnx, other
    weights) ran A's engine. Now a folder per graph sha256. (No TensorRT provider needed: the sessions are stand-ins
    that record the providers they are given.)"""
    import onnxruntime as ort

    from facecycle.files import sha256_file

    a, b = _export_copy(tmp_path, "a"), _export_copy(tmp_path, "b", scale=1.5)
    sha_a, sha_b = sha256_file(a / "analyze.onnx"), sha256_file(b / "analyze.onnx")
    assert sha_a != sha_b
    given = []

    def session(path, options=None, providers=None, **kw):
        given.append((path, providers))
        raise RuntimeError("a stand-in session")  # (the providers are all this test needs)

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(_EPS))
    monkeypatch.setattr(ort, "InferenceSession", session)
    for d in (a, b):
        with open_backend(d, "onnxruntime-trt", probes=Probes(
                has_module=lambda m: True, gpu_name=lambda: "NVIDIA FakeGPU", ort_providers=lambda: list(_EPS),
                torch_cuda=lambda: True)) as be:
            for g in ("analyze", "identity"):
                with pytest.raises(ModelError, match="ONNX Runtime cannot load this graph"):
                    be.session(g)
    paths = [_trt_cache_path(p) for _, p in given]
    assert paths[0] == str(cache / "ort-trt" / sha_a[:16]) and paths[2] == str(cache / "ort-trt" / sha_b[:16])
    # a folder per graph content: identity.onnx is the same file in both models, and may share its engines
    assert paths[1] == paths[3] == str(cache / "ort-trt" / sha256_file(a / "identity.onnx")[:16])
    assert len(set(paths)) == 3
    # made before the session starts: the provider's own create_directory is not recursive (a fresh cache, or one
    # after `engine clean`, has no ort-trt/)
    assert all(os.path.isdir(p) for p in paths)


def test_ort_tensorrt_provider_options_are_pure(tmp_path):
    from engines.onnxruntime_backend import provider_options

    sha_a, sha_b = "ab" * 32, "AB"[::-1].lower() * 32
    pa, pb = provider_options(_EPS, 1, sha_a, tmp_path), provider_options(_EPS, 1, sha_b, tmp_path)
    assert _trt_cache_path(pa) == str(tmp_path / "ort-trt" / sha_a[:16]) != _trt_cache_path(pb)
    assert pa[1] == ("CUDAExecutionProvider", {"device_id": 1}) and pa[2] == "CPUExecutionProvider"
    assert pa[0][1]["device_id"] == 1 and pa[0][1]["trt_engine_cache_enable"] is True
    with pytest.raises(ValueError, match="sha256"):
        provider_options(_EPS, 0, "../../x", tmp_path)


def test_engine_list_and_clean_know_the_ort_trt_layout(tmp_path, cache, capsys):
    from facecycle_cli import main

    old = cache / "ort-trt" / "TensorrtExecutionProvider_cache_sm90.timing"  # an older FaceCycle's shared folder
    new = cache / "ort-trt" / ("ab" * 8) / "TensorrtExecutionProvider_TRTKernel_graph_main_graph_123_0_0_sm90.engine"
    new.parent.mkdir(parents=True)
    for f in (old, new):
        f.write_bytes(b"engine")
    assert main(["engine", "list"]) == 0
    out = capsys.readouterr().out
    assert f"ORT TensorRT cache: {new.name}" in out and old.name in out
    assert main(["engine", "clean"]) == 0
    assert "removed 2 file(s)" in capsys.readouterr().out
    assert not (cache / "ort-trt").exists()


def test_engine_clean_and_list_never_follow_symlinks(tmp_path, cache, caplog, capsys):
    """`ln -s /some/dir <cache>/engines/onnx16; facecycle engine clean` deleted the files of /some/dir, and
    `engine list` listed them. Links are skipped (not followed, not deleted), names that are not the cache's are
    left, both reported in the log."""
    from engines.cache import engine_key
    from facecycle_cli import main

    victim = tmp_path / "some" / "dir"
    (victim / "sub").mkdir(parents=True)
    files = {victim / "important.txt": b"keep", victim / "0123456789abcdef-fp16.onnx": b"keep",
             victim / "sub" / "x.onnx": b"keep", victim / "a.engine": b"keep"}
    for f, data in files.items():
        f.write_bytes(data)
    cache.mkdir(parents=True)
    (cache / "onnx16").symlink_to(victim)
    (cache / "ort-trt").mkdir()
    (cache / "ort-trt" / ("cd" * 8)).symlink_to(victim)
    (cache / "onnx8").mkdir()
    link = cache / "onnx8" / "0123456789abcdef-0123456789ab-ort1.0-int8.onnx"
    link.symlink_to(victim / "important.txt")
    (cache / "timing").symlink_to(victim / "sub")
    plan_link = cache / engine_key("analyze", "ab" * 32, "10.13.0", "GPU", "9.0", "fp32", (1, 8, 64)).filename()
    plan_link.symlink_to(victim / "a.engine")
    notes = cache / "notes.txt"  # not a name of the cache's
    notes.write_bytes(b"mine")
    plan = cache / engine_key("analyze", "cd" * 32, "10.13.0", "GPU", "9.0", "fp32", (1, 8, 64)).filename()
    plan.write_bytes(b"plan")  # the cache's own: removed
    with caplog.at_level(logging.INFO, logger="engines"):
        assert main(["engine", "list", "--json"]) == 0
    listed, listed_log = json.loads(capsys.readouterr().out), caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="engines"):
        assert main(["engine", "clean"]) == 0
    out = capsys.readouterr().out
    assert all(f.is_file() and f.read_bytes() == data for f, data in files.items())  # nothing outside the cache
    assert [e["path"] for e in listed["engines"]] == [str(plan)] and listed["converted"] == []
    assert f"not listing {cache / 'onnx16'} (a symbolic link: not followed)" in listed_log
    assert "removed 1 file(s)" in out and "left 6 entries" in out
    assert all(p.is_symlink() for p in (cache / "onnx16", cache / "ort-trt" / ("cd" * 8), link, cache / "timing",
                                        plan_link))
    assert notes.read_bytes() == b"mine" and not plan.exists()
    for p in (cache / "onnx16", link, notes, plan_link):
        assert f"left {p} (" in caplog.text
