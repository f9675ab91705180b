"""Checkpoints: our safetensors format and the authors' released layout.

Formats
-------
* **facecycle** (ours): one ``.safetensors`` file; tensors are named
  ``<module>.<param>`` (the :class:`~facecycle.model.FaceCycle` state dict) and
  the header metadata holds ``format = "facecycle-rt"``, ``config`` (the
  config as JSON) and ``modules``. A directory holding ``model.safetensors``
  is accepted too. No pickle is involved.
* **official**: the authors' ``torch.save``'d dict ``{module_name: state_dict}``
  (``ExpCode_*.tar``: codegeneration, exptoflow, Swap_Generator; ``idcode_*.tar``:
  all five). Read with ``torch.load(weights_only=True)`` — never unpickled
  beyond tensors and plain containers. A training-state file holding such weights is
  read too: ``{"state_dict": ...}`` (a PyTorch Lightning ``.ckpt``, its keys
  ``model.<module>.<param>``) or ``{"model": ..., "optimizer": ...}``, and a flat state dict
  ``<module>.<param>`` (``model.``/``module.`` prefixes dropped); its optimizer, schedulers,
  epoch and step are skipped with an INFO line.

Every load refuses weights that are NaN or infinite (one line naming the tensor), and a
checkpoint that does not fit the config it is read with names the registered configs it
fits first (``it fits --config tiny``), then at most 3 keys of each kind.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from .config import FaceCycleConfig, get_config, list_configs
from .errors import ModelError, OutputError
from .files import fsync_dir, fsync_file, match_umask
from .jsonvalues import is_int, is_number
from .model import ALL_MODULES, FaceCycle

__all__ = [
    "CheckpointError", "detect_format", "load_checkpoint", "save_checkpoint",
    "load_official", "save_official", "read_official_state", "FORMAT_TAG", "OFFICIAL_CONFIG_KEY",
    "parse_config", "load_weights_only", "fitting_configs",
]

log = logging.getLogger(__name__)

FORMAT_TAG = "facecycle-rt"
#: the top-level entry of an authors'-layout file we write that holds our config as JSON (a string: the authors'
#: code and :func:`read_official_state` ignore entries that are not module state dicts)
OFFICIAL_CONFIG_KEY = "facecycle_config"
PathLike = Union[str, Path]


class CheckpointError(ModelError, ValueError):
    """A checkpoint file that cannot be read or does not fit the model."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _field_ok(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return is_int(value)
    if isinstance(default, float):
        return is_number(value)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple):
        return len(value) == len(default)
    return True


def parse_config(text: Any, source: str) -> FaceCycleConfig:
    """Our config from its JSON text (a checkpoint's metadata, a sidecar ``config.json``): a
    :class:`CheckpointError` naming ``source`` for bad JSON, unknown keys or values of the wrong type."""
    try:
        d = json.loads(text)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: its config is not valid JSON ({_first_line(e)})") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{source}: its config is a JSON {type(d).__name__}, not an object")
    try:
        cfg = FaceCycleConfig.from_dict(d)
    except (TypeError, ValueError) as e:  # unknown keys; mean/std that are no numbers
        raise CheckpointError(f"{source}: bad config ({_first_line(e)})") from None
    bad = [f"{f.name}={getattr(cfg, f.name)!r}" for f in dataclasses.fields(FaceCycleConfig)
           if not _field_ok(getattr(cfg, f.name), f.default)]
    if bad:
        raise CheckpointError(f"{source}: bad config (wrong type: {', '.join(bad[:5])})")
    return cfg


def _parse_modules(text: Any, source: str) -> List[str]:
    try:
        mods = json.loads(text)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: its 'modules' metadata is not valid JSON ({_first_line(e)})") from None
    if not isinstance(mods, list) or not all(isinstance(m, str) for m in mods):
        raise CheckpointError(f"{source}: its 'modules' metadata is not a JSON list of module names")
    unknown = [m for m in mods if m not in ALL_MODULES]
    if unknown:
        raise CheckpointError(f"{source}: unknown modules {', '.join(map(repr, unknown))}; known: "
                              f"{', '.join(ALL_MODULES)}")
    return mods


def _build(cfg: FaceCycleConfig, modules: List[str], source: str) -> FaceCycle:
    try:
        return FaceCycle(cfg, modules=modules)
    except Exception as e:  # noqa: BLE001 - a config whose sizes build no model (0, negative): any layer's error
        raise CheckpointError(f"{source}: its config {cfg.name!r} builds no model ({_first_line(e)})") from None


def _interrupted_note(folder: Path) -> str:
    """What the error for a model folder without its ``model.safetensors`` or ``manifest.json`` adds where an export
    was interrupted in it (graphs or an export's staging folder there, no manifest)."""
    try:
        if (folder / "manifest.json").is_file() or not any(
                f.suffix == ".onnx" or f.name.startswith(".export-") for f in folder.iterdir()):
            return ""
    except OSError:
        return ""
    return " (no manifest.json either, but an export's files: an interrupted export? re-run facecycle export)"


def detect_format(path: PathLike) -> str:
    """Return ``"facecycle"`` or ``"official"`` for an existing checkpoint path."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or directory")
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            return "facecycle"
        raise CheckpointError(f"{p}: a directory without model.safetensors{_interrupted_note(p)}")
    with open(p, "rb") as f:
        head = f.read(16)
    if len(head) < 8:
        raise CheckpointError(f"{p}: file too short to be a checkpoint ({len(head)} bytes)")
    if head[:2] == b"PK" or head[:1] == b"\x80":  # zip (torch>=1.6) or legacy pickle
        return "official"
    n = int.from_bytes(head[:8], "little")
    if 2 <= n < 100_000_000 and head[8:9] == b"{":
        return "facecycle"
    raise CheckpointError(f"{p}: neither a safetensors file nor a torch checkpoint")


def _safetensors_path(path: Path) -> Path:
    return path / "model.safetensors" if path.is_dir() else path


# ------------------------------------------------------------------ ours
def save_checkpoint(model: FaceCycle, path: PathLike, dtype: Optional[torch.dtype] = None,
                    extra: Optional[Mapping[str, str]] = None) -> Path:
    """Save ``model`` in our format (one safetensors file, config in its metadata).

    ``dtype`` (e.g. ``torch.float16``) casts floating tensors to save space.
    """
    from safetensors.torch import save_file

    path = Path(path)
    _mkdir_parent(path)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    meta = {"format": FORMAT_TAG, "config": model.config.to_json(), "modules": json.dumps(list(model.module_names))}
    if extra:
        meta.update({str(k): str(v) for k, v in extra.items()})
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(sd, str(tmp), metadata=meta)
        fsync_file(tmp)  # (the bytes on the disk before the rename: a power cut leaves the old file, not an empty one)
        tmp.replace(path)
        fsync_dir(path.parent)
        match_umask(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises SafetensorError (no OSError) for a read-only folder
        _drop(tmp)
        raise OutputError(f"{path}: cannot write ({_first_line(e)})") from None
    return path


def _drop(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _mkdir_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path.parent}: cannot create the folder ({e.strerror or e})") from None


def _read_ours(path: Path):
    from safetensors import safe_open

    p = _safetensors_path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for bad headers
        raise CheckpointError(f"{p}: unreadable safetensors file ({e})") from None
    cfg = None
    if "config" in meta:
        cfg = parse_config(meta["config"], str(p))
    side = path / "config.json" if path.is_dir() else None
    if side is not None and side.is_file():
        try:
            text = side.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{side}: unreadable ({_first_line(e)})") from None
        cfg = parse_config(text, str(side))
    return sd, cfg, meta


# -------------------------------------------------------------- official
def read_official_state(path: PathLike) -> Dict[str, Dict[str, torch.Tensor]]:
    """Read an authors' checkpoint as ``{module: state_dict}`` with ``weights_only=True``.

    ``module.`` prefixes (from ``nn.DataParallel``) are stripped. Top-level
    entries that are not module state dicts (an epoch number, say) are ignored
    with a log line. A training-state file is unwrapped: its ``state_dict`` (or
    ``model``) entry, module dicts or flat ``<module>.<param>`` keys (``model.``
    prefixes of a Lightning module dropped); its optimizer, schedulers, epoch and
    step are skipped with an INFO line.
    """
    return _read_official(path)[0]


def load_weights_only(path: PathLike) -> Any:
    """What a ``torch.save``'d file holds, read with ``torch.load(weights_only=True)`` on the CPU: tensors and plain
    containers only, no code of the file ever run. Every failure is one :class:`CheckpointError` line naming
    ``path`` (a missing or empty file, a crafted pickle, a file of another kind); never torch's own message, which
    advises ``weights_only=False``, i.e. running the file's code. The one reader of user-supplied torch files
    (authors' checkpoints here, ``facecycle train --vgg19-weights`` in :mod:`facecycle.nn.vgg`)."""
    import pickle
    import warnings

    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read ({e.strerror or _first_line(e)})") from None
    if p.is_dir():
        raise CheckpointError(f"{p}: a directory, not a torch checkpoint file")
    if size == 0:
        raise CheckpointError(f"{p}: empty file (0 bytes), not a torch checkpoint")
    try:
        with warnings.catch_warnings():  # torch's own warnings about the file: the one line below says it
            warnings.simplefilter("ignore")
            return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False, which would run the file's code
        raise CheckpointError(f"{p}: holds pickled objects or code beyond tensors, which a weights-only load "
                              "refuses (nothing of it was run); only plain state dicts are read") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for files of other kinds (EOFError, RuntimeError)
        raise CheckpointError(f"{p}: cannot read as a weights-only torch checkpoint ({_first_line(e)})") from None


#: top-level entries of a training-state file (a PyTorch Lightning ``.ckpt``, a hand-rolled ``{"model": ...,
#: "optimizer": ...}``) that hold no weight of the model: skipped with an INFO line
_TRAINING_STATE = ("optimizer", "optimizers", "optimizer_states", "optimizer_state_dict", "lr_schedulers",
                   "lr_scheduler", "scheduler", "schedulers", "scaler", "epoch", "global_step", "step", "iteration",
                   "hyper_parameters", "hparams", "callbacks", "loops", "pytorch-lightning_version", "args", "config",
                   "best_val", "loss")
#: the entries of a training-state file that hold the model's weights, in the order they are looked for
_WRAPPERS = ("state_dict", "model", "model_state_dict", "net")
#: prefixes of a whole model's flat keys: a Lightning module's attribute (``model.``), ``nn.DataParallel``'s
_PREFIXES = ("model.", "module.")
#: how many offending keys of each kind an error lists
_SHOWN = 3


def _listed(items: List[str], n: int = _SHOWN) -> str:
    """``a, b, c and 5 more``."""
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _module_dicts(d: Mapping, path: PathLike) -> Optional[Dict[str, Dict[str, torch.Tensor]]]:
    """``{module: state_dict}`` from ``d``: module state dicts at its top (the authors' layout), else flat
    ``<module>.<param>`` tensors (a whole model's state dict, ``model.``/``module.`` prefixes dropped; tensors of
    no FaceCycle module skipped with an INFO line); None where it holds neither."""
    nested = {k: v for k, v in d.items() if k in ALL_MODULES and isinstance(v, Mapping)}
    if nested:
        return {k: OrderedDict((p[7:] if isinstance(p, str) and p.startswith("module.") else p, t)
                               for p, t in v.items()) for k, v in nested.items()}
    out: Dict[str, Dict[str, torch.Tensor]] = {}
    other: List[str] = []
    for key, val in d.items():
        if not (isinstance(key, str) and isinstance(val, torch.Tensor)):
            continue
        name = key
        while name.startswith(_PREFIXES):
            name = name.split(".", 1)[1]
        mod, _, param = name.partition(".")
        param = param[7:] if param.startswith("module.") else param
        if mod not in ALL_MODULES or not param:
            other.append(key)
            continue
        sd = out.setdefault(mod, OrderedDict())
        if param in sd:
            raise CheckpointError(f"{path}: holds {mod}.{param} twice (as {key} and another key)")
        sd[param] = val
    if out and other:
        log.info("%s: ignoring %d tensors of no FaceCycle module (%s)", path, len(other), _listed(other))
    return out or None


def _read_official(path: PathLike) -> Tuple[Dict[str, Dict[str, torch.Tensor]], Mapping]:
    """(``{module: state_dict}``, the whole top-level dict) of an authors'-layout file, or of a training-state file
    that holds such weights (:data:`_WRAPPERS`)."""
    obj = load_weights_only(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of module state dicts, got {type(obj).__name__}")
    if any(k in ALL_MODULES and isinstance(v, Mapping) for k, v in obj.items()):  # the authors' layout
        out = _module_dicts(obj, path) or {}
        for key, val in obj.items():
            if key in out:
                continue
            if isinstance(val, Mapping) and key not in _TRAINING_STATE:
                raise CheckpointError(f"{path}: unknown module {key!r}; known: {', '.join(ALL_MODULES)}")
            if key != OFFICIAL_CONFIG_KEY:
                log.info("%s: ignoring top-level entry %r", path, key)
        return out, obj
    state, inner, chain = None, obj, []  # chain: the wrapper entries read, outermost first
    for _ in range(3):  # {"state_dict": ...}, {"model": {"state_dict": ...}}
        state = _module_dicts(inner, path)
        wrapper = next((k for k in _WRAPPERS if isinstance(inner.get(k), Mapping)), None)
        if state is not None or wrapper is None:
            break
        inner = inner[wrapper]
        chain.append(wrapper)
    where = "".join(f"[{k!r}]" for k in chain)
    keys = _listed([str(k) for k in obj], 8)
    if state is None:
        if chain or any(k in _TRAINING_STATE for k in obj):
            raise CheckpointError(f"{path}: a training-state wrapper, not the authors' layout, and no FaceCycle "
                                  f"modules in it{' (in ' + where + ')' if where else ''} (keys: {keys})")
        odd = next((k for k, v in obj.items() if isinstance(v, Mapping)), None)
        if odd is not None:
            raise CheckpointError(f"{path}: unknown module {odd!r}; known: {', '.join(ALL_MODULES)}")
        raise CheckpointError(f"{path}: no FaceCycle modules found (keys: {keys})")
    if chain:
        skipped = [str(k) for k in obj if k != chain[0]]
        log.info("%s: a training-state file: reading the weights in %s%s", path, where,
                 f"; ignoring {', '.join(skipped)}" if skipped else "")
    return state, obj


def save_official(model: FaceCycle, path: PathLike) -> Path:
    """Save ``model`` in the authors' layout: ``torch.save({module: state_dict})``, plus our config as JSON in the
    string entry ``facecycle_config`` (which the authors' code and :func:`read_official_state` skip), so that
    :func:`load_official` gets the whole config back (``feature_flip``, ``detail_px``, ... no weight shows)."""
    path = Path(path)
    _mkdir_parent(path)
    obj: Dict[str, Any] = {n: OrderedDict((k, v.detach().clone()) for k, v in getattr(model, n).state_dict().items())
                           for n in model.module_names}
    obj[OFFICIAL_CONFIG_KEY] = model.config.to_json()
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, str(tmp))
        tmp.replace(path)
    except Exception as e:  # noqa: BLE001 - torch.save raises RuntimeError for a read-only folder
        _drop(tmp)
        raise OutputError(f"{path}: cannot write ({_first_line(e)})") from None
    return path


def _shapes_of(cfg: FaceCycleConfig, modules: List[str]) -> Optional[Dict[str, Tuple[int, ...]]]:
    """The state dict's shapes of ``cfg``'s model of ``modules`` (built on the meta device: no memory, no time),
    or None where the config builds no such model."""
    try:
        with torch.device("meta"):
            m = FaceCycle(cfg, modules=modules)
    except Exception:  # noqa: BLE001 - a config that builds no model: it fits nothing
        return None
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def fitting_configs(flat: Mapping[str, torch.Tensor], modules: List[str]) -> List[str]:
    """The registered configs whose model of ``modules`` takes the tensors ``flat`` (``<module>.<param>``): their
    keys and shapes only (settings that change no weight, such as feature_flip or detail_px, cannot be told apart
    this way)."""
    want = {k: tuple(v.shape) for k, v in flat.items() if isinstance(v, torch.Tensor)}
    return [name for name in list_configs() if _shapes_of(get_config(name), list(modules)) == want]


def _load_into(model: FaceCycle, flat: Mapping[str, torch.Tensor], source: str, official: bool = False) -> None:
    """Load a flat state dict strictly: on a mismatch one line that names the registered configs it fits first
    (:func:`fitting_configs`), then at most :data:`_SHOWN` offending keys of each kind; refused where a weight is
    NaN or infinite, naming the tensor."""
    own = model.state_dict()
    odd = sorted(k for k, v in flat.items() if not isinstance(v, torch.Tensor))
    if odd:  # a value that is no tensor (a list, a number, None): no weight of any model
        raise CheckpointError(f"{source}: not a state dict of tensors ({', '.join(odd[:5])}"
                              f"{' …' if len(odd) > 5 else ''}: {type(flat[odd[0]]).__name__})")
    missing = sorted(set(own) - set(flat))
    unexpected = sorted(set(flat) - set(own))
    wrong = sorted(k for k in set(own) & set(flat) if tuple(own[k].shape) != tuple(flat[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_listed(unexpected)}")
        if wrong:
            parts.append(f"shape mismatch {len(wrong)}: " + _listed(
                [f"{k} {tuple(flat[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]))
        fits = [n for n in fitting_configs(flat, list(model.module_names)) if n != model.config.name]
        if fits:
            hint = f" (it fits --config {' or '.join(fits)})"
        elif official:
            hint = " (an authors'-layout checkpoint of another config? none registered fits it: give --config NAME)"
        else:
            hint = ""
        raise CheckpointError(f"{source}: checkpoint does not fit config {model.config.name!r}{hint}: "
                              + "; ".join(parts))
    bad = [k for k in own if flat[k].is_floating_point() and not bool(torch.isfinite(flat[k]).all())]
    if bad:
        raise CheckpointError(f"{source}: non-finite weights (NaN or inf) in {bad[0]}"
                              + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
                              + ": a training run that diverged? use an earlier checkpoint")
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(flat[k].to(t.dtype))


def load_official(path: PathLike, config: "FaceCycleConfig | str | None" = None) -> FaceCycle:
    """Load an authors' checkpoint: ``config`` if given, else the config a file written by :func:`save_official`
    records, else ``paper``."""
    state, obj = _read_official(path)
    if config is not None:
        cfg = get_config(config) if isinstance(config, str) else config
    elif isinstance(obj.get(OFFICIAL_CONFIG_KEY), str):
        cfg = parse_config(obj[OFFICIAL_CONFIG_KEY], str(path))
    else:
        cfg = get_config("paper")
    model = _build(cfg, list(state), str(path))
    flat = {f"{m}.{k}": v for m, sd in state.items() for k, v in sd.items()}
    _load_into(model, flat, str(path), official=True)
    return model.eval()


def load_checkpoint(path: PathLike, config: "FaceCycleConfig | str | None" = None) -> FaceCycle:
    """Load a FaceCycle model from our format or the authors' checkpoints.

    Args:
        path: a ``.safetensors`` file (ours), a directory holding
            ``model.safetensors``, or an authors' ``.tar``/``.pth`` file.
        config: overrides the config (needed for official files of a config
            other than ``paper``; ours carry their own).

    Returns:
        the model in eval mode, float32, on the CPU.

    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not fit,
            with the offending keys named.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "official":
        return load_official(path, config)
    sd, cfg, meta = _read_ours(path)
    if meta.get("format") not in (None, FORMAT_TAG):
        raise CheckpointError(f"{path}: unknown format tag {meta.get('format')!r}")
    if config is not None:
        cfg = get_config(config) if isinstance(config, str) else config
    if cfg is None:
        raise CheckpointError(f"{path}: no config recorded in the file; name its config (--config NAME on the "
                              "command line, config=NAME in Python)")
    if "modules" in meta:
        modules = _parse_modules(meta["modules"], str(path))
    else:
        modules = sorted({k.split(".")[0] for k in sd})
        unknown = [m for m in modules if m not in ALL_MODULES]
        if unknown:
            raise CheckpointError(f"{path}: tensors of unknown modules {', '.join(map(repr, unknown[:5]))}; known: "
                                  f"{', '.join(ALL_MODULES)}")
    model = _build(cfg, modules, str(path))
    _load_into(model, sd, str(path))
    return model.eval()
