"""Procedural street scenes: label map, instance map and a textured, shaded RGB image from one RNG."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cityscapesscripts.helpers.labels import name2label
from PIL import Image, ImageDraw, ImageFilter

from reprolib.labels import DYNAMIC, EGO_VEHICLE, OUT_OF_ROI, STATIC

L = {n: name2label[n].id for n in (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "bicycle", "motorcycle",
)}

# Base colours per labelId (RGB), deliberately close for some classes so segmentation can err.
BASE_COLOURS = {
    L["road"]: (96, 96, 100), L["sidewalk"]: (150, 140, 135), L["building"]: (120, 100, 90),
    L["wall"]: (140, 130, 110), L["fence"]: (110, 120, 100), L["pole"]: (70, 70, 75),
    L["traffic light"]: (40, 40, 30), L["traffic sign"]: (200, 190, 40), L["vegetation"]: (60, 110, 50),
    L["terrain"]: (130, 140, 80), L["sky"]: (150, 185, 225), L["person"]: (150, 60, 70),
    L["rider"]: (170, 80, 40), L["car"]: (40, 60, 130), L["truck"]: (200, 200, 205), L["bus"]: (190, 120, 40),
    L["bicycle"]: (110, 30, 60), L["motorcycle"]: (60, 30, 100),
    EGO_VEHICLE: (30, 30, 35), OUT_OF_ROI: (0, 0, 0), 2: (0, 0, 0), STATIC: (90, 80, 60), DYNAMIC: (100, 60, 90),
    0: (0, 0, 0),
}


@dataclass
class Scene:
    label_ids: np.ndarray  # (H, W) uint8 Cityscapes labelIds
    instance_ids: np.ndarray  # (H, W) int32 (labelId*1000+k for instances, else labelId)
    image: np.ndarray  # (H, W, 3) uint8
    road_mask: np.ndarray  # (H, W) bool: drivable region (road)
    horizon: int


class _Canvas:
    """Paint labels and instances together, far to near (painter's order)."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.lab = Image.new("L", (w, h), L["sky"])
        self.inst = Image.new("I", (w, h), L["sky"])
        self.dl, self.di = ImageDraw.Draw(self.lab), ImageDraw.Draw(self.inst)
        self.counters: dict[int, int] = {}

    def _iid(self, label: int, instance: bool) -> int:
        if not instance:
            return label
        k = self.counters.get(label, 0)
        self.counters[label] = k + 1
        return label * 1000 + k

    def polygon(self, pts, label: int, instance: bool = False) -> None:
        iid = self._iid(label, instance)
        self.dl.polygon(pts, fill=label)
        self.di.polygon(pts, fill=iid)

    def rect(self, box, label: int, instance: bool = False) -> None:
        x0, y0, x1, y1 = box
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], label, instance)

    def ellipse(self, box, label: int, instance: bool = False) -> int:
        iid = self._iid(label, instance)
        self.dl.ellipse(box, fill=label)
        self.di.ellipse(box, fill=iid)
        return iid

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.lab, dtype=np.uint8).copy(), np.asarray(self.inst, dtype=np.int32).copy()


def _noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] at a given feature size (pixels)."""
    gh, gw = max(2, h // scale + 2), max(2, w // scale + 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def render_scene(rng: np.random.Generator, h: int, w: int) -> Scene:
    """One street scene seen from a car: road to a vanishing point, sidewalks, buildings, objects."""
    c = _Canvas(h, w)
    hz = int(h * rng.uniform(0.38, 0.48))
    vx = w * rng.uniform(0.4, 0.6)
    bottom = h
    road_half = w * rng.uniform(0.55, 0.85)
    walk = w * rng.uniform(0.15, 0.3)

    def road_x(y: float, side: int, extra: float = 0.0) -> float:
        t = (y - hz) / max(1.0, bottom - hz)  # 0 at horizon, 1 at bottom
        return vx + side * (road_half + extra) * t

    # ground: terrain everywhere below the horizon, then sidewalks and road
    c.rect((0, hz, w, h), L["terrain"])
    for side in (-1, 1):
        c.polygon([(vx, hz), (road_x(h, side, walk), h), (road_x(h, side), h)], L["sidewalk"])
    c.polygon([(vx - 1, hz), (road_x(h, -1), h), (road_x(h, 1), h), (vx + 1, hz)], L["road"])

    # buildings / walls / vegetation along both sides, far to near
    for side in (-1, 1):
        x_far = vx + side * w * 0.02
        n = rng.integers(2, 5)
        edges = np.sort(rng.uniform(0, 1, n + 1))
        for i in range(n):
            t0, t1 = edges[i], edges[i + 1]
            xa = x_far + side * t0 * (w * 0.55)
            xb = x_far + side * t1 * (w * 0.55)
            top_a = hz - (h * 0.05 + t0 * h * rng.uniform(0.2, 0.45))
            top_b = hz - (h * 0.05 + t1 * h * rng.uniform(0.2, 0.45))
            base_a = hz + t0 * (h - hz) * 0.35
            base_b = hz + t1 * (h - hz) * 0.35
            kind = rng.choice([L["building"], L["building"], L["building"], L["wall"], L["vegetation"]])
            c.polygon([(xa, top_a), (xb, top_b), (xb, base_b), (xa, base_a)], int(kind))
        # trees and fences near the sidewalk
        for _ in range(rng.integers(0, 4)):
            t = rng.uniform(0.1, 0.8)
            y = hz + t * (h - hz) * 0.5
            x = road_x(y, side, walk * 1.2)
            r = 4 + t * h * 0.15
            c.ellipse((x - r, y - 3 * r, x + r, y - r), L["vegetation"])
        if rng.random() < 0.4:
            t0, t1 = sorted(rng.uniform(0.2, 0.9, 2))
            y0, y1 = hz + t0 * (h - hz) * 0.6, hz + t1 * (h - hz) * 0.6
            c.polygon([(road_x(y0, side, walk), y0 - 0.1 * (y0 - hz) - 2), (road_x(y1, side, walk), y1 - 0.1 * (y1 - hz) - 3),
                       (road_x(y1, side, walk), y1), (road_x(y0, side, walk), y0)], L["fence"])

    # poles with signs / lights
    for _ in range(rng.integers(1, 4)):
        side = rng.choice([-1, 1])
        t = rng.uniform(0.15, 0.9)
        y = hz + t * (h - hz) * 0.8
        x = road_x(y, side, walk * 0.5)
        ph = (y - hz) * 2.5 + 8
        pw = max(1.0, t * w * 0.008)
        c.rect((x - pw, y - ph, x + pw, y), L["pole"])
        kind = L["traffic sign"] if rng.random() < 0.6 else L["traffic light"]
        s = 2 + t * h * 0.04
        c.rect((x - s, y - ph - s * (2.5 if kind == L["traffic light"] else 1.5), x + s, y - ph), kind)

    # vehicles on the road and people on the sidewalks, sorted far to near
    objects = []
    for _ in range(rng.integers(1, 6)):
        objects.append(("vehicle", rng.uniform(0.08, 0.85)))
    for _ in range(rng.integers(0, 5)):
        objects.append(("person", rng.uniform(0.1, 0.9)))
    for kind, t in sorted(objects, key=lambda o: o[1]):
        y = hz + t * (h - hz)
        if kind == "vehicle":
            lane = rng.uniform(-0.8, 0.8)
            x = vx + lane * road_half * t
            cls = int(rng.choice([L["car"]] * 5 + [L["truck"], L["bus"]]))
            vw = (0.12 if cls == L["car"] else 0.16) * w * t * 1.6 + 3
            vh = vw * (0.55 if cls == L["car"] else 0.9)
            c.polygon([(x - vw / 2, y), (x - vw / 2, y - vh * 0.6), (x - vw / 3, y - vh), (x + vw / 3, y - vh),
                       (x + vw / 2, y - vh * 0.6), (x + vw / 2, y)], cls, instance=True)
        else:
            side = rng.choice([-1, 1])
            x = road_x(y, side, walk * rng.uniform(0.2, 0.8))
            ph = 6 + t * h * 0.35
            pw = ph * 0.3
            if rng.random() < 0.25:  # rider on a bicycle
                c.ellipse((x - pw, y - pw * 1.2, x + pw, y), L["bicycle"], instance=True)
                c.rect((x - pw / 3, y - ph, x + pw / 3, y - pw * 0.6), L["rider"], instance=True)
            else:
                c.rect((x - pw / 2, y - ph * 0.8, x + pw / 2, y), L["person"], instance=True)
                c.ellipse((x - pw / 2.5, y - ph, x + pw / 2.5, y - ph * 0.78), L["person"])
    # occasional void objects: static clutter and dynamic things on the sidewalk
    for cls in (STATIC, DYNAMIC):
        if rng.random() < 0.4:
            t = rng.uniform(0.3, 0.9)
            y = hz + t * (h - hz)
            x = road_x(y, rng.choice([-1, 1]), walk * 0.6)
            s = 2 + t * h * 0.05
            c.rect((x - s, y - s * 1.5, x + s, y), cls)

    label_ids, inst = c.arrays()
    # person heads drawn without instance id: give them the body's id where they touch (keeps ids consistent)
    head = (label_ids == L["person"]) & (inst < 1000)
    inst[head] = L["person"] * 1000 + 999
    road_mask = label_ids == L["road"]

    # ego vehicle hood and the rectification border
    hood = int(h * rng.uniform(0.06, 0.1))
    yy, xx = np.mgrid[0:h, 0:w]
    ego = yy > h - hood - (hood * 0.6) * (1 - ((xx - w / 2) / (w / 2)) ** 2)
    label_ids[ego] = EGO_VEHICLE
    inst[ego] = EGO_VEHICLE
    b = max(1, h // 64)
    border = np.zeros((h, w), bool)
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    label_ids[border] = OUT_OF_ROI
    inst[border] = OUT_OF_ROI
    road_mask &= ~(ego | border)

    image = shade(rng, label_ids, inst, hz, road_mask)
    return Scene(label_ids, inst, image, road_mask, hz)


def shade(rng: np.random.Generator, label_ids: np.ndarray, inst: np.ndarray, hz: int,
          road_mask: np.ndarray) -> np.ndarray:
    """Texture, shading and lighting: colour per class with jitter per instance, noise, gradients."""
    h, w = label_ids.shape
    palette = np.zeros((256, 3), np.float32)
    for lab, col in BASE_COLOURS.items():
        palette[lab] = col
    jitter = rng.normal(0, 12, (256, 3)).astype(np.float32)
    img = palette[label_ids] + jitter[label_ids]
    # per-instance colour (cars come in many colours)
    ids = np.unique(inst[inst >= 1000])
    for iid in ids:
        m = inst == iid
        if iid // 1000 in (L["car"], L["truck"], L["bus"]):
            img[m] = rng.uniform(20, 230, 3)
        else:
            img[m] += rng.normal(0, 25, 3)
    tex = _noise(rng, h, w, 4)[..., None] * 14 + _noise(rng, h, w, 24)[..., None] * 18
    img += tex
    # lane markings (image only: the label stays road)
    yy, xx = np.mgrid[0:h, 0:w]
    vx = xx[road_mask].mean() if road_mask.any() else w / 2
    t = np.clip((yy - hz) / max(1, h - hz), 0, 1)
    dash = ((yy * 0.35 / np.maximum(t, 0.05)).astype(int) % 6) < 3
    lane = road_mask & (np.abs(xx - vx) < 1 + 3 * t) & dash
    img[lane] = (230, 230, 220)
    # sky gradient, vertical shading, global illumination and colour cast
    sky = label_ids == L["sky"]
    img[sky] += ((1 - yy[sky] / max(1, hz)) * 40)[:, None]
    img *= (0.85 + 0.3 * (yy / h))[..., None]
    img *= rng.uniform(0.6, 1.25) * rng.uniform(0.9, 1.1, 3)
    # a soft shadow band across the road
    if rng.random() < 0.5:
        y0 = rng.uniform(hz, h)
        img[np.abs(yy - y0) < h * 0.05] *= 0.7
    img += rng.normal(0, 3, img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(out).copy()
