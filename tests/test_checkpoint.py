"""Checkpoints: the authors' layout, our safetensors format, conversion both ways."""
from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict

import pytest

torch = pytest.importorskip("torch")

from facecycle.checkpoint import (  # noqa: E402
    CheckpointError,
    detect_format,
    load_checkpoint,
    read_official_state,
    save_checkpoint,
)
from facecycle.model import MOTION_MODULES, FaceCycle  # noqa: E402


def _official_from_manifest(layout: dict, modules=None, seed: int = 0) -> dict:
    """Random tensors of the listed shapes, as the authors' torch.save'd dict."""
    g = torch.Generator().manual_seed(seed)
    return {m: OrderedDict((k, torch.randn(*shape, generator=g)) for k, shape in params.items())
            for m, params in layout["modules"].items() if modules is None or m in modules}


@pytest.fixture(scope="module")
def official_file(official_layout, tmp_path_factory):
    p = tmp_path_factory.mktemp("ckpt") / "idcode_random.tar"
    torch.save(_official_from_manifest(official_layout), p)
    return p


def test_official_identity_checkpoint_loads_every_key(official_file, official_layout):
    model = load_checkpoint(official_file)
    assert model.module_names == tuple(official_layout["modules"])
    state = read_official_state(official_file)
    sd = model.state_dict()
    for m, params in state.items():
        for k, v in params.items():
            assert torch.equal(sd[f"{m}.{k}"], v)


def test_official_motion_checkpoint_has_three_modules(official_layout, tmp_path):
    p = tmp_path / "ExpCode_random.tar"
    torch.save(_official_from_manifest(official_layout, MOTION_MODULES), p)
    model = load_checkpoint(p)
    assert model.module_names == MOTION_MODULES
    assert not model.has_identity


def test_convert_round_trip_is_bit_identical(official_file, tmp_path):
    ours = tmp_path / "m.safetensors"
    back = tmp_path / "back.tar"
    cli = [sys.executable, "-m", "facecycle", "model", "convert"]
    subprocess.run(cli + [str(official_file), str(ours)], check=True, capture_output=True)
    subprocess.run(cli + [str(ours), str(back)], check=True, capture_output=True)
    assert detect_format(ours) == "facecycle" and detect_format(back) == "official"
    a, b = read_official_state(official_file), read_official_state(back)
    assert list(a) == list(b)
    for m in a:
        assert list(a[m]) == list(b[m])
        for k in a[m]:
            assert a[m][k].dtype == b[m][k].dtype and torch.equal(a[m][k], b[m][k]), f"{m}.{k}"


def test_dataparallel_prefix_is_stripped(official_layout, tmp_path):
    sd = _official_from_manifest(official_layout, MOTION_MODULES)
    sd = {m: OrderedDict((f"module.{k}", v) for k, v in p.items()) for m, p in sd.items()}
    sd["epoch"] = 39
    p = tmp_path / "dp.tar"
    torch.save(sd, p)
    assert load_checkpoint(p).module_names == MOTION_MODULES


def test_mismatch_names_offending_keys(official_layout, tmp_path):
    sd = _official_from_manifest(official_layout, MOTION_MODULES)
    del sd["exptoflow"]["toflow4.3.weight"]
    sd["codegeneration"]["bogus.weight"] = torch.zeros(3)
    sd["Swap_Generator"]["torgb.bias"] = torch.zeros(4)
    p = tmp_path / "bad.tar"
    torch.save(sd, p)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert "exptoflow.toflow4.3.weight" in msg
    assert "codegeneration.bogus.weight" in msg
    assert "Swap_Generator.torgb.bias" in msg


def test_wrong_config_is_a_clear_error(official_file):
    with pytest.raises(CheckpointError, match="does not fit config 'small'"):
        load_checkpoint(official_file, config="small")


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    p = tmp_path / "evil.tar"
    torch.save({"codegeneration": {"x": Evil()}}, p)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(p)
    assert not (tmp_path / "pwned").exists()


def test_our_format_round_trip_and_fp16(tmp_path):
    from facecycle.model import FaceCycle

    torch.manual_seed(0)
    m = FaceCycle("tiny")
    p = save_checkpoint(m, tmp_path / "t.safetensors")
    m2 = load_checkpoint(p)
    assert m2.config == m.config
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    p16 = save_checkpoint(m, tmp_path / "t16.safetensors", dtype=torch.float16)
    assert p16.stat().st_size < p.stat().st_size * 0.6
    m3 = load_checkpoint(p16)
    w = m.state_dict()["codegeneration.conv1.0.weight"]
    assert torch.allclose(m3.state_dict()["codegeneration.conv1.0.weight"], w, atol=1e-3)


@pytest.mark.parametrize("content", [b"", b"abc", b"\x00" * 64, b"PK\x03\x04garbage"])
def test_corrupt_files_give_checkpoint_error(tmp_path, content):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    from facecycle.model import FaceCycle

    p = save_checkpoint(FaceCycle("tiny"), tmp_path / "t.safetensors")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_checkpoint(p)


def test_cli_convert_refuses_to_overwrite(official_file, tmp_path):
    out = tmp_path / "x.safetensors"
    out.write_bytes(b"keep")
    r = subprocess.run([sys.executable, "-m", "facecycle", "model", "convert", str(official_file), str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 4 and "exists" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"keep"


def test_model_info_and_convert_take_a_config_for_the_authors_layout(tmp_path, capsys):
    """`model convert` wrote a tiny model in the authors' layout that `model info --checkpoint` could not read back
    (--config was not allowed with --checkpoint); an unknown --config in convert was an internal error; --fp16 to
    the authors' layout was ignored without a word."""
    from facecycle_cli import main

    ours = tmp_path / "tiny.safetensors"
    save_checkpoint(FaceCycle("tiny").eval(), ours)
    tar = tmp_path / "tiny.tar"
    assert main(["model", "convert", str(ours), str(tar)]) == 0
    capsys.readouterr()
    bare = tmp_path / "bare.tar"  # as the authors' code writes it: no config recorded
    torch.save({m: sd for m, sd in read_official_state(tar).items()}, bare)
    assert main(["model", "info", "--checkpoint", str(bare)]) == 5
    assert "it fits --config tiny" in capsys.readouterr().err
    assert main(["model", "info", "--checkpoint", str(bare), "--config", "tiny"]) == 0
    assert "config tiny" in capsys.readouterr().out
    assert main(["model", "convert", str(tar), str(tmp_path / "x.safetensors"), "--config", "nosuch"]) == 2
    assert "unknown config" in capsys.readouterr().err
    assert main(["model", "convert", str(ours), str(tmp_path / "y.tar"), "--fp16"]) == 2
    assert "--fp16" in capsys.readouterr().err and not (tmp_path / "y.tar").exists()


def _tiny_ours(tmp_path, **cfg):
    from facecycle.config import get_config

    torch.manual_seed(0)
    m = FaceCycle(get_config("tiny").replace(**cfg)).eval()
    return m, save_checkpoint(m, tmp_path / "ours.safetensors")


def test_convert_to_the_authors_layout_keeps_our_config(tmp_path, capsys):
    """`model convert` to the authors' layout lost feature_flip, detail_px, ...: read back, the model was the
    registered config's (or paper's), computing another feature. Our config now travels in the file."""
    from facecycle_cli import main

    m, ours = _tiny_ours(tmp_path, feature_flip=True, detail_px=16, crop_scale=1.2)
    tar = tmp_path / "o.tar"
    assert main(["model", "convert", str(ours), str(tar)]) == 0
    assert "config tiny recorded" in capsys.readouterr().out
    assert list(read_official_state(tar)) == list(m.module_names)  # the modules only, as before
    back = load_checkpoint(tar)
    assert back.config == m.config
    assert main(["model", "convert", str(tar), str(tmp_path / "again.safetensors")]) == 0
    assert load_checkpoint(tmp_path / "again.safetensors").config == m.config
    assert load_checkpoint(tar, config="tiny").config.feature_flip is False  # an explicit config still wins


def _rewrite_meta(src, dst, **kw):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta, sd = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    meta.update(kw)
    save_file(sd, str(dst), metadata={k: v for k, v in meta.items() if v is not None})
    return dst


@pytest.mark.parametrize("meta, match", [
    ({"config": "{not json"}, "config is not valid JSON"),
    ({"config": "[1, 2]"}, "config is a JSON list"),
    ({"config": "UNKNOWN"}, "unknown config keys: bogus"),
    ({"config": "BADTYPE"}, "wrong type: image_size='sixty-four'"),
    ({"config": "BADMEAN"}, "bad config"),
    ({"modules": "not json"}, "'modules' metadata is not valid JSON"),
    ({"modules": '["codegeneration", "Foo"]'}, "unknown modules 'Foo'"),
    ({"modules": '{"a": 1}'}, "not a JSON list of module names"),
])
def test_malformed_metadata_is_a_checkpoint_error_naming_the_file(tmp_path, meta, match):
    """Bad JSON, unknown keys, wrong types in a safetensors checkpoint's metadata were internal errors (exit 1)."""
    import json

    from facecycle_cli import main

    m, ours = _tiny_ours(tmp_path)
    cfg = m.config.to_dict()
    special = {"UNKNOWN": dict(cfg, bogus=1), "BADTYPE": dict(cfg, image_size="sixty-four"),
               "BADMEAN": dict(cfg, mean="abc")}
    meta = {k: json.dumps(special[v]) if v in special else v for k, v in meta.items()}
    bad = _rewrite_meta(ours, tmp_path / "bad.safetensors", **meta)
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value)
    assert main(["model", "info", "--checkpoint", str(bad)]) == 5


def test_no_config_message_names_the_cli_option(tmp_path, capsys):
    from facecycle_cli import main

    _, ours = _tiny_ours(tmp_path)
    bad = _rewrite_meta(ours, tmp_path / "noconfig.safetensors", config=None)
    assert main(["model", "info", "--checkpoint", str(bad)]) == 5
    err = capsys.readouterr().err
    assert "--config NAME" in err and "authors'-layout" not in err  # our own format: no hint about the other
    assert main(["model", "info", "--checkpoint", str(bad), "--config", "tiny"]) == 0


def test_convert_write_failures_are_output_errors(tmp_path, capsys):
    """A read-only output folder: safetensors' SafetensorError and torch.save's RuntimeError were internal errors."""
    import os

    from facecycle_cli import main

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    _, ours = _tiny_ours(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for name in ("x.safetensors", "x.tar"):
            assert main(["model", "convert", str(ours), str(ro / name)]) == 4
            err = capsys.readouterr().err
            assert "cannot write" in err and len(err.strip().splitlines()) == 1, err
    finally:
        ro.chmod(0o755)


def test_save_failures_raise_output_error(tmp_path, monkeypatch):
    """The same, independent of the user: the writers fail as a read-only folder makes them fail."""
    import safetensors.torch

    from facecycle.checkpoint import save_official
    from facecycle.errors import OutputError

    m, _ = _tiny_ours(tmp_path)

    def refuse(*a, **k):
        raise safetensors.SafetensorError("Error while serializing: IoError(Os { code: 13, kind: PermissionDenied })")

    monkeypatch.setattr(safetensors.torch, "save_file", refuse)
    with pytest.raises(OutputError, match="x.safetensors: cannot write"):
        save_checkpoint(m, tmp_path / "x.safetensors")

    def refuse_torch(*a, **k):
        raise RuntimeError("File x.tar.tmp cannot be opened.")

    monkeypatch.setattr(torch, "save", refuse_torch)
    with pytest.raises(OutputError, match="x.tar: cannot write"):
        save_official(m, tmp_path / "x.tar")
    assert not list(tmp_path.glob("*.tmp"))


def test_convert_refuses_a_suffix_that_contradicts_to(tmp_path, capsys):
    """`--to official x.safetensors` wrote a torch.save file that our tools then could not read."""
    from facecycle_cli import main

    _, ours = _tiny_ours(tmp_path)
    assert main(["model", "convert", str(ours), str(tmp_path / "x.safetensors"), "--to", "official"]) == 2
    assert "x.tar" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()
    assert main(["model", "convert", str(ours), str(tmp_path / "y.tar"), "--to", "facecycle"]) == 2
    assert main(["model", "convert", str(ours), str(tmp_path / "z.bin"), "--to", "official"]) == 0


def test_saved_checkpoints_follow_the_umask(tmp_path):
    """safetensors writes through a private temporary file: checkpoints came out 0600."""
    import os

    m, ours = _tiny_ours(tmp_path)
    old = os.umask(0o022)
    try:
        p = save_checkpoint(m, tmp_path / "u.safetensors")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_the_authors_layout_hint_is_only_for_the_authors_layout(tmp_path, capsys):
    """Our own format's mismatch (its recorded config does not fit its tensors) got "an authors'-layout checkpoint
    of another config" appended."""
    import json

    from facecycle_cli import main

    m, ours = _tiny_ours(tmp_path)
    bad = _rewrite_meta(ours, tmp_path / "wrongdim.safetensors",
                        config=json.dumps(dict(m.config.to_dict(), code_dim=8)))
    assert main(["model", "info", "--checkpoint", str(bad)]) == 5
    err = capsys.readouterr().err
    assert "does not fit config" in err and "authors'-layout" not in err, err
