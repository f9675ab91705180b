"""The annotators: boxes + ids, landmarks, pose axes, the face panel (emotion bars, intensity gauge,
neutral-face thumbnail), and the neutralized view (neutral face pasted back)."""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Tuple

import cv2
import numpy as np

from ..crops import paste_square
from ..pose import euler_to_rotation
from ..types import EMOTIONS
from .base import Annotator, color_for
from .layout import (
    MIN_TEXT_PX,
    TextMetrics,
    fits,
    inset,
    label_candidates,
    metrics_for_px,
    panel_candidates,
    place_label,
    place_panel,
    shade,
    tag_rect,
    text_metrics,
)

__all__ = ["BoxAnnotator", "LandmarkAnnotator", "PoseAxesAnnotator", "FacePanelAnnotator", "Placement",
           "NeutralizedFaceAnnotator", "InfoAnnotator"]


def _thick(image: np.ndarray) -> int:
    return max(1, int(round(max(image.shape[:2]) / 500)))


def _face_thick(image: np.ndarray, box) -> int:
    """A stroke for one face's marks: the frame's (:func:`_thick`), at most a 60th of the face's width. Sized by the
    frame alone, a 105-px face in a 4K frame had 8-px box lines and 20-px landmark dots that hid its eyes."""
    w = float(box[2] - box[0]) if np.all(np.isfinite(box[:4])) else 0.0
    return max(1, min(_thick(image), int(round(w / 60))))


class BoxAnnotator(Annotator):
    """Face boxes with an ``#id`` tag inside the frame (the face panel shows the emotion)."""

    def annotate(self, image, packet):
        m = text_metrics(image)
        for f in packet.faces:
            c = color_for(f.track_id)
            x1, y1, x2, y2 = (int(round(v)) for v in f.box)
            cv2.rectangle(image, (x1, y1), (x2, y2), c, _face_thick(image, f.box), cv2.LINE_AA)
            label = f"#{f.track_id}"
            tx1, ty1, tx2, ty2 = tag_rect(image, f.box, label, m)
            cv2.rectangle(image, (tx1, ty1), (tx2, ty2), c, -1)
            m.put(image, label, (tx1 + m.pad // 2, ty1), (0, 0, 0))
        return image


class LandmarkAnnotator(Annotator):
    """The 5 landmarks as dots."""

    def annotate(self, image, packet):
        for f in packet.faces:
            if not np.all(np.isfinite(f.landmarks)):  # a detector without landmarks
                continue
            r = _face_thick(image, f.box) + 1
            for x, y in f.landmarks:
                cv2.circle(image, (int(round(x)), int(round(y))), r, (0, 255, 255), -1, cv2.LINE_AA)
        return image


class PoseAxesAnnotator(Annotator):
    """Head-pose axes drawn from the nose: x red, y green, z (facing direction) blue."""

    def __init__(self, length: float = 0.5) -> None:
        self.length = length  # fraction of the face box width

    def annotate(self, image, packet):
        for f in packet.faces:
            if f.pose is None or not np.all(np.isfinite(f.pose)):
                continue
            t = _face_thick(image, f.box) + 1
            R = euler_to_rotation(f.pose)
            L = (f.box[2] - f.box[0]) * self.length
            axes = R @ (np.eye(3) * L)  # columns: rotated x, y, z axes (camera coords, pixels at depth f)
            nose = f.landmarks[2]
            for k, col in ((0, (0, 0, 255)), (1, (0, 255, 0)), (2, (255, 0, 0))):
                v = axes[:, k]
                if k == 2:
                    v = -v  # the face looks towards the camera (-z)
                end = (int(round(nose[0] + v[0])), int(round(nose[1] + v[1])))
                cv2.arrowedLine(image, (int(nose[0]), int(nose[1])), end, col, t, cv2.LINE_AA, tipLength=0.15)
        return image


class Placement(NamedTuple):
    """Where :class:`FacePanelAnnotator` put one face's overlay: ``index`` into ``packet.faces``, ``kind``
    ``"panel"`` (the full panel) or ``"label"`` (the compact one), ``rect`` (x1, y1, x2, y2) in frame pixels,
    ``px`` its text's cap height, ``clear`` whether it keeps off the other faces, their tags and the other
    overlays (False only for a label that found no such place)."""

    index: int
    kind: str
    rect: Tuple[int, int, int, int]
    px: int
    clear: bool


class FacePanelAnnotator(Annotator):
    """One info panel per face: ``#id`` and top emotion, the 7 emotion bars, the intensity gauge and (with
    neutralize) the neutral-face thumbnail, laid out by :mod:`realtime.annotators.layout`.

    The panel keeps a legible text size whatever the face size (at least ~9 px text on a 256-px frame), has
    a translucent dark background so it reads over hair or background, and is placed beside the face where
    it fits, else in a frame corner near the face (close-ups), where it covers the least of the face and its tag.

    With several faces (a video-call gallery) no panel may cover another face's box (beyond a :attr:`RIM`),
    another face's ``#id`` tag or another overlay, more than :attr:`OWN_MAX` of its own face, land further
    than :attr:`MAX_GAP` panel sizes from its face, or nearer to another face than to its own. Where the
    frame-sized panel has no such place, smaller ones are tried (text down to 9 px, at most
    :attr:`MAX_FACE_RATIO` times as tall as the face, off its own face and tag too), and where none fits, a compact
    label attached to the face's box: ``#id emotion`` on the track's colour and the intensity as a bar, its text
    sized by the face (an eighth of its height, 9 px at least). Faces are served the frame-sized panel first (in
    the packet's order), then the smaller sizes, then labels. With one face, and with a few that have room, the
    panels are as large as they always were, and nearly always where they were (13 of 400 random single faces
    moved: a corner far from the face, or one over its own tag, gave way to a place beside it that hides less).

    ``steady``: with two faces or more, each keeps the kind, size and side of overlay it had on the previous frame
    drawn while that still keeps the rules, so that a crowd's overlays do not flicker between sizes and sides as
    the boxes jitter (a single face always gets the first choice); one kept smaller gets a frame-sized panel again
    where one fits with :attr:`UPGRADE_MARGIN` to spare, and another source, or a frame index that does not move
    on (the app's cached annotator on the next picture), is planned afresh.

    Args:
        emotions: the emotion rows (skipped for faces without an expression head).
        intensity: the expression-intensity gauge row, relative to ``full_scale``.
        thumbnail: the neutral face (faces computed with neutralize only).
        full_scale: intensity shown as a full gauge.
        steady: keep each face's overlay as on the previous frame where it still fits (see above).
    """

    #: farthest a panel may be from its face, in panel sizes (its longer side)
    MAX_GAP = 0.5
    #: a panel smaller than the frame's is at most this many times as tall as its face (else: the compact label)
    MAX_FACE_RATIO = 2.0
    #: the share of another face's box, on each side, that a panel may cover (a detector's box has a margin)
    RIM = 0.05
    #: the largest share of its own face's box a frame-sized panel may cover (a close-up's panel covers a corner
    #: of it); a smaller panel keeps off its face as off the others (:attr:`RIM`), else the label is drawn
    OWN_MAX = 0.25
    #: ``steady``: an overlay kept from the previous frame may cover this much more of a face's box (each side),
    #: be this much further from its face (in :attr:`MAX_GAP`'s units) and this much nearer (in panel sizes) to
    #: another face than to its own, than a new one: boxes jitter by a few pixels
    SLACK = 0.03

    #: a face kept smaller by ``steady`` gets a frame-sized panel again where one fits with this share of its size
    #: to spare on every side (hysteresis: without it a face flipped between the two as the boxes jittered)
    UPGRADE_MARGIN = 0.25

    def __init__(self, emotions: bool = True, intensity: bool = True, thumbnail: bool = True,
                 full_scale: float = 1.0, steady: bool = True) -> None:
        self.emotions = emotions
        self.intensity = intensity
        self.thumbnail = thumbnail
        self.full_scale = full_scale
        self.steady = steady
        #: (source, frame index, {track id: (kind, text px, candidate index)}) of the last frame drawn (``steady``)
        self._last: Tuple[str, int, Dict[int, Tuple[str, int, int]]] = ("", -1, {})

    #: labels on frames whose shorter side is under 480 px (full names would cover too much of a close-up)
    SHORT = {"angry": "ang", "disgust": "dis", "fear": "fea", "happy": "hap", "neutral": "neu", "sad": "sad",
             "surprise": "sur", "intensity": "int"}

    def _rows(self, f, short: bool) -> list:
        rows = []
        if self.emotions and f.emotions is not None:
            rows += [(name, float(p), None) for name, p in zip(EMOTIONS, f.emotions, strict=True)]
        if self.intensity and math.isfinite(f.intensity):
            rows.append(("intensity", min(1.0, max(0.0, f.intensity / self.full_scale)), (0, 165, 255)))
        return [(self.SHORT[n] if short else n, v, c) for n, v, c in rows]

    def _header(self, f) -> str:
        return f"#{f.track_id}" + (f" {f.emotion}" if self.emotions and f.emotion else "")

    def _panel(self, f, m: TextMetrics, short: bool, hw: Tuple[int, int], k: float):
        """The panel's geometry for face ``f`` at metrics ``m`` (``k``: its text size relative to the frame's), or
        None when it has nothing to show."""
        h, w = hw
        rows = self._rows(f, short)
        thumb = f.neutral if self.thumbnail and f.neutral is not None else None
        if not rows and thumb is None:
            return None
        header = self._header(f)
        label_w = max(m.width(r[0]) for r in rows) if rows else 0
        bar_w = max(3 * m.row, 36)
        pw = m.pad * 2 + max(m.width(header), label_w + m.pad + bar_w if rows else 0)
        bar_w = pw - 3 * m.pad - label_w  # bars fill the panel's width
        ts = 0
        if thumb is not None:
            ts = max(32, int(min(h, w) * 0.18 * k))
            ts = min(ts, pw - 2 * m.pad) if rows and pw - 2 * m.pad >= 32 else ts
            pw = max(pw, ts + 2 * m.pad)
        ph = m.pad * 2 + m.row * (1 + len(rows)) + (ts + m.pad if thumb is not None else 0)
        return dict(m=m, rows=rows, thumb=thumb, header=header, label_w=label_w, bar_w=bar_w, ts=ts, size=(pw, ph))

    def _label(self, f, m: TextMetrics):
        """The compact label's geometry: ``#id emotion`` on the track's colour, the intensity bar under it."""
        header = self._header(f)
        v = min(1.0, max(0.0, f.intensity / self.full_scale)) \
            if self.intensity and math.isfinite(f.intensity) else None
        bar_h = max(3, m.row // 3)
        lw = m.pad * 2 + max(m.width(header), 3 * m.row)
        lh = m.row + (bar_h + 2 * m.pad if v is not None else 0)
        return dict(m=m, header=header, v=v, bar_h=bar_h, size=(lw, lh))

    def _has_content(self, f) -> bool:
        return bool(self._rows(f, False)) or (self.thumbnail and f.neutral is not None)

    def plan(self, image: np.ndarray, packet) -> List[Placement]:
        """Where each face's overlay goes on ``image`` (see the class doc); ``annotate`` draws them. Reads, but does
        not update, what the previous frame drawn kept (``steady``)."""
        return [p for p, _, _ in self._plan(image, packet)]

    def _panel_rules(self, i: int, level: int, size, boxes, avoid, slack: float = 0.0) -> dict:
        """The constraints a panel of face ``i`` at text ``level`` (0: the frame's size) keeps to."""
        return dict(avoid=avoid, max_gap=(self.MAX_GAP + slack) * max(size),
                    own_max=(self.OWN_MAX if level == 0 else self.RIM) + slack,
                    rivals=[b for j, b in enumerate(boxes) if j != i])

    def _plan(self, image, packet):
        h, w = image.shape[:2]
        m0 = text_metrics(image)
        faces = packet.faces
        boxes = [tuple(float(v) for v in f.box) for f in faces]
        tags = [tag_rect(image, f.box, f"#{f.track_id}", m0) for f in faces]
        occupied = list(tags)
        short = min(h, w) < 480
        pxs = [m0.px]
        while int(round(pxs[-1] * 0.8)) > MIN_TEXT_PX:
            pxs.append(int(round(pxs[-1] * 0.8)))
        if pxs[-1] > MIN_TEXT_PX:
            pxs.append(MIN_TEXT_PX)
        todo = [i for i, f in enumerate(faces) if self._has_content(f)]
        crowd = [inset(b, self.RIM) for b in boxes]
        done = {}  # face index -> (Placement, geometry, candidate index)

        def avoid(i, crowd=crowd):
            return [crowd[j] for j in range(len(faces)) if j != i] + [tags[j] for j in range(len(faces)) if j != i] \
                + [p.rect for p, _, _ in done.values()]

        def put(i, kind, rect, g, k, clear=True):
            done[i] = (Placement(i, kind, tuple(int(v) for v in rect), g["m"].px, clear), g, k)
            occupied.append(rect)
            todo.remove(i)

        kept_small = []  # faces whose smaller panel or label the previous frame's plan kept (steady)
        last_source, last_index, last = self._last
        # one face: always the first choice; only the next frames of the same source (another video, another
        # picture at index 0 in the app's cached annotator: planned afresh)
        if (self.steady and len(todo) >= 2 and packet.index > last_index
                and str(getattr(packet, "source", "")) == last_source):
            ids = [f.track_id for f in faces]
            slack = [inset(b, self.RIM + self.SLACK) for b in boxes]
            for i in list(todo):  # first, each face's overlay as on the previous frame, where it still keeps the rules
                if ids[i] < 0 or ids.count(ids[i]) > 1 or ids[i] not in last:
                    continue
                kind, px, k = last[ids[i]]
                if px > m0.px:
                    continue
                if kind == "label":  # its text follows the face's height, as a fresh label's (a grown face)
                    hi = boxes[i][3] - boxes[i][1]
                    if abs(px - min(m0.px, max(MIN_TEXT_PX, int(round(hi / 8))))) > 2 and px != MIN_TEXT_PX:
                        continue
                m = m0 if px == m0.px else metrics_for_px(px)
                if kind == "panel":
                    g = self._panel(faces[i], m, short, (h, w), px / m0.px)
                    level = 0 if px == m0.px else 1
                    if level > 0 and g["size"][1] > self.MAX_FACE_RATIO * (boxes[i][3] - boxes[i][1]):
                        continue
                    cands = panel_candidates((w, h), boxes[i], g["size"], m.pad, more=True)
                    rules = self._panel_rules(i, level, g["size"], boxes,
                                              avoid(i, slack) + ([tags[i]] if level > 0 else []), self.SLACK)
                    rules["rival_slack"] = self.SLACK * max(g["size"])
                else:
                    g = self._label(faces[i], m)
                    cands = label_candidates((w, h), boxes[i], g["size"], tag=tags[i])
                    rules = dict(avoid=avoid(i, slack))
                if k >= len(cands):
                    continue
                x, y = cands[k]
                rect = (x, y, x + g["size"][0], y + g["size"][1])
                if fits(rect, boxes[i], **rules):
                    put(i, kind, rect, g, k)
                    if kind != "panel" or px != m0.px:
                        kept_small.append(i)
        for level, px in enumerate(pxs):  # the frame's size first, for every face, then smaller ones
            m = m0 if level == 0 else metrics_for_px(px)
            for i in list(todo):
                g = self._panel(faces[i], m, short, (h, w), px / m0.px)
                pw, ph = g["size"]
                if level > 0 and ph > self.MAX_FACE_RATIO * (boxes[i][3] - boxes[i][1]):
                    continue
                pos = place_panel((w, h), boxes[i], (pw, ph), boxes, occupied, m.pad,
                                  **self._panel_rules(i, level, (pw, ph), boxes,
                                                      avoid(i) + ([tags[i]] if level > 0 else [])))
                if pos is None:
                    continue
                x, y = pos
                k = panel_candidates((w, h), boxes[i], (pw, ph), m.pad, more=True).index(pos)
                put(i, "panel", (x, y, x + pw, y + ph), g, k)
        for i in list(todo):  # no panel fits: a compact label on the face's box
            b = boxes[i]
            first = min(m0.px, max(MIN_TEXT_PX, int(round((b[3] - b[1]) / 8))))
            best = None  # the largest text that hides nothing, else what hides the least (a smaller label)
            for px in sorted({first, MIN_TEXT_PX}, reverse=True):
                g = self._label(faces[i], m0 if px == m0.px else metrics_for_px(px))
                pos, clear, cost = place_label((w, h), b, g["size"], boxes, [tags[i]], avoid(i), tag=tags[i])
                if best is None or (clear, -cost) > (best[2], -best[3]):
                    best = (g, pos, clear, cost)
                if clear and cost == 0:
                    break
            g, pos, clear, _ = best
            x, y = pos
            k = label_candidates((w, h), b, g["size"], tag=tags[i]).index(pos)
            put(i, "label", (x, y, x + g["size"][0], y + g["size"][1]), g, k, clear)
        for i in kept_small:  # a frame-sized panel where one now fits among all the others (a crowd that thinned
            others = [q.rect for j, (q, _, _) in done.items() if j != i]  # out, a face grown): kept smaller, it stayed
            g0 = self._panel(faces[i], m0, short, (h, w), 1.0)            # so while two faces were on screen
            rest = [crowd[j] for j in range(len(faces)) if j != i] + [tags[j] for j in range(len(faces)) if j != i]
            pos = place_panel((w, h), boxes[i], g0["size"], boxes, rest + others, m0.pad,
                              **self._panel_rules(i, 0, g0["size"], boxes, rest + others))
            if pos is not None:
                x, y = pos
                rect = (x, y, x + g0["size"][0], y + g0["size"][1])
                e = self.UPGRADE_MARGIN * max(g0["size"])  # with room to spare: a box's jitter must not take it back
                if not fits((x - e, y - e, rect[2] + e, rect[3] + e), boxes[i], avoid=rest + others):
                    continue
                k = panel_candidates((w, h), boxes[i], g0["size"], m0.pad, more=True).index(pos)
                done[i] = (Placement(i, "panel", tuple(int(v) for v in rect), m0.px, True), g0, k)
        return [done[i] for i in sorted(done)]

    def _remember(self, packet, plan) -> None:
        ids = [f.track_id for f in packet.faces]
        self._last = (str(getattr(packet, "source", "")), packet.index,
                      {ids[p.index]: (p.kind, p.px, k) for p, _, k in plan
                       if ids[p.index] >= 0 and ids.count(ids[p.index]) == 1})

    def annotate(self, image, packet):
        h, w = image.shape[:2]
        plan = self._plan(image, packet)
        if self.steady:
            self._remember(packet, plan)
        for p, g, _ in plan:
            f = packet.faces[p.index]
            col = color_for(f.track_id)
            m = g["m"]
            x, y, x2, y2 = p.rect
            pw, ph = x2 - x, y2 - y
            shade(image, p.rect)
            cv2.rectangle(image, (x, y), (x + pw - 1, y + ph - 1), col, 1, cv2.LINE_AA)
            cy = y + (m.pad if p.kind == "panel" else 0)
            # the header on a strip of the track's colour, dark text, as the box's #id tag: the colour as text on
            # the grey panel was hard to read (blue on blue-grey)
            cv2.rectangle(image, (x, y), (x + pw - 1, cy + m.row - 1), col, -1)
            m.put(image, g["header"], (x + m.pad, cy), (0, 0, 0))
            cy += m.row
            if p.kind == "label":
                if g["v"] is not None:
                    y0, bx0, bx1 = cy + m.pad, x + m.pad, x + pw - m.pad
                    cv2.rectangle(image, (bx0, y0), (bx1, y0 + g["bar_h"]), (70, 70, 70), -1)
                    cv2.rectangle(image, (bx0, y0), (bx0 + int(round((bx1 - bx0) * g["v"])), y0 + g["bar_h"]),
                                  (0, 165, 255), -1)
                continue
            thumb, ts, label_w, bar_w = g["thumb"], g["ts"], g["label_w"], g["bar_w"]
            if thumb is not None:
                t = cv2.resize(thumb[..., ::-1], (ts, ts), interpolation=cv2.INTER_AREA)
                x0 = x + m.pad
                y1, x1 = min(h, cy + ts), min(w, x0 + ts)
                if y1 > cy and x1 > x0:  # (clipped when the panel is taller than the frame)
                    image[cy:y1, x0:x1] = t[: y1 - cy, : x1 - x0]
                    cv2.rectangle(image, (x0, cy), (x1 - 1, y1 - 1), col, 1)
                cy += ts + m.pad
            bx = x + m.pad + label_w + m.pad
            for name, v, c in g["rows"]:
                m.put(image, name, (x + m.pad, cy), (235, 235, 235))
                y0, y1 = cy + max(1, m.row // 6), cy + m.row - max(2, m.row // 5)
                cv2.rectangle(image, (bx, y0), (bx + bar_w, y1), (70, 70, 70), -1)
                cv2.rectangle(image, (bx, y0), (bx + int(round(bar_w * v)), y1), c or col, -1)
                cy += m.row
        return image


class NeutralizedFaceAnnotator(Annotator):
    """The neutralized view: each face replaced by its neutral face, blended with a feathered mask."""

    def annotate(self, image, packet):
        for f in packet.faces:
            if f.neutral is not None and f.crop_box is not None:
                paste_square(image, np.ascontiguousarray(f.neutral[..., ::-1]), f.crop_box)
        return image


class InfoAnnotator(Annotator):
    """Frame index and timestamp in the bottom-left corner."""

    def annotate(self, image, packet):
        h = image.shape[0]
        m = text_metrics(image)
        m.put(image, f"{packet.index}  {packet.timestamp:.2f}s", (6, h - m.row - 2), (255, 255, 255))
        return image
