"""A second, independent expression critic for the refit of the generator.

The refit (:mod:`.semisup`, ``train_encoder=False``) teaches the generator G that its neutral face must read
as "neutral". Its only critic used to be the shipped encoder and head, frozen: G learns what pleases that one
network, and an independent classifier agrees only part of the time (MODEL_CARD.md). Adversarial changes
transfer poorly between networks but well from an ensemble, so this module trains a second critic that shares
nothing with the shipped model: another architecture (a small VGG-style CNN), another input (grey, 48 px, like
FER-2013 itself), its own initialisation and augmentation, including blur, so that softness alone does not read
as one class. Only training uses it: it is not shipped.

Measured (MODEL_CARD.md, experiment 9): without ``detail_excess_weight`` the generator learns stripes that fool
this critic and an independent judge alike; with it the gain is within noise, so the shipped refit does not use
the critic.

    python -m facecycle.train.critic --fer ../shared/data/fer2013 --out training/critic --steps 3208

Input of :class:`StillCritic`: (B, 3, S, S) float RGB, normalised with the model's mean and std (the
generator's output as it is), any S; it converts to grey and resizes to 48 px itself. Output: (B, 7) logits in
FER-2013 order (:data:`.semisup.EMOTION_CLASSES`).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import affine_jitter, brightness_contrast, normalize, random_erase, resize_blur, warp_affine
from ..errors import ModelError
from ..jsonvalues import is_finite, is_int, read_json_object
from .state import SideModule

__all__ = ["StillCritic", "CriticOptions", "train_critic", "load_critic", "critic_logits", "OnlineCritic"]

log = logging.getLogger(__name__)

#: luma weights (ITU-R BT.601), RGB order
_LUMA = (0.299, 0.587, 0.114)


class StillCritic(nn.Module):
    """Grey 48-px VGG-style expression classifier over normalised RGB input.

    Args:
        mean, std: the normalisation of the input (the FaceCycle model's ``config.mean`` / ``std``).
        widths: channels of the four conv stages (two 3×3 conv + BN + ReLU each, 2× max-pool between).
        classes: number of classes.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], widths: Sequence[int] = (16, 32, 64, 128),
                 classes: int = 7, dropout: float = 0.3, size: int = 48) -> None:
        super().__init__()
        self.size = int(size)
        self.widths = tuple(int(w) for w in widths)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("luma", torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1))
        layers = []
        c = 1
        for i, w in enumerate(self.widths):
            for _ in range(2):
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c = w
            if i < len(self.widths) - 1:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c, classes)

    def grey(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised RGB -> (B, 1, 48, 48) grey in [-0.5, 0.5] (differentiable)."""
        rgb = x * self.std + self.mean
        g = (rgb * self.luma).sum(1, keepdim=True)
        if g.shape[-1] != self.size:
            g = F.interpolate(g, size=self.size, mode="bilinear", align_corners=False,
                              antialias=g.shape[-1] > self.size)
        return g - 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.grey(x))
        return self.fc(self.drop(h.mean((2, 3))))


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _numbers(v: object, n: int, positive: bool = False) -> bool:
    """``v`` is a list of ``n`` finite numbers (> 0 with ``positive``)."""
    return isinstance(v, list) and len(v) == n and all(is_finite(x) and (x > 0 or not positive) for x in v)


def _read_meta(p: Path) -> Dict:
    """A critic's ``critic.json``, checked: an object with ``mean`` (3 finite numbers), ``std`` (3 finite numbers
    > 0) and ``widths`` (1 to 8 integers from 1 to 4096), what :class:`StillCritic` is built from; else a
    :class:`~facecycle.errors.ModelError` naming it (a JSON list was a TypeError, exit 1)."""
    meta = read_json_object(p, "critic settings", ModelError)
    widths = meta.get("widths")
    checks = {"mean": _numbers(meta.get("mean"), 3), "std": _numbers(meta.get("std"), 3, positive=True),
              "widths": isinstance(widths, list) and 1 <= len(widths) <= 8 and all(
                  is_int(w) and 1 <= w <= 4096 for w in widths)}
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ModelError(f"{p}: damaged critic settings (" + ", ".join(
            f"{k} {json.dumps(meta.get(k))}" for k in bad) + ": mean and std are 3 numbers each, widths the "
            "channels of its conv stages)")
    return meta


def load_critic(path: Path, device: str = "cpu") -> StillCritic:
    """A trained :class:`StillCritic` from ``path`` (``critic.safetensors`` + its ``critic.json``), in eval mode,
    with frozen weights."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = _read_meta(path.with_suffix(".json"))
    net = StillCritic(meta["mean"], meta["std"], meta["widths"])
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own types (SafetensorError); other sizes RuntimeError
        raise ModelError(f"{path}: not the critic its .json describes ({_first_line(e)})") from None
    net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class OnlineCritic(SideModule):
    """A loaded critic that keeps learning during a refit, so that it sees through what fools it.

    Each :meth:`step` trains it (BatchNorm statistics stay frozen: eval mode) on labelled stills, as it was
    trained, and on the generator's neutral faces labelled with the expression of their *input* (where that is
    not neutral): a neutral face that still shows the input's smile under stripes is taught to read as the
    smile. The generator then has to remove the expression to be read as neutral. Saved beside a run
    (``critic_online.safetensors``: weights and Adam state).
    """

    FILE = "critic_online.safetensors"

    def __init__(self, net: StillCritic, lr: float = 1e-4) -> None:
        self.net = self.module = net.eval()
        for p in net.parameters():
            p.requires_grad_(True)
        self.opt = torch.optim.Adam(net.parameters(), lr=lr)

    def step(self, stills: torch.Tensor, labels: torch.Tensor, fakes: torch.Tensor,
             fake_labels: torch.Tensor) -> dict:
        """One update on (B, 3, S, S) normalised stills with their labels and (F, 3, S', S') neutral faces with
        their inputs' labels (detached; F may be 0); returns the two cross-entropies and the share of the fakes
        it reads as their input's class."""
        ls = F.cross_entropy(self.net(stills), labels)
        loss, out = ls, {"critic_still_ce": float(ls.detach())}
        if len(fakes):
            lo = self.net(fakes.detach())
            lf = F.cross_entropy(lo, fake_labels)
            loss = loss + lf
            out["critic_fake_ce"] = float(lf.detach())
            out["critic_fake_seen"] = float((lo.argmax(1) == fake_labels).float().mean())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return out


@dataclass
class CriticOptions:
    """Settings of :func:`train_critic` (written to ``critic.json``)."""

    steps: int = 3208
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup: int = 100
    label_smoothing: float = 0.1
    blur_p: float = 0.5
    seed: int = 1
    widths: Tuple[int, ...] = (16, 32, 64, 128)
    image_size: int = 64
    mean: Tuple[float, ...] = (0.5, 0.5, 0.5)
    std: Tuple[float, ...] = (0.5, 0.5, 0.5)


def _batch(xs: torch.Tensor, ys: torch.Tensor, o: CriticOptions, g: torch.Generator
           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """A jittered, normalised batch of stills (B, 3, S, S) and their labels, as the semi-supervised stills."""
    i = torch.randint(0, len(xs), (o.batch,), generator=g)
    x = xs[i].float().div_(255.0)
    x = warp_affine(x, affine_jitter(x, g), o.image_size)
    x = brightness_contrast(x, g, 0.25, 0.3)
    if float(torch.rand((), generator=g)) < o.blur_p:  # blur a whole batch: softness must not read as a class
        small = int(torch.randint(o.image_size // 2, o.image_size, (1,), generator=g))
        x = resize_blur(x, small)
    x = random_erase(x, g, 0.5)
    return normalize(x, o.mean, o.std), ys[i]


@torch.no_grad()
def critic_logits(net: StillCritic, images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB stills -> (N, 7) logits in FER-2013 order (``net`` as it is: no mode change)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return net(normalize(x, net.mean.flatten().tolist(), net.std.flatten().tolist()))


@torch.no_grad()
def evaluate(net: StillCritic, xv: np.ndarray, yv: np.ndarray, o: CriticOptions) -> float:
    """Accuracy on (N, S, S, 3) uint8 RGB stills (``net`` normalises as ``o`` says: it was built from it)."""
    net.eval()
    correct = 0
    for i in range(0, len(xv), 512):
        correct += int((critic_logits(net, xv[i:i + 512]).argmax(1) == torch.from_numpy(yv[i:i + 512])).sum())
    net.train()
    return correct / max(1, len(xv))


def train_critic(stills: Tuple[np.ndarray, np.ndarray], val: Tuple[np.ndarray, np.ndarray], out: Path,
                 o: CriticOptions, max_seconds: Optional[float] = None) -> Dict[str, float]:
    """Train a :class:`StillCritic` on labelled stills ((N, S, S, 3) uint8 RGB, (N,) int64) into ``out``.

    Writes ``critic.safetensors``, ``critic.json`` (options, validation accuracy, steps, wall time, images/s)
    and ``log.csv``. Stops at ``o.steps`` or after ``max_seconds`` (the schedule is cut there too: the
    cosine runs over the steps that fit, estimated from the first 20).
    """
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(o.seed)
    g = torch.Generator().manual_seed(o.seed)
    xs = torch.from_numpy(stills[0]).permute(0, 3, 1, 2).contiguous()
    ys = torch.from_numpy(stills[1])
    net = StillCritic(o.mean, o.std, o.widths)
    opt = torch.optim.AdamW(net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    steps = o.steps
    t0 = time.perf_counter()
    rows = ["step,lr,loss,images_per_s,wall_s"]
    ema = None
    step = 0
    tl = t0
    while step < steps:
        lr = o.lr * (step + 1) / o.warmup if step < o.warmup else \
            0.5 * o.lr * (1 + math.cos(math.pi * (step - o.warmup) / max(1, steps - o.warmup)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        x, y = _batch(xs, ys, o, g)
        loss = F.cross_entropy(net(x), y, label_smoothing=o.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step == 20 and max_seconds:  # fit the schedule into the time given
            per = (time.perf_counter() - t0) / 20
            steps = min(steps, max(step + 1, int(max_seconds / per)))
            o.steps = steps  # what the schedule ran over (critic.json); pass it as --steps to repeat the run
            log.info("critic: %.3f s/step, %d steps fit in %.0f s", per, steps, max_seconds)
        if step % 50 == 0 or step == steps:
            now = time.perf_counter()
            ips = 50 * o.batch / max(1e-9, now - tl) if step % 50 == 0 else float("nan")
            tl = now
            rows.append(f"{step},{lr:.6g},{ema:.5f},{ips:.1f},{now - t0:.1f}")
            log.info("critic step %d/%d loss %.4f %.0f img/s", step, steps, ema, ips)
    wall = time.perf_counter() - t0
    acc = evaluate(net, val[0], val[1], o)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "critic.safetensors"))
    meta = {"widths": list(o.widths), "mean": list(o.mean), "std": list(o.std), "options": asdict(o),
            "steps": step, "wall_s": round(wall, 1), "images_per_s": round(step * o.batch / wall, 1),
            "val_acc": round(acc, 4), "val_images": int(len(val[0])),
            "torch_threads": torch.get_num_threads()}
    (out / "critic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out / "log.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"val_acc": acc, "steps": step, "wall_s": wall}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..config import get_config
    from ..probe.run import load_stills

    ap = argparse.ArgumentParser(prog="python -m facecycle.train.critic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fer", required=True, help="FER-2013 root (<DIR>/train/<class>/*)")
    ap.add_argument("--out", required=True, help="output folder (critic.safetensors, critic.json, log.csv)")
    ap.add_argument("--config", default="rt64w", help="the FaceCycle config whose input size and mean/std the "
                                                      "critic reads (default rt64w)")
    ap.add_argument("--steps", type=int, default=3208, help="length of the schedule (default: the committed "
                                                           "critic's, training/critic)")
    ap.add_argument("--minutes", type=float, default=None, help="fit the schedule into this many minutes")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = get_config(a.config)
    stills, val = load_stills(Path(a.fer), cfg.image_size)
    o = CriticOptions(steps=a.steps, seed=a.seed, image_size=cfg.image_size, mean=tuple(cfg.mean),
                      std=tuple(cfg.std))
    r = train_critic(stills, val, Path(a.out), o, a.minutes * 60 if a.minutes else None)
    print(f"critic: val acc {r['val_acc']:.4f} after {r['steps']} steps, {r['wall_s'] / 60:.1f} min; {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
