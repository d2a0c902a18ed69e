"""Furniture built from primitives: each builder draws its sizes and materials from ``rng`` and returns
parts in the object's frame: origin at the footprint centre on the floor, x = width, y = depth (front faces
+y), z up. :func:`~.primitives.placed` moves them into the room."""
from __future__ import annotations

from .classes import C
from .materials import make_material
from .primitives import Part, box_part, rigid, rot_z

__all__ = ["table", "chair", "sofa", "bed", "cabinet", "shelf", "floor_lamp", "table_lamp", "tv", "plant", "boxes"]


def table(rng, w, d, h, top_mat, leg_mat, cls=C["table"]) -> list[Part]:
    th = rng.uniform(0.025, 0.05)
    parts = [box_part(cls, top_mat, (w, d, th), (0, 0, h - th / 2))]
    if rng.random() < 0.75:
        lw = rng.uniform(0.03, 0.06)
        ix, iy = w / 2 - lw, d / 2 - lw
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(box_part(cls, leg_mat, (lw, lw, h - th), (sx * ix, sy * iy, (h - th) / 2)))
    else:  # pedestal table
        parts.append(Part("frustum", (0.05, 0.05, h - th), rigid(None, (0, 0, (h - th) / 2)), cls, leg_mat))
        parts.append(Part("frustum", (min(w, d) * 0.3, 0.06, 0.04), rigid(None, (0, 0, 0.02)), cls, leg_mat))
    return parts


def chair(rng) -> list[Part]:
    cls = C["chair"]
    w, d = rng.uniform(0.4, 0.5), rng.uniform(0.4, 0.5)
    sh, bh = rng.uniform(0.42, 0.48), rng.uniform(0.35, 0.5)
    seat = make_material(rng, rng.choice(["wood", "fabric", "paint"]))
    frame = make_material(rng, rng.choice(["wood", "metal"]))
    lw = 0.035
    parts = [box_part(cls, seat, (w, d, 0.05), (0, 0, sh - 0.025))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            at = (sx * (w / 2 - lw), sy * (d / 2 - lw), (sh - 0.05) / 2)
            parts.append(box_part(cls, frame, (lw, lw, sh - 0.05), at))
    # back rest at the rear (-y)
    parts.append(box_part(cls, seat if rng.random() < 0.5 else frame, (w, 0.04, bh), (0, -d / 2 + 0.02, sh + bh / 2)))
    return parts


def sofa(rng) -> tuple[list[Part], float, float, float]:
    cls = C["sofa"]
    w, d = rng.uniform(1.6, 2.3), rng.uniform(0.8, 0.95)
    fab = make_material(rng, "fabric")
    fab2 = make_material(rng, "fabric") if rng.random() < 0.3 else fab
    legs = make_material(rng, rng.choice(["wood", "metal"]))
    arm = rng.uniform(0.12, 0.22)
    base_h, seat_h, back_h = 0.12, rng.uniform(0.38, 0.45), rng.uniform(0.72, 0.9)
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(
                box_part(cls, legs, (0.05, 0.05, base_h), (sx * (w / 2 - 0.06), sy * (d / 2 - 0.06), base_h / 2))
            )
    parts.append(box_part(cls, fab, (w, d, seat_h - base_h - 0.1), (0, 0, (seat_h - 0.1 + base_h) / 2)))
    n_cush = int(rng.integers(2, 4))
    cw = (w - 2 * arm) / n_cush
    for i in range(n_cush):
        x = -w / 2 + arm + cw * (i + 0.5)
        parts.append(box_part(cls, fab2, (cw - 0.01, d - 0.22, 0.1), (x, 0.08, seat_h - 0.05)))
    parts.append(box_part(cls, fab, (w, 0.2, back_h - base_h), (0, -d / 2 + 0.1, (back_h + base_h) / 2)))
    for sx in (-1, 1):
        parts.append(
            box_part(
                cls, fab, (arm, d, seat_h + 0.15 - base_h), (sx * (w / 2 - arm / 2), 0, (seat_h + 0.15 + base_h) / 2)
            )
        )
    return parts, w, d, back_h


def bed(rng) -> tuple[list[Part], float, float, float]:
    cls = C["bed"]
    w = rng.choice([0.95, 1.4, 1.6, 1.8]) + rng.uniform(-0.05, 0.05)
    d = rng.uniform(1.95, 2.15)
    frame = make_material(rng, rng.choice(["wood", "paint", "fabric"]))
    matt = make_material(rng, "paint")
    blanket = make_material(rng, "fabric")
    pillow = make_material(rng, rng.choice(["paint", "fabric"]))
    fh = rng.uniform(0.25, 0.35)
    mh = 0.2
    hb = rng.uniform(0.8, 1.1)
    parts = [
        box_part(cls, frame, (w, d, fh), (0, 0, fh / 2)),
        box_part(cls, matt, (w - 0.04, d - 0.06, mh), (0, 0.02, fh + mh / 2)),
        box_part(cls, frame, (w + 0.04, 0.06, hb), (0, -d / 2 - 0.03, hb / 2)),
    ]
    bl = d * rng.uniform(0.55, 0.7)
    parts.append(box_part(cls, blanket, (w + 0.02, bl, 0.05), (0, d / 2 - bl / 2 + 0.01, fh + mh + 0.02)))
    parts.append(
        box_part(cls, blanket, (0.03, bl, mh + 0.1), (w / 2 + 0.01, d / 2 - bl / 2 + 0.01, fh + mh / 2 - 0.03))
    )
    parts.append(
        box_part(cls, blanket, (0.03, bl, mh + 0.1), (-w / 2 - 0.01, d / 2 - bl / 2 + 0.01, fh + mh / 2 - 0.03))
    )
    n_p = 1 if w < 1.2 else 2
    pw = (w - 0.15) / n_p
    for i in range(n_p):
        x = -w / 2 + 0.075 + pw * (i + 0.5)
        parts.append(
            Part("sphere", (pw / 2 - 0.03, 0.2, 0.07), rigid(None, (x, -d / 2 + 0.3, fh + mh + 0.06)), cls, pillow)
        )
    return parts, w, d, hb


def cabinet(rng, w=None, d=None, h=None) -> tuple[list[Part], float, float, float]:
    cls = C["cabinet"]
    w = w or rng.uniform(0.45, 1.2)
    d = d or rng.uniform(0.4, 0.55)
    h = h or rng.uniform(0.5, 1.9)
    body = make_material(rng, rng.choice(["wood", "paint"]))
    front = body if rng.random() < 0.6 else make_material(rng, rng.choice(["wood", "paint"]))
    handle = make_material(rng, "metal")
    parts = [
        box_part(cls, body, (w, d - 0.02, h - 0.06), (0, -0.01, (h - 0.06) / 2 + 0.06)),
        box_part(cls, body, (w - 0.04, d - 0.06, 0.06), (0, -0.03, 0.03)),
    ]
    n_doors = 1 if w < 0.6 else 2
    rows = 1 if h < 1.0 else int(rng.integers(1, 3))
    dw, dh = w / n_doors, (h - 0.08) / rows
    for i in range(n_doors):
        for r in range(rows):
            x = -w / 2 + dw * (i + 0.5)
            z = 0.07 + dh * (r + 0.5)
            parts.append(box_part(cls, front, (dw - 0.012, 0.02, dh - 0.012), (x, d / 2 - 0.01, z)))
            hx = x + (dw / 2 - 0.06) * (1 if i == 0 and n_doors == 2 else -1 if n_doors == 2 else 1)
            parts.append(box_part(cls, handle, (0.015, 0.025, 0.12), (hx, d / 2 + 0.012, z)))
    return parts, w, d, h


def shelf(rng) -> tuple[list[Part], list[Part], float, float, float]:
    """Open bookshelf; returns (shelf parts, clutter parts on its boards, w, d, h)."""
    cls = C["shelf"]
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.28, 0.4), rng.uniform(1.1, 2.0)
    mat = make_material(rng, rng.choice(["wood", "paint"]))
    back = mat if rng.random() < 0.5 else make_material(rng, "paint")
    t = 0.025
    parts = [
        box_part(cls, mat, (t, d, h), (-w / 2 + t / 2, 0, h / 2)),
        box_part(cls, mat, (t, d, h), (w / 2 - t / 2, 0, h / 2)),
        box_part(cls, back, (w, 0.01, h), (0, -d / 2 + 0.005, h / 2)),
    ]
    n = max(2, int(h / rng.uniform(0.3, 0.42)))
    clutter = []
    for i in range(n + 1):
        z = 0.05 + (h - 0.05 - t) * i / n
        parts.append(box_part(cls, mat, (w - 2 * t, d - 0.01, t), (0, 0.005, z + t / 2)))
        if i < n:
            gap = (h - 0.05 - t) / n - t
            x = -w / 2 + t + 0.01
            while x < w / 2 - t - 0.08:
                bw = rng.uniform(0.03, 0.25)
                if rng.random() < 0.35:
                    x += bw
                    continue
                bw = min(bw, w / 2 - t - 0.01 - x)
                bh = min(gap - 0.02, rng.uniform(0.08, 0.3))
                bd = rng.uniform(0.12, d - 0.04)
                clutter.append(
                    box_part(
                        C["box"],
                        make_material(rng, rng.choice(["bright", "cardboard", "paint", "fabric"])),
                        (bw, bd, bh),
                        (x + bw / 2, -d / 2 + 0.02 + bd / 2, z + t + bh / 2),
                    )
                )
                x += bw + 0.005
    return parts, clutter, w, d, h


def floor_lamp(rng) -> tuple[list[Part], float]:
    cls = C["lamp"]
    base = make_material(rng, rng.choice(["metal", "ceramic"]))
    shade = make_material(rng, rng.choice(["paint", "fabric"]))
    h = rng.uniform(1.3, 1.75)
    rs = rng.uniform(0.15, 0.25)
    parts = [
        Part("frustum", (0.15, 0.13, 0.03), rigid(None, (0, 0, 0.015)), cls, base),
        Part("frustum", (0.015, 0.015, h - 0.2), rigid(None, (0, 0, (h - 0.2) / 2)), cls, base),
        Part("frustum", (rs, rs * 0.7, 0.3, 0), rigid(None, (0, 0, h - 0.15)), cls, shade),
    ]
    return parts, rs


def table_lamp(rng) -> list[Part]:
    cls = C["lamp"]
    base = make_material(rng, rng.choice(["metal", "ceramic"]))
    shade = make_material(rng, rng.choice(["paint", "fabric"]))
    h = rng.uniform(0.3, 0.5)
    r = rng.uniform(0.08, 0.13)
    return [
        Part("sphere", (0.07, 0.07, h * 0.3), rigid(None, (0, 0, h * 0.25)), cls, base),
        Part("frustum", (0.012, 0.012, h * 0.4), rigid(None, (0, 0, h * 0.6)), cls, base),
        Part("frustum", (r, r * 0.65, h * 0.35, 0), rigid(None, (0, 0, h - h * 0.175)), cls, shade),
    ]


def tv(rng, w=None) -> list[Part]:
    """TV/monitor standing on a surface at z = 0, screen facing +y."""
    cls = C["tv"]
    w = w or rng.uniform(0.45, 1.2)
    h = w * rng.uniform(0.56, 0.62)
    body = make_material(rng, "metal")
    screen = make_material(rng, "screen")
    lift = rng.uniform(0.06, 0.12)
    return [
        box_part(cls, body, (w * 0.35, 0.18, 0.02), (0, 0, 0.01)),
        box_part(cls, body, (0.05, 0.03, lift + 0.05), (0, -0.02, (lift + 0.05) / 2)),
        box_part(cls, body, (w, 0.04, h), (0, 0, lift + h / 2)),
        box_part(cls, screen, (w - 0.03, 0.006, h - 0.03), (0, 0.022, lift + h / 2)),
    ]


def plant(rng, small: bool = False) -> tuple[list[Part], float]:
    cls = C["plant"]
    pot = make_material(rng, rng.choice(["ceramic", "paint"]))
    leaves = make_material(rng, "green")
    s = rng.uniform(0.35, 0.55) if small else rng.uniform(0.8, 1.4)
    rp = 0.22 * s**0.6
    ph = rp * rng.uniform(1.0, 1.5)
    parts = [
        Part("frustum", (rp * 0.75, rp, ph), rigid(None, (0, 0, ph / 2)), cls, pot),
        Part("frustum", (0.015, 0.015, s * 0.5), rigid(None, (0, 0, ph + s * 0.25)), cls, leaves),
    ]
    for _ in range(int(rng.integers(2, 5))):
        r = s * rng.uniform(0.18, 0.3)
        c = (rng.normal(0, 0.12 * s), rng.normal(0, 0.12 * s), ph + s * rng.uniform(0.35, 0.8) - r * 0.3)
        parts.append(
            Part(
                "sphere",
                (r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)),
                rigid(rot_z(rng.uniform(0, 6.3)), c),
                cls,
                leaves,
            )
        )
    return parts, rp + 0.1 * s


def boxes(rng, max_h: float = 0.6) -> list[Part]:
    """A small stack of 1-3 boxes."""
    parts, z = [], 0.0
    w0 = rng.uniform(0.2, 0.55)
    for _ in range(int(rng.integers(1, 4))):
        w = w0 * rng.uniform(0.6, 1.0)
        d = w * rng.uniform(0.6, 1.2)
        h = rng.uniform(0.1, 0.35)
        if z + h > max_h:
            break
        mat = make_material(rng, rng.choice(["cardboard", "cardboard", "bright", "paint", "wood"]))
        yaw = rng.normal(0, 0.2)
        parts.append(
            box_part(C["box"], mat, (w, d, h), (rng.normal(0, 0.03), rng.normal(0, 0.03), z + h / 2), rot_z(yaw))
        )
        z += h
        w0 = w
    return parts
