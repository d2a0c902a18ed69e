"""Rooms: :func:`build_scene` draws a furnished room (walls with a door and a window, floor, ceiling,
furniture by room kind, things on surfaces, pictures, lights) as a :class:`SceneSpec`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import furniture
from .classes import C
from .materials import Material, make_material
from .primitives import Part, box_part, placed, rot_z

__all__ = ["SceneSpec", "build_scene"]


@dataclass
class SceneSpec:
    """A generated room: its parts, lights and size (interior x ∈ [0, Lx], y ∈ [0, Ly], z ∈ [0, Lz])."""

    parts: list[Part]
    lights: list[tuple[np.ndarray, float]]
    size: tuple[float, float, float]
    ambient: float
    kind: str
    exposure: float = 1.3
    central: tuple[float, float] = (0.0, 0.0)
    info: dict[str, Any] = field(default_factory=dict)


# wall w: 0 → y = 0 (inward +y), 1 → x = Lx (inward -x), 2 → y = Ly (inward -y), 3 → x = 0 (inward +x)
_WALL_YAW = [0.0, math.pi / 2, math.pi, -math.pi / 2]


def _wall_length(w: int, L) -> float:
    return L[0] if w in (0, 2) else L[1]


def _wall_point(w: int, s: float, off: float, L) -> tuple[float, float]:
    """Room (x, y) of position ``s`` along wall ``w`` (counter-clockwise) at ``off`` metres from it."""
    Lx, Ly = L[0], L[1]
    if w == 0:
        return s, off
    if w == 1:
        return Lx - off, s
    if w == 2:
        return Lx - s, Ly - off
    return off, Ly - s


def _wall_s(wall: int, x: float, y: float, L) -> float:
    """Inverse of :func:`_wall_point` for the along-wall coordinate."""
    if wall == 0:
        return x
    if wall == 1:
        return y
    if wall == 2:
        return L[0] - x
    return L[1] - y


class _FloorPlan:
    """Axis-aligned footprint rectangles on the floor (rejection sampling of placements)."""

    def __init__(self, L):
        self.L = L
        self.rects: list[tuple[float, float, float, float, float]] = []  # x0, y0, x1, y1, height

    @staticmethod
    def footprint(w, d, yaw, x, y):
        c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
        hw, hd = (w * c + d * s) / 2, (w * s + d * c) / 2
        return x - hw, y - hd, x + hw, y + hd

    def free(self, r, margin=0.05) -> bool:
        x0, y0, x1, y1 = r
        if x0 < -1e-6 or y0 < -1e-6 or x1 > self.L[0] + 1e-6 or y1 > self.L[1] + 1e-6:
            return False
        for a0, b0, a1, b1, _ in self.rects:
            if x0 < a1 + margin and a0 < x1 + margin and y0 < b1 + margin and b0 < y1 + margin:
                return False
        return True

    def add(self, r, h):
        self.rects.append((*r, h))

    def against_wall(self, rng, w, d, h, walls=(0, 1, 2, 3), tries=40, gap=0.02):
        """Try to place a (w × d) object with its back to a wall; returns (yaw, x, y, wall) or None."""
        for _ in range(tries):
            wall = int(rng.choice(walls))
            Lw = _wall_length(wall, self.L)
            if Lw < w + 0.1:
                continue
            s = rng.uniform(w / 2 + 0.02, Lw - w / 2 - 0.02)
            x, y = _wall_point(wall, s, d / 2 + gap, self.L)
            yaw = _WALL_YAW[wall]
            r = self.footprint(w, d, yaw, x, y)
            if self.free(r):
                self.add(r, h)
                return yaw, x, y, wall
        return None


def _wall_with_openings(L, wall: int, openings, mat: Material, thick: float = 0.12) -> list[Part]:
    """Boxes of one wall (outside the interior), with rectangular openings (s0, s1, z0, z1)."""
    Lw = _wall_length(wall, L) + 2 * thick
    Lz = L[2]
    # wall-local frame: s along the wall from -thick, z up, n = inward normal; box centre at -thick/2
    pieces = []
    cuts = sorted(openings)
    s_prev = -thick
    for s0, s1, z0, z1 in cuts:
        pieces.append((s_prev, s0, 0.0, Lz))
        pieces.append((s0, s1, 0.0, z0))
        pieces.append((s0, s1, z1, Lz))
        s_prev = s1
    pieces.append((s_prev, Lw - thick, 0.0, Lz))
    parts = []
    yaw = _WALL_YAW[wall]
    for s0, s1, z0, z1 in pieces:
        if s1 - s0 < 1e-4 or z1 - z0 < 1e-4:
            continue
        sm = (s0 + s1) / 2
        x, y = _wall_point(wall, sm, -thick / 2, L)
        parts.append(box_part(C["wall"], mat, (s1 - s0, thick, z1 - z0), (x, y, (z0 + z1) / 2), rot_z(yaw)))
    return parts


class _Room:
    """A room being furnished: its size ``L``, the parts placed so far, the floor footprints taken and the
    openings cut in each wall (door, window; pictures add theirs to keep apart). ``rng`` draws every choice."""

    def __init__(self, rng: np.random.Generator, L):
        self.rng = rng
        self.L = L
        self.parts: list[Part] = []
        self.floor = _FloorPlan(L)
        self.openings: dict[int, list[tuple[float, float, float, float]]] = {w: [] for w in range(4)}

    def place(self, parts: list[Part], yaw: float, pos) -> None:
        self.parts.extend(placed(parts, yaw, pos))

    def blocks_opening(self, wall: int, s: float, w: float, h: float) -> bool:
        """Would an object of width ``w`` and height ``h`` at ``s`` along ``wall`` stand in an opening?"""
        for s0, s1, z0, _ in self.openings[wall]:
            if s - w / 2 < s1 + 0.05 and s0 - 0.05 < s + w / 2 and h > z0 - 0.05:
                return True
        return False

    def put_against_wall(self, obj_parts: list[Part], w, d, h, tries: int = 40):
        """Place an object (footprint ``w`` × ``d``, height ``h``) with its back to a free stretch of wall;
        returns (yaw, x, y, wall), or None when no try found room."""
        for _ in range(tries):
            res = self.floor.against_wall(self.rng, w, d, h, tries=1)
            if res is None:
                continue
            yaw, x, y, wall = res
            s = _wall_s(wall, x, y, self.L)
            if self.blocks_opening(wall, s, w, h):
                self.floor.rects.pop()
                continue
            self.place(obj_parts, yaw, (x, y, 0.0))
            return yaw, x, y, wall
        return None


def build_scene(rng: np.random.Generator) -> SceneSpec:
    """A random furnished room (see the package docstring): shell, door and window, furniture by room kind,
    storage, a central table, things on surfaces, things along the walls, pictures, lights."""
    kind = str(rng.choice(["living", "bedroom", "office"]))
    Lx, Ly = rng.uniform(3.8, 6.0), rng.uniform(3.6, 5.5)
    Lz = rng.uniform(2.5, 2.9)
    room = _Room(rng, (Lx, Ly, Lz))
    wall_mat = make_material(rng, "paint" if rng.random() < 0.85 else "wood")
    wall_mat2 = make_material(rng, "paint") if rng.random() < 0.35 else wall_mat  # an accent wall
    accent = int(rng.integers(4))
    door, window = _cut_openings(room)
    _add_shell(room, wall_mat, wall_mat2, accent)
    _add_door(room, *door)
    _add_window(room, *window)
    tops = _add_large_furniture(room, kind)
    tops += _add_storage(room, kind)
    cx, cy, central_h = _add_central_table(room, kind)
    _add_things_on_tops(room, tops)
    _add_along_walls(room)
    _add_pictures(room)
    lights = _lights(rng, room.L)
    return SceneSpec(
        room.parts,
        lights,
        room.L,
        ambient=float(rng.uniform(0.22, 0.35)),
        kind=kind,
        exposure=float(rng.uniform(1.1, 1.5)),
        central=(cx, cy),
        info={"central_height": central_h},
    )


def _cut_openings(room: _Room) -> tuple[tuple, tuple]:
    """Draw the door (wall, s, width, height) and the window (wall, s, width, z0, z1) and record both openings."""
    rng, L = room.rng, room.L
    door_wall = int(rng.integers(4))
    win_wall = int(rng.choice([w for w in range(4) if w != door_wall]))
    dw, dh = rng.uniform(0.8, 0.95), rng.uniform(2.0, 2.15)
    ds = rng.uniform(0.25 + dw / 2, _wall_length(door_wall, L) - 0.25 - dw / 2)
    room.openings[door_wall].append((ds - dw / 2, ds + dw / 2, 0.0, dh))
    ww = rng.uniform(0.9, min(2.0, _wall_length(win_wall, L) - 1.0))
    wz0, wz1 = rng.uniform(0.8, 1.0), min(L[2] - 0.25, rng.uniform(2.0, 2.3))
    wsp = rng.uniform(0.4 + ww / 2, _wall_length(win_wall, L) - 0.4 - ww / 2)
    room.openings[win_wall].append((wsp - ww / 2, wsp + ww / 2, wz0, wz1))
    return (door_wall, ds, dw, dh), (win_wall, wsp, ww, wz0, wz1)


def _add_shell(room: _Room, wall_mat: Material, wall_mat2: Material, accent: int) -> None:
    """Four walls with their openings (wall ``accent`` in ``wall_mat2``), the floor and the ceiling."""
    Lx, Ly, Lz = room.L
    for w in range(4):
        room.parts += _wall_with_openings(room.L, w, room.openings[w], wall_mat2 if w == accent else wall_mat)
    T = 0.1
    room.parts.append(
        box_part(C["floor"], make_material(room.rng, "floor"), (Lx + 0.4, Ly + 0.4, T), (Lx / 2, Ly / 2, -T / 2))
    )
    room.parts.append(
        box_part(C["ceiling"], make_material(room.rng, "paint"), (Lx + 0.4, Ly + 0.4, T), (Lx / 2, Ly / 2, Lz + T / 2))
    )


def _add_door(room: _Room, door_wall: int, ds: float, dw: float, dh: float) -> None:
    """A panel set into the door opening, a frame, a handle; the floor in front of it kept free."""
    rng, L = room.rng, room.L
    yaw = _WALL_YAW[door_wall]
    door_mat = make_material(rng, rng.choice(["wood", "paint"]))
    frame_mat = make_material(rng, rng.choice(["paint", "wood"]))
    dp = [
        box_part(C["door"], door_mat, (dw, 0.04, dh), (0, -0.07, dh / 2)),
        box_part(C["door"], make_material(rng, "metal"), (0.12, 0.05, 0.025), (dw / 2 - 0.1, -0.03, 1.0)),
    ]
    for sx in (-1, 1):
        dp.append(
            box_part(C["door"], frame_mat, (0.06, 0.02, dh + 0.06), (sx * (dw / 2 + 0.03), 0.01, (dh + 0.06) / 2))
        )
    dp.append(box_part(C["door"], frame_mat, (dw + 0.12, 0.02, 0.06), (0, 0.01, dh + 0.03)))
    x, y = _wall_point(door_wall, ds, 0.0, L)
    room.place(dp, yaw, (x, y, 0.0))
    room.floor.add(_FloorPlan.footprint(dw + 0.5, 1.6, yaw, *_wall_point(door_wall, ds, 0.8, L)), 0.0)


def _add_window(room: _Room, win_wall: int, wsp: float, ww: float, wz0: float, wz1: float) -> None:
    """A bright pane outside the wall, glazing bars, a frame and a sill."""
    rng = room.rng
    yaw = _WALL_YAW[win_wall]
    wmat = make_material(rng, rng.choice(["paint", "wood", "metal"]))
    whh = wz1 - wz0
    wp = [box_part(C["window"], make_material(rng, "sky"), (ww + 1.2, 0.02, whh + 1.2), (0, -0.2, whh / 2))]
    wp.append(box_part(C["window"], wmat, (0.04, 0.04, whh), (0, -0.08, whh / 2)))
    if rng.random() < 0.6:
        wp.append(box_part(C["window"], wmat, (ww, 0.04, 0.04), (0, -0.08, whh * rng.uniform(0.5, 0.7))))
    for sx in (-1, 1):
        wp.append(box_part(C["window"], wmat, (0.05, 0.06, whh), (sx * (ww / 2 - 0.025), -0.07, whh / 2)))
    for z in (0.025, whh - 0.025):
        wp.append(box_part(C["window"], wmat, (ww, 0.06, 0.05), (0, -0.07, z)))
    wp.append(box_part(C["window"], wmat, (ww + 0.1, 0.16, 0.03), (0, 0.02, -0.015)))
    x, y = _wall_point(win_wall, wsp, 0.0, room.L)
    room.place(wp, yaw, (x, y, wz0))


#: a surface things can stand on: (yaw, x, y, w, d, z)
Top = tuple[float, float, float, float, float, float]


def _add_large_furniture(room: _Room, kind: str) -> list[Top]:
    """A bed with nightstands (bedrooms), a sofa (living rooms, some bedrooms), a desk with a monitor and a
    chair (offices, half the others); returns the surfaces they offer (nightstands, desk)."""
    rng = room.rng
    tops: list[Top] = []
    if kind == "bedroom":
        bp, bw, bd, bh = furniture.bed(rng)
        res = room.put_against_wall(bp, bw, bd, bh)
        if res is not None:
            for sx in (-1, 1):  # nightstands
                yaw, x, y, wall = res
                off = rot_z(yaw) @ np.array([sx * (bw / 2 + 0.3), -bd / 2 + 0.22, 0])
                cp, cw, cd, ch = furniture.cabinet(rng, 0.45, 0.4, rng.uniform(0.45, 0.6))
                r = _FloorPlan.footprint(cw, cd, yaw, x + off[0], y + off[1])
                if room.floor.free(r, 0.01):
                    room.floor.add(r, ch)
                    room.place(cp, yaw, (x + off[0], y + off[1], 0.0))
                    tops.append((yaw, x + off[0], y + off[1], cw, cd, ch))
    if kind == "living" or (kind == "bedroom" and rng.random() < 0.3):
        sp, sw, sd, sh = furniture.sofa(rng)
        room.put_against_wall(sp, sw, sd, sh)
    if kind == "office" or rng.random() < 0.5:
        w, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.76)
        tp = furniture.table(
            rng,
            w,
            d,
            h,
            make_material(rng, rng.choice(["wood", "paint"])),
            make_material(rng, rng.choice(["metal", "wood"])),
        )
        res = room.put_against_wall(tp, w, d + 0.5, h)
        if res is not None:
            yaw, x, y, wall = res
            off = rot_z(yaw) @ np.array([0, -0.25, 0])
            # the object was reserved with extra depth for the chair; shift the desk back
            room.parts[-len(tp) :] = placed(tp, yaw, (x + off[0], y + off[1], 0.0))
            mon = furniture.tv(rng, rng.uniform(0.45, 0.7))
            moff = rot_z(yaw) @ np.array([rng.uniform(-0.2, 0.2) * w, -d / 2 + 0.15, 0])
            room.place(mon, yaw, (x + off[0] + moff[0], y + off[1] + moff[1], h))
            coff = rot_z(yaw) @ np.array([rng.uniform(-0.15, 0.15), d / 2 + 0.05, 0])
            room.place(furniture.chair(rng), yaw + math.pi + rng.normal(0, 0.3), (x + coff[0], y + coff[1], 0.0))
            tops.append((yaw, x + off[0], y + off[1], w * 0.45, d * 0.6, h))
    return tops


def _add_storage(room: _Room, kind: str) -> list[Top]:
    """Cabinets and shelves against the walls, and a TV on a low cabinet (living rooms); returns the tops of
    the cabinets lower than 1.3 m."""
    rng = room.rng
    tops: list[Top] = []
    for _ in range(int(rng.integers(1, 3))):
        cp, cw, cd, ch = furniture.cabinet(rng)
        res = room.put_against_wall(cp, cw, cd, ch)
        if res is not None and ch < 1.3:
            tops.append((res[0], res[1], res[2], cw, cd, ch))
    for _ in range(int(rng.integers(1, 3))):
        sp, clutter, sw, sd, sh = furniture.shelf(rng)
        room.put_against_wall(sp + clutter, sw, sd, sh)
    if kind == "living":
        cp, cw, cd, ch = furniture.cabinet(rng, rng.uniform(1.2, 1.8), 0.45, rng.uniform(0.4, 0.55))
        res = room.put_against_wall(cp, cw, cd, ch)
        if res is not None:
            yaw, x, y, _ = res
            room.place(furniture.tv(rng, rng.uniform(0.8, min(1.3, cw))), yaw, (x, y, ch))
    return tops


def _rug(room: _Room, w: float, d: float) -> list[Part]:
    """A ``w`` × ``d`` rug in its own frame (its material drawn now: before the yaw it is placed at)."""
    return [box_part(C["rug"], make_material(room.rng, "rug"), (w, d, 0.012), (0, 0, 0.006))]


def _add_central_table(room: _Room, kind: str) -> tuple[float, float, float]:
    """A table near the room centre (a coffee table in living rooms, a dining table with chairs elsewhere,
    rarely in bedrooms), usually on a rug, with a few low things on it; a bedroom without one may get a rug.
    Returns the centre (cx, cy) and the table height (0 without a table)."""
    rng, (Lx, Ly, _) = room.rng, room.L
    cx, cy = Lx / 2 + rng.normal(0, 0.2), Ly / 2 + rng.normal(0, 0.2)
    if not (kind != "bedroom" or rng.random() < 0.3):
        if rng.random() < 0.8:
            rw, rd = rng.uniform(1.4, 2.4), rng.uniform(1.0, 1.8)
            room.place(_rug(room, rw, rd), rng.uniform(0, 3.2), (cx, cy, 0.0))
        return cx, cy, 0.0
    coffee = kind == "living"
    w = rng.uniform(0.9, 1.3) if coffee else rng.uniform(1.0, 1.6)
    d = rng.uniform(0.5, 0.7) if coffee else rng.uniform(0.75, 0.95)
    h = rng.uniform(0.38, 0.46) if coffee else rng.uniform(0.72, 0.76)
    yaw = rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.1)
    if rng.random() < 0.8:
        rw, rd = w + rng.uniform(0.8, 1.4), d + rng.uniform(0.8, 1.4)
        room.place(_rug(room, rw, rd), yaw + rng.normal(0, 0.05), (cx, cy, 0.0))
    tp = furniture.table(
        rng,
        w,
        d,
        h,
        make_material(rng, rng.choice(["wood", "paint", "metal"])),
        make_material(rng, rng.choice(["metal", "wood"])),
    )
    room.place(tp, yaw, (cx, cy, 0.0))
    room.floor.add(_FloorPlan.footprint(w, d, yaw, cx, cy), h)
    if not coffee:
        n_ch = int(rng.integers(2, 5))
        spots = [
            (0, d / 2 + 0.25, math.pi),
            (0, -d / 2 - 0.25, 0.0),
            (w / 2 + 0.25, 0, math.pi / 2),
            (-w / 2 - 0.25, 0, -math.pi / 2),
        ]
        for i in rng.permutation(4)[:n_ch]:
            sx, sy, a = spots[i]
            off = rot_z(yaw) @ np.array([sx + rng.normal(0, 0.05), sy + rng.normal(0, 0.08), 0])
            chair_yaw = yaw + a + rng.normal(0, 0.25)
            room.place(furniture.chair(rng), chair_yaw, (cx + off[0], cy + off[1], 0.0))
    # items on the central table (kept low: the camera walks above it)
    for _ in range(int(rng.integers(1, 4))):
        px, py = rng.uniform(-0.35, 0.35) * w, rng.uniform(-0.3, 0.3) * d
        off = rot_z(yaw) @ np.array([px, py, 0])
        r = rng.random()
        items = (
            furniture.boxes(rng, 0.25)
            if r < 0.55
            else furniture.plant(rng, small=True)[0]
            if r < 0.85
            else furniture.table_lamp(rng)
        )
        room.place(items, rng.uniform(0, 6.3), (cx + off[0], cy + off[1], h))
    return cx, cy, h


def _add_things_on_tops(room: _Room, tops: list[Top]) -> None:
    """A table lamp, a small plant or boxes on most cabinets, nightstands and desks."""
    rng = room.rng
    for yaw, x, y, w, d, h in tops:
        if rng.random() < 0.8:
            px = rng.uniform(-0.3, 0.3) * w
            off = rot_z(yaw) @ np.array([px, rng.uniform(-0.15, 0.15) * d, 0])
            r = rng.random()
            items = (
                furniture.table_lamp(rng)
                if r < 0.4
                else furniture.plant(rng, small=True)[0]
                if r < 0.65
                else furniture.boxes(rng, 0.4)
            )
            room.place(items, yaw + rng.normal(0, 0.3), (x + off[0], y + off[1], h))


def _add_along_walls(room: _Room) -> None:
    """Floor lamps, plants and box stacks in free spots along the walls."""
    rng = room.rng
    for _ in range(int(rng.integers(1, 3))):
        lp, r = furniture.floor_lamp(rng)
        room.put_against_wall(lp, 2 * r, 2 * r, 1.7)
    for _ in range(int(rng.integers(1, 3))):
        pp, r = furniture.plant(rng)
        room.put_against_wall(pp, 2 * r, 2 * r, 1.5)
    for _ in range(int(rng.integers(1, 4))):
        room.put_against_wall(furniture.boxes(rng), 0.55, 0.55, 0.6)


def _add_pictures(room: _Room) -> None:
    """1-3 framed pictures between 1.1 and 2.2 m, never over an opening or in front of tall furniture."""
    rng, L = room.rng, room.L
    n_pic = int(rng.integers(1, 4))
    for _ in range(n_pic * 10):
        if n_pic == 0:
            break
        wall = int(rng.integers(4))
        pw, ph = rng.uniform(0.3, 1.1), rng.uniform(0.25, 0.8)
        Lw = _wall_length(wall, L)
        if Lw < pw + 0.4:
            continue
        s = rng.uniform(pw / 2 + 0.2, Lw - pw / 2 - 0.2)
        z0 = rng.uniform(1.1, max(1.15, L[2] - 0.3 - ph))
        if any(s - pw / 2 < s1 + 0.1 and s0 - 0.1 < s + pw / 2 for s0, s1, _, _ in room.openings[wall]):
            continue
        x, y = _wall_point(wall, s, 0.3, L)
        foot = _FloorPlan.footprint(pw, 0.6, _WALL_YAW[wall], x, y)
        if any(
            foot[0] < a1 and a0 < foot[2] and foot[1] < b1 and b0 < foot[3] and hh > z0 - 0.05
            for a0, b0, a1, b1, hh in room.floor.rects
        ):
            continue
        fm = make_material(rng, rng.choice(["wood", "metal", "paint"]))
        canvas = make_material(rng, "bright")
        fr = 0.03
        pp = [box_part(C["picture"], canvas, (pw - 2 * fr, 0.02, ph - 2 * fr), (0, 0.01, ph / 2))]
        for sx in (-1, 1):
            pp.append(box_part(C["picture"], fm, (fr, 0.03, ph), (sx * (pw / 2 - fr / 2), 0.015, ph / 2)))
        for z in (fr / 2, ph - fr / 2):
            pp.append(box_part(C["picture"], fm, (pw, 0.03, fr), (0, 0.015, z)))
        x, y = _wall_point(wall, s, 0.0, L)
        room.place(pp, _WALL_YAW[wall], (x, y, z0))
        room.openings[wall].append((s - pw / 2, s + pw / 2, 99.0, 99.0))  # keep pictures apart
        n_pic -= 1


def _lights(rng: np.random.Generator, L) -> list[tuple[np.ndarray, float]]:
    """1-3 point lights near the ceiling, their intensities summing to 1.3-1.9."""
    Lx, Ly, Lz = L
    lights = []
    for _ in range(int(rng.integers(1, 4))):
        pos = np.array([rng.uniform(0.2, 0.8) * Lx, rng.uniform(0.2, 0.8) * Ly, Lz - rng.uniform(0.2, 0.5)])
        lights.append((pos, float(rng.uniform(0.7, 1.2))))
    tot = sum(i for _, i in lights)
    return [(p, i * rng.uniform(1.3, 1.9) / tot) for p, i in lights]
