"""Synthetic multi-view RGB-D indoor scenes, ray-cast with Open3D (the package's embedded dataset).

Each scene is a closed room (walls, floor, ceiling, a door and a window set into wall openings) with
furniture built from primitives (boxes, cylinders/frusta, ellipsoids): tables, chairs, sofas, beds,
cabinets, shelves, lamps, TVs/monitors, pictures, plants, boxes (clutter) and rugs. Sizes, layout,
colours and procedural textures (plain, stripes, checker, value noise, wood grain, planks, tiles,
gradients) vary per scene and per instance, and several classes draw from the same colour palettes
(wood, paint, fabric, metal), so that colour alone does not give the class.

A camera walks a smooth loop through the room at eye height (1.2-1.7 m) with a small roll, looking
across the room at its contents; consecutive views overlap heavily and objects occlude each other.
Every frame is one ray cast (``o3d.t.geometry.RaycastingScene``): labels come from the geometry id
hit, depth is the hit's z in the camera frame (``t_hit * d_z`` for a unit ray direction ``d`` in the
camera frame; *not* the ray length), RGB is the procedural albedo under Lambert shading from 1-3
point lights plus ambient, with cast shadows from a second (occlusion) ray per light.

Optional sensor effects (labels and RGB stay exact): ``depth_noise`` adds depth-proportional
Gaussian noise (Kinect-like σ(z) = 1.2 mm + 1.9 mm·(z-0.4)²) quantised in disparity steps;
``holes`` zeroes random blobs and pixels seen at grazing angles (> 80° from the surface normal).

Output: the canonical layout (:mod:`viewal.datasets.canonical`), splits by scene (70/15/15 %,
at least one scene each when there are ≥ 3 scenes). Deterministic: the same arguments give
byte-identical files.

Command line: ``viewal generate OUT [--scenes N] [--frames F] [--height H] [--width W] [--seed S]
[--depth-noise] [--holes] [--no-shadows] [--png]``. Defaults: 12 rooms × 20 views at 320×240 (train
8 rooms = 160 frames, val 2 rooms, test 2 rooms), exact depth. Measured (``time viewal generate data/demo``):
24.6 s wall on an idle 2-core machine; 66 s wall / 23.5 s CPU while ~5 other jobs shared the cores.
About 85 ms per frame: one cast, one occlusion cast per light, texturing, PNG/JPEG encoding.

Classes (``CLASS_NAMES``): wall, floor, ceiling, door, window, table, chair, sofa, bed, cabinet, shelf,
lamp, tv, picture, plant, box, rug; 255 = nothing hit (never happens inside a closed room). On the
default dataset walls cover 46 % of the pixels, floor 9 %, table 6 %, plant 6 %, cabinet 5 %, lamp 0.6 %
(the rarest); a pixel cross-projected into a neighbouring view where the depth test says it is visible
keeps its class 99.7 % of the time (the rest are object edges under nearest-pixel rounding).

Files: ``classes`` (class names), ``textures`` (procedural noise and patterns), ``materials`` (palettes,
random materials), ``primitives`` (meshes, parts, poses), ``furniture`` (object builders), ``room`` (a
furnished room: :func:`build_scene`), ``camera`` (intrinsics, the walk through a room), ``render`` (the
ray-cast renderer), ``sensor`` (depth noise and holes), ``dataset`` (:func:`generate_dataset`, splits). The
command ``viewal generate`` is :mod:`viewal.cli.generate`.
"""
from __future__ import annotations

from .camera import camera_trajectory, default_intrinsics, look_at
from .classes import CLASS_NAMES
from .dataset import DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_SCENES, DEFAULT_WIDTH, generate_dataset, split_scenes
from .materials import Material, make_material
from .primitives import Part
from .render import RoomRenderer, render_frame
from .room import SceneSpec, build_scene
from .sensor import apply_sensor_effects

__all__ = [
    "CLASS_NAMES", "SceneSpec", "Part", "build_scene", "RoomRenderer", "camera_trajectory", "default_intrinsics",
    "render_frame", "generate_dataset", "split_scenes", "Material", "make_material", "look_at",
    "apply_sensor_effects", "DEFAULT_SCENES", "DEFAULT_FRAMES", "DEFAULT_HEIGHT", "DEFAULT_WIDTH",
]
