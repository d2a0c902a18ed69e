"""Writing a synthetic dataset: rooms x views rendered into the canonical layout, split by scene."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from viewal.core.progress import progress_bar

from ..canonical import write_frame, write_meta, write_scene_intrinsics
from .camera import camera_trajectory, default_intrinsics
from .classes import CLASS_NAMES
from .render import RoomRenderer, render_frame
from .room import build_scene

__all__ = ["generate_dataset", "split_scenes", "DEFAULT_SCENES", "DEFAULT_FRAMES", "DEFAULT_HEIGHT",
           "DEFAULT_WIDTH"]

DEFAULT_SCENES = 12
DEFAULT_FRAMES = 20
DEFAULT_HEIGHT = 240
DEFAULT_WIDTH = 320


def split_scenes(scene_ids: list[str], frames: dict[str, list[str]]) -> dict[str, list[str]]:
    """Splits by scene, 70/15/15 % with at least one scene each (≥ 3 scenes); with fewer scenes the last
    scene's frames are divided (2 scenes: train = scene 0, val/test = halves of scene 1)."""
    n = len(scene_ids)
    if n >= 3:
        n_val = max(1, int(round(0.15 * n)))
        n_test = max(1, int(round(0.15 * n)))
        n_train = n - n_val - n_test
        return {
            "train": scene_ids[:n_train],
            "val": scene_ids[n_train : n_train + n_val],
            "test": scene_ids[n_train + n_val :],
        }
    last = scene_ids[-1]
    fk = [f"{last}/{f}" for f in frames[last]]
    if n == 2:
        half = max(1, len(fk) // 2)
        return {"train": [scene_ids[0]], "val": fk[:half], "test": fk[half:] or fk[-1:]}
    a, b = max(1, int(0.7 * len(fk))), max(2, int(0.85 * len(fk)))
    return {"train": fk[:a], "val": fk[a:b] or fk[-1:], "test": fk[b:] or fk[-1:]}


def _prepare_output(out: Path) -> None:
    """Create ``out``; if it holds an earlier output of this generator, delete that output first (its
    scene directories, ``viewal.json`` and the derived ``.viewal_cache``, whose superpixels would be stale).
    Refuses a non-empty directory that is not generator output."""
    import json
    import shutil

    if out.exists() and not out.is_dir():
        raise ValueError(f"generate: output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        meta_path = out / "viewal.json"
        meta = {}
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError:
                meta = {}
        if (meta.get("generator") or {}).get("name") != "viewal.datasets.synthetic":
            raise ValueError(
                f"generate: output directory {out} is not empty and was not written by "
                "'viewal generate'; choose a new directory"
            )
        for p in out.iterdir():
            if p.is_dir() and (p.name.startswith("scene") or p.name == ".viewal_cache"):
                shutil.rmtree(p)
        meta_path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate_dataset(
    out: str | Path,
    scenes: int = DEFAULT_SCENES,
    frames: int = DEFAULT_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    seed: int = 0,
    depth_noise: bool = False,
    holes: bool = False,
    shadows: bool = True,
    color_ext: str = ".jpg",
    progress: bool = True,
) -> Path:
    """Generate ``scenes`` rooms × ``frames`` views into ``out`` (canonical layout) and return ``out``.

    Scene ``k`` depends only on ``(seed, k)``, so a larger ``scenes`` adds rooms without changing the
    first ones. Deterministic: the same arguments give byte-identical files.
    """
    if scenes < 1 or frames < 1:
        raise ValueError(f"generate_dataset: need scenes >= 1 and frames >= 1, got scenes={scenes}, frames={frames}")
    if height < 8 or width < 8:
        raise ValueError(f"generate_dataset: image size {width}x{height} too small")
    if color_ext not in (".jpg", ".png"):
        raise ValueError(f"generate_dataset: color_ext must be '.jpg' or '.png', got {color_ext!r}")
    out = Path(out)
    _prepare_output(out)
    K = default_intrinsics(height, width)
    scene_ids = [f"scene{k:04d}" for k in range(scenes)]
    frame_ids = {s: [f"{i:06d}" for i in range(frames)] for s in scene_ids}
    kinds = {}
    bar = progress_bar(total=scenes * frames, desc="generate", unit="frame", disable=not progress)
    for k, sid in enumerate(scene_ids):
        rng = np.random.default_rng([seed, k])
        spec = build_scene(rng)
        kinds[sid] = spec.kind
        renderer = RoomRenderer(spec)
        poses = camera_trajectory(np.random.default_rng([seed, k, 1]), spec, frames)
        write_scene_intrinsics(out, sid, K)
        for i, (fid, pose) in enumerate(zip(frame_ids[sid], poses)):
            frng = np.random.default_rng([seed, k, 2, i])
            r = render_frame(
                renderer, K, pose, height, width, rng=frng, depth_noise=depth_noise, holes=holes, shadows=shadows
            )
            write_frame(
                out, sid, fid, rgb=r["rgb"], depth=r["depth"], world_T_cam=pose, labels=r["labels"], color_ext=color_ext
            )
            bar.update(1)
    bar.close()
    write_meta(
        out,
        class_names=CLASS_NAMES,
        splits=split_scenes(scene_ids, frame_ids),
        height=height,
        width=width,
        generator={
            "name": "viewal.datasets.synthetic",
            "scenes": scenes,
            "frames": frames,
            "seed": seed,
            "depth_noise": depth_noise,
            "holes": holes,
            "shadows": shadows,
        },
        scene_kinds=kinds,
    )
    return out
