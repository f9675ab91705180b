"""User-supplied model files are checked when they are loaded, each fault one line naming the file (a ModelError,
exit 5), never an internal error, a stage failure later or numbers quietly put under the wrong columns: the
expression head (its classes, shapes, values and the sha256 its export recorded), the ``--vgg19-weights`` file of
``facecycle train`` (read weights-only, worded as the checkpoints are) and a ``--detector-model`` for CenterFace."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from facecycle.assets import HEAD_FILE, default_model_dir
from facecycle.errors import ModelError
from facecycle_cli import main

from .conftest import assert_one_line, process_blank_picture

EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _default_head():
    from safetensors import safe_open

    with safe_open(str(default_model_dir() / HEAD_FILE), framework="numpy") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def _write_head(path: Path, mutate=None, **meta) -> Path:
    """The shipped default head, written to ``path`` with its metadata updated by ``meta`` and its tensors passed
    through ``mutate`` (a function of the tensor dict)."""
    from safetensors.numpy import save_file

    md, t = _default_head()
    md.update(meta)
    if mutate is not None:
        mutate(t)
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(path), metadata=md)
    return path


def _default_copy(tmp_path: Path, mutate=None, **meta) -> Path:
    """A copy of the shipped default model folder, its head tampered as :func:`_write_head` does (and, as a user's
    own head would be, no longer recorded in the manifest: a recorded head of another sha256 is refused first)."""
    d = tmp_path / "model"
    shutil.copytree(default_model_dir(), d)
    if mutate is not None or meta:
        _write_head(d / HEAD_FILE, mutate, **meta)
        man = json.loads((d / "manifest.json").read_text())
        man.pop("head", None)
        (d / "manifest.json").write_text(json.dumps(man))
    return d


def _rows(n):
    def cut(t):
        t["weight"], t["bias"] = t["weight"][:n], t["bias"][:n]
    return cut


def _extra_row(t):
    t["weight"] = np.concatenate([t["weight"], t["weight"][:1]])
    t["bias"] = np.concatenate([t["bias"], t["bias"][:1]])


# ----------------------------------------------------------------------------------------------- the head: classes
@pytest.mark.parametrize("classes,mutate,says", [
    (list("abcdefg"), None, "unknown"),
    (["happy"] * 7, None, "repeats"),
    (["angry", "happy", "sad"], _rows(3), "lacks"),
    (EMOTIONS[:6] + ["bored"], None, "unknown"),
    (EMOTIONS + ["bored"], _extra_row, "8 classes"),
])
def test_a_heads_classes_must_be_the_seven_emotions_each_once(tmp_path, classes, mutate, says):
    """Seven unknown labels, or seven copies of "happy", loaded (exit 0) and their numbers went by position under
    the emotion_angry … emotion_surprise columns; three classes loaded too and `process` failed at its first face
    ("infer stage failed: IndexError", exit 7). The CSV's columns are the 7 FER-2013 emotions: a head must have
    those, each once, in any order."""
    from realtime.heads import ExpressionHead

    p = _write_head(tmp_path / HEAD_FILE, mutate, classes=json.dumps(classes))
    with pytest.raises(ModelError) as e:
        ExpressionHead.load(p)
    msg = str(e.value)
    assert str(p) in msg and says in msg and "\n" not in msg, msg


def test_a_head_listing_the_emotions_in_another_order_is_read_by_name(tmp_path):
    from realtime.heads import ExpressionHead

    _, t = _default_head()
    perm = [3, 0, 6, 1, 5, 2, 4]
    p = _write_head(tmp_path / HEAD_FILE, lambda t: t.update(weight=t["weight"][perm], bias=t["bias"][perm]),
                    classes=json.dumps([EMOTIONS[i] for i in perm]))
    x = np.random.default_rng(0).standard_normal((3, t["weight"].shape[1])).astype(np.float32)
    ref = ExpressionHead.load(default_model_dir() / HEAD_FILE)
    h = ExpressionHead.load(p)
    assert list(h.classes) == EMOTIONS
    np.testing.assert_allclose(h.predict(x), ref.predict(x), atol=1e-6)


# ------------------------------------------------------------------------------------ the head: metadata and shapes
@pytest.mark.parametrize("meta,mutate,says", [
    ({"classes": "5"}, None, "'classes'"),
    ({"classes": '"happy"'}, None, "'classes'"),
    ({"classes": "[1, 2, 3, 4, 5, 6, 7]"}, None, "'classes'"),
    ({"classes": "not json"}, None, "'classes'"),
    ({"class_bias": "[1]"}, None, "'class_bias'"),
    ({"class_bias": '{"bored": 1}'}, None, "'class_bias'"),
    ({}, lambda t: t.update(mean=t["mean"][:10]), "mean"),
    ({}, lambda t: t.update(std=t["std"][:10]), "std"),
    ({}, lambda t: t.update(std=np.zeros_like(t["std"])), "std"),
    ({}, lambda t: t.update(bias=t["bias"][:5]), "bias"),
    ({}, lambda t: t.update(weight=t["weight"][0]), "weight"),
    ({}, lambda t: t.update(weight=t["weight"][:, :, None]), "weight"),
])
def test_a_heads_metadata_and_shapes_are_checked_when_it_is_loaded(tmp_path, meta, mutate, says):
    """`classes` of "5" was an internal TypeError (from `model info` too), a `mean` of the wrong size an internal
    ValueError: each a ModelError naming the file now."""
    from realtime.heads import ExpressionHead

    p = _write_head(tmp_path / HEAD_FILE, mutate, **meta)
    with pytest.raises(ModelError) as e:
        ExpressionHead.load(p)
    msg = str(e.value)
    assert str(p) in msg and says in msg and "\n" not in msg, msg


@pytest.mark.parametrize("name,value", [("weight", np.nan), ("bias", np.inf), ("mean", -np.inf), ("std", np.nan)])
def test_a_head_with_non_finite_weights_is_refused(tmp_path, name, value):
    """NaN weights loaded (exit 0) and every row was labelled angry with empty probabilities."""
    from realtime.heads import ExpressionHead

    def spoil(t):
        t[name] = t[name].copy()
        t[name].reshape(-1)[3] = value

    p = _write_head(tmp_path / HEAD_FILE, spoil)
    with pytest.raises(ModelError, match="non-finite weights") as e:
        ExpressionHead.load(p)
    assert str(p) in str(e.value) and name in str(e.value)


@pytest.mark.parametrize("meta,mutate,says", [
    ({"classes": json.dumps(["angry", "happy", "sad"])}, _rows(3), "lacks"),
    ({"classes": "5"}, None, "'classes'"),
    ({}, lambda t: t["weight"].__setitem__((0, 0), np.nan), "non-finite"),
    ({}, lambda t: t.update(weight=t["weight"][:, :512], mean=t["mean"][:512], std=t["std"][:512]), "512-d"),
])
def test_model_info_refuses_a_bad_head_with_exit_5(tmp_path, capsys, meta, mutate, says):
    """`model info` said 0 for three classes (and `process` then failed at its first face), an internal error
    for `classes` "5"; a head made for another feature size is what `process` refuses when it loads the model."""
    d = _default_copy(tmp_path, mutate, **meta)
    capsys.readouterr()
    assert main(["model", "info", "--model", str(d)]) == 5
    assert_one_line(capsys.readouterr().err, HEAD_FILE, says)


def test_process_refuses_a_bad_head_before_reading_any_input(tmp_path, capsys):
    """Three classes: `process` read the picture and failed at its face, "infer stage failed: IndexError" (exit 7).
    Now the head is refused when the model is loaded, exit 5, and no output is made."""
    d = _default_copy(tmp_path, _rows(3), classes=json.dumps(["angry", "happy", "sad"]))
    rc, err = process_blank_picture(tmp_path, capsys, "--model", str(d))
    assert rc == 5
    assert_one_line(err, HEAD_FILE, "lacks")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.parametrize("meta,mutate,says", [
    ({"classes": "5"}, None, "'classes'"),
    ({"classes": json.dumps(EMOTIONS[:3])}, None, "3 classes"),
    ({}, lambda t: t.update(mean=t["mean"][:10]), "mean"),
    ({}, lambda t: t.update(bias=t["bias"][:5]), "bias"),
    ({}, lambda t: t["weight"].__setitem__((2, 2), np.inf), "non-finite"),
])
def test_the_probes_head_reader_checks_the_same(tmp_path, capsys, meta, mutate, says):
    """`probe eval` and `facecycle export --head` read heads with facecycle.probe.linear.load_head, which took a
    mean of the wrong size, NaN weights and `classes` "5" (TypeError later): an InputError naming the file (the
    head is their input: exit 3)."""
    from facecycle.errors import InputError
    from facecycle.probe.linear import load_head

    p = _write_head(tmp_path / HEAD_FILE, mutate, **meta)
    with pytest.raises(InputError) as e:
        load_head(p)
    msg = str(e.value)
    assert str(p) in msg and says in msg and "\n" not in msg, msg
    capsys.readouterr()
    assert main(["export", "--random-config", "tiny", "--head", str(p), "--out", str(tmp_path / "m")]) == 3
    assert_one_line(capsys.readouterr().err, str(p))
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------ the head and weights an export recorded
@pytest.fixture(scope="module")
def tiny_with_head(tmp_path_factory):
    """A tiny export (analyze only) with its weights and a random emotion head, both recorded in the manifest."""
    torch = pytest.importorskip("torch")
    from facecycle.export import export_onnx
    from facecycle.model import FaceCycle
    from facecycle.probe.linear import Head

    torch.manual_seed(0)
    model = FaceCycle("tiny").eval()
    d = model.config.feature_dim
    rng = np.random.default_rng(0)
    head = Head(rng.standard_normal((7, d)).astype(np.float32), np.zeros(7, np.float32), np.zeros(d, np.float32),
                np.ones(d, np.float32), {"task": "expression", "classes": json.dumps(EMOTIONS)})
    out = tmp_path_factory.mktemp("tiny_head") / "m"
    export_onnx(model, out, graphs=["analyze"], source="random:tiny", weights=True, head=head)
    return out


def test_an_export_records_the_sha256_of_its_weights_and_head(tiny_with_head):
    from facecycle.files import sha256_file
    from realtime.heads import ExpressionHead

    man = json.loads((tiny_with_head / "manifest.json").read_text())
    assert man["weights"]["file"] == "model.safetensors"
    assert man["weights"]["sha256"] == sha256_file(tiny_with_head / "model.safetensors")
    assert man["head"]["file"] == HEAD_FILE
    assert man["head"]["sha256"] == sha256_file(tiny_with_head / HEAD_FILE)
    assert ExpressionHead.find(tiny_with_head) is not None


def test_a_head_replaced_after_the_export_is_refused_like_a_graph(tiny_with_head, tmp_path, capsys):
    """Where the manifest records the head's sha256 and the file differs, the head was used with a warning, while
    a graph or the weights replaced so were refused: now the head is refused too, worded as a graph is."""
    from realtime.heads import ExpressionHead, save_expression_head

    d = tmp_path / "m"
    shutil.copytree(tiny_with_head, d)
    h = ExpressionHead.load(d / HEAD_FILE)
    save_expression_head(d / HEAD_FILE, h.weight * 2, h.bias)  # a sound head, but not the exported one
    with pytest.raises(ModelError, match=r"expression_head\.safetensors: sha256 .* does not match the manifest"):
        ExpressionHead.find(d)
    capsys.readouterr()
    assert main(["model", "info", "--model", str(d)]) == 5
    assert_one_line(capsys.readouterr().err, HEAD_FILE, "does not match the manifest")


def test_a_head_the_manifest_records_must_be_there(tiny_with_head, tmp_path, capsys):
    """A recorded head that is missing gave empty emotion columns without a word."""
    from realtime.heads import ExpressionHead

    d = tmp_path / "m"
    shutil.copytree(tiny_with_head, d)
    (d / HEAD_FILE).unlink()
    with pytest.raises(ModelError, match="missing"):
        ExpressionHead.find(d)
    capsys.readouterr()
    assert main(["model", "info", "--model", str(d)]) == 5
    assert_one_line(capsys.readouterr().err, HEAD_FILE, "missing")


def test_model_info_refuses_weights_replaced_after_the_export(tiny_with_head, tmp_path, capsys):
    """`model info` counted the parameters of whatever model.safetensors lay there; the PyTorch backend refuses
    weights whose sha256 is not the one the export recorded, and so does `model info` now."""
    d = tmp_path / "m"
    shutil.copytree(tiny_with_head, d)
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (d / "model.safetensors").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["model", "info", "--model", str(d)]) == 5
    assert_one_line(capsys.readouterr().err, "model.safetensors", "does not match the manifest")


def test_an_export_without_a_head_removes_an_earlier_exports_head(tiny_with_head, tmp_path):
    """export_onnx removed weights an earlier export left, but not its head, which then went unrecorded beside
    graphs of another model."""
    import torch

    from facecycle.export import export_onnx
    from facecycle.model import FaceCycle

    d = tmp_path / "m"
    shutil.copytree(tiny_with_head, d)
    torch.manual_seed(1)
    export_onnx(FaceCycle("tiny").eval(), d, graphs=["analyze"], validate=False)
    man = json.loads((d / "manifest.json").read_text())
    assert "head" not in man and "weights" not in man
    assert not (d / HEAD_FILE).exists() and not (d / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------------- --vgg19-weights
VGG19 = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
         16: (256, 256), 19: (512, 256)}


def _vgg19_state(seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (o, c) in VGG19.items():
        sd[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=g) * 0.05
        sd[f"features.{i}.bias"] = torch.randn(o, generator=g) * 0.01
    return sd


class _Marker:
    """Unpickling it would create a file (what a crafted file would do: run code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _bad_vgg_files(tmp_path):
    import torch

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"features.0.weight": _Marker(marker)}))
    keys = tmp_path / "keys.pth"
    torch.save({"foo": torch.zeros(2)}, keys)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    shape = tmp_path / "shape.pth"
    sd = _vgg19_state()
    sd["features.19.weight"] = torch.zeros(512, 128, 3, 3)
    torch.save(sd, shape)
    nan = tmp_path / "nan.pth"
    sd = _vgg19_state()
    sd["features.5.bias"][0] = float("nan")
    torch.save(sd, nan)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    return marker, {"evil": (evil, "weights-only"), "keys": (keys, "features.0.weight"),
                    "empty": (empty, "empty"), "shape": (shape, "features.19.weight"),
                    "nan": (nan, "non-finite"), "list": (listed, "state dict")}


def test_vgg19_weights_are_read_weights_only_and_worded_as_checkpoints(tmp_path):
    """A crafted pickle gave "internal error: UnpicklingError: Weights only load failed… Re-running torch.load with
    weights_only set to False will likely succeed…" (torch's advice to run the file's code), a file of other keys
    an internal ValueError, an empty one an internal EOFError. Now a CheckpointError (exit 5) worded as
    facecycle.checkpoint words an authors' checkpoint, and the crafted file's code never runs."""
    from facecycle.checkpoint import CheckpointError
    from facecycle.losses import PerceptualNet
    from facecycle.nn.vgg import load_vgg19_front

    marker, files = _bad_vgg_files(tmp_path)
    for name, (path, says) in files.items():
        with pytest.raises(CheckpointError) as e:
            load_vgg19_front(PerceptualNet(width=0.125), path)
        msg = str(e.value)
        assert str(path) in msg and says in msg and "\n" not in msg, (name, msg)
        assert "weights_only" not in msg and "False" not in msg, (name, msg)
    assert not marker.exists()


def test_authors_checkpoints_and_vgg19_weights_share_one_weights_only_reader(tmp_path, monkeypatch):
    """One reader of user-supplied torch files (facecycle.checkpoint.load_weights_only): what it refuses, and how
    it words it, is the same for --checkpoint and --vgg19-weights."""
    import facecycle.checkpoint as ck
    from facecycle.nn.vgg import read_vgg19_state

    marker, files = _bad_vgg_files(tmp_path)
    evil, _ = files["evil"]
    with pytest.raises(ck.CheckpointError) as a:
        ck.read_official_state(evil)
    with pytest.raises(ck.CheckpointError) as b:
        read_vgg19_state(evil)
    assert str(a.value) == str(b.value) and not marker.exists()
    with pytest.raises(ck.CheckpointError, match="empty file"):
        ck.read_official_state(files["empty"][0])
    calls = []
    real = ck.load_weights_only
    monkeypatch.setattr(ck, "load_weights_only", lambda p: calls.append(p) or real(p))
    with pytest.raises(ck.CheckpointError):
        read_vgg19_state(files["keys"][0])
    assert calls == [files["keys"][0]]


def test_good_vgg19_weights_load_into_the_fronts_and_the_loss_network(tmp_path):
    """The reading above is the one that loads them: into a width-1 VGG front and into the perceptual loss network,
    which gets what it got when it read the file itself; a narrower front is told it does not fit."""
    import torch

    from facecycle.checkpoint import CheckpointError
    from facecycle.config import get_config
    from facecycle.losses import PerceptualNet
    from facecycle.nn.vgg import VGGFront, load_vgg19_front

    p = tmp_path / "vgg19.pth"
    sd = _vgg19_state()
    torch.save({"state_dict": sd}, p)
    front = VGGFront(get_config("paper"))  # width 1.0
    assert load_vgg19_front(front, p) == 5
    # the keyword's earlier name (an upgrade's scripts: it was a TypeError) still works, with a deprecation warning
    with pytest.warns(DeprecationWarning, match="weights="):
        assert load_vgg19_front(front, path=p) == 5
    with pytest.raises(TypeError, match="not both"):
        load_vgg19_front(front, p, path=p)
    assert torch.equal(front.conv3_1[0].weight, sd["features.10.weight"])
    net = PerceptualNet(width=1.0, seed=3)
    assert load_vgg19_front(net, p) == 9
    ref = PerceptualNet(width=1.0, seed=3, weights=str(p))
    for (k, a), (_, b) in zip(net.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not any(q.requires_grad for q in net.parameters())
    with pytest.raises(CheckpointError, match="width 1.0"):
        load_vgg19_front(VGGFront(get_config("tiny")), p)


def _tiny_dataset(d: Path) -> Path:
    import cv2

    d.mkdir()
    rows = ["source,track,frame,x0,y0,x1,y1,file"]
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(d / f"c{i}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        rows.append(f"s.mp4,s_t{i // 2},{i},0,0,32,32,c{i}.png")
    (d / "index.csv").write_text("\n".join(rows) + "\n")
    return d


def test_train_with_bad_vgg19_weights_is_one_line_exit_5(tmp_path, capsys):
    pytest.importorskip("torch")
    data = _tiny_dataset(tmp_path / "data")
    marker, files = _bad_vgg_files(tmp_path)
    for name in ("evil", "keys", "empty"):
        path, says = files[name]
        capsys.readouterr()
        rc = main(["train", "--stage", "motion", "--data", str(data), "--config", "tiny", "--out",
                   str(tmp_path / f"run_{name}"), "--steps", "1", "--batch", "1", "--vgg19-weights", str(path),
                   "--no-progress"])
        assert rc == 5, (name, capsys.readouterr())
        err = capsys.readouterr().err
        assert_one_line(err, str(path), says)
        assert "weights_only" not in err
    assert not marker.exists()


# --------------------------------------------------------------------------------------- --detector-model centerface
def test_a_bad_centerface_model_is_a_model_error_naming_the_file(tmp_path):
    """An empty file was "internal error: ValidationError… ir_version", a graph of another kind (the model's own
    identity.onnx) "internal error: Fail: [ONNXRuntimeError]…", both exit 1."""
    from realtime.detectors import create_detector

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 50)
    cases = [(empty, "not an ONNX graph"), (junk, "not an ONNX graph"),
             (default_model_dir() / "identity.onnx", "not a CenterFace graph"),
             (default_model_dir() / "analyze.onnx", "not a CenterFace graph")]
    for path, says in cases:
        with pytest.raises(ModelError) as e:
            create_detector("centerface", str(path))
        msg = str(e.value)
        assert str(path) in msg and says in msg and "\n" not in msg, msg


def test_a_bad_centerface_model_on_the_command_line_is_exit_5(tmp_path, capsys):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path in (empty, default_model_dir() / "identity.onnx"):
        rc, err = process_blank_picture(tmp_path, capsys, "--detector", "centerface", "--detector-model", str(path))
        assert rc == 5
        assert_one_line(err, str(path))


def test_a_copy_of_the_centerface_model_is_accepted(tmp_path):
    from realtime.detectors import centerface_model_path, create_detector

    p = tmp_path / "my_centerface.onnx"
    shutil.copy(centerface_model_path(), p)
    det = create_detector("centerface", str(p))
    try:
        assert det.describe()["model"] == p.name
    finally:
        det.close()
