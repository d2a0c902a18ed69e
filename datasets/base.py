"""Data model shared by every dataset format: lazily loaded RGB-D frames grouped by scene.

A :class:`Frame` holds its identity and *loaders* (zero-argument callables) for its arrays; each array
is read from disk the first time it is accessed and then cached on the frame. A :class:`RGBDDataset`
groups frames by scene, knows its classes and its train/val/test splits. Format adapters
(``viewal.datasets.<format>``) only build frames; everything else is shared.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

__all__ = ["Frame", "RGBDDataset", "DatasetError", "MissingLabelsError", "IGNORE_INDEX", "SPLITS",
           "frames_without_labels", "require_labels"]

IGNORE_INDEX = 255
SPLITS = ("train", "val", "test")

ArrayOrLoader = np.ndarray | Callable[[], np.ndarray] | None


class DatasetError(ValueError):
    """A dataset on disk is malformed; the message names the file or directory at fault."""


class MissingLabelsError(ValueError):
    """Something that needs ground truth (the simulated oracle, mIoU, the full-data reference) met a frame
    without labels; the message names the frame and what needed its labels."""


def _resolve(x: ArrayOrLoader):
    return x() if callable(x) else x


class Frame:
    """One RGB-D frame of a scene.

    Attributes (arrays load lazily on first access, then stay cached):
        scene_id: str
        frame_id: str
        rgb: (H, W, 3) uint8
        depth: (H, W) float32, metres along the optical axis, 0 = invalid
        K: (3, 3) float64 intrinsics at the working resolution (OpenCV, integer pixel centres)
        world_T_cam: (4, 4) float64 camera-to-world rigid pose
        labels: (H, W) int64 class ids, 255 = ignore; ``None`` when the frame has no labels
        source: where the frame came from (directory or file), for error messages
    """

    __slots__ = ("scene_id", "frame_id", "source", "_loaders", "__dict__")

    def __init__(
        self,
        scene_id: str,
        frame_id: str,
        *,
        rgb: ArrayOrLoader,
        depth: ArrayOrLoader,
        K: ArrayOrLoader,
        world_T_cam: ArrayOrLoader,
        labels: ArrayOrLoader = None,
        source: str | Path | None = None,
    ) -> None:
        self.scene_id = str(scene_id)
        self.frame_id = str(frame_id)
        self.source = source
        self._loaders = {"rgb": rgb, "depth": depth, "K": K, "world_T_cam": world_T_cam, "labels": labels}

    @property
    def key(self) -> str:
        """Unique key ``"<scene_id>/<frame_id>"``."""
        return f"{self.scene_id}/{self.frame_id}"

    @cached_property
    def rgb(self) -> np.ndarray:
        return _resolve(self._loaders["rgb"])

    @cached_property
    def depth(self) -> np.ndarray:
        return _resolve(self._loaders["depth"])

    @cached_property
    def K(self) -> np.ndarray:
        return _resolve(self._loaders["K"])

    @cached_property
    def world_T_cam(self) -> np.ndarray:
        return _resolve(self._loaders["world_T_cam"])

    @cached_property
    def labels(self) -> np.ndarray | None:
        return _resolve(self._loaders["labels"])

    @property
    def has_labels(self) -> bool:
        """Whether the frame has ground-truth labels (decided when the dataset is opened, without reading them)."""
        return self._loaders["labels"] is not None

    def release(self) -> None:
        """Drop cached arrays (they reload on next access)."""
        for name in ("rgb", "depth", "K", "world_T_cam", "labels"):
            self.__dict__.pop(name, None)

    def __repr__(self) -> str:
        return f"Frame({self.key!r})"


@dataclass
class RGBDDataset:
    """Frames grouped by scene, with class names and splits.

    Args:
        root: dataset directory.
        format: name of the format adapter that built it.
        class_names: one name per class id 0..C-1 (255 is the ignore label).
        scenes: scene id → frames of the scene in sequence order.
        splits: split name → list of frame keys ``"<scene>/<frame>"``.
        height, width: working resolution of every frame.
    """

    root: Path
    format: str
    class_names: list[str]
    scenes: dict[str, list[Frame]]
    splits: dict[str, list[str]]
    height: int
    width: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_key = {f.key: f for frames in self.scenes.values() for f in frames}
        for name, keys in self.splits.items():
            missing = [k for k in keys if k not in self._by_key]
            if missing:
                raise DatasetError(f"{self.root}: split {name!r} names unknown frames, e.g. {missing[:3]}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def scene_ids(self) -> list[str]:
        return list(self.scenes)

    def frames(self, scene_id: str) -> list[Frame]:
        """Frames of one scene, in sequence order."""
        try:
            return self.scenes[scene_id]
        except KeyError:
            raise KeyError(f"unknown scene {scene_id!r}; scenes: {self.scene_ids[:10]}...") from None

    def frame(self, key_or_scene: str, frame_id: str | None = None) -> Frame:
        """A frame by key ``"scene/frame"`` or by ``(scene_id, frame_id)``."""
        key = key_or_scene if frame_id is None else f"{key_or_scene}/{frame_id}"
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"unknown frame {key!r}") from None

    def split(self, name: str) -> list[Frame]:
        """Frames of split ``name`` (``train``, ``val`` or ``test``)."""
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; this dataset has {sorted(self.splits)}")
        return [self._by_key[k] for k in self.splits[name]]

    def labelled(self, split: str | None = None) -> list[Frame]:
        """Frames with ground-truth labels, of split ``split`` or (None) of the whole dataset, in order."""
        frames = self.all_frames() if split is None else self.split(split)
        return [f for f in frames if f.has_labels]

    def unlabelled(self, split: str | None = None) -> list[Frame]:
        """Frames without ground-truth labels, of split ``split`` or (None) of the whole dataset, in order."""
        return frames_without_labels(self.all_frames() if split is None else self.split(split))

    def split_scenes(self, name: str) -> list[str]:
        """Scene ids that have at least one frame in split ``name``, in dataset order."""
        ids = {k.split("/", 1)[0] for k in self.splits.get(name, [])}
        return [s for s in self.scene_ids if s in ids]

    def every(self, step: int) -> RGBDDataset:
        """A view of the dataset keeping every ``step``-th frame of each scene (ViewAL used every 35th
        ScanNet frame); splits keep the frames that remain."""
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        if step == 1:
            return self
        scenes = {sid: frames[::step] for sid, frames in self.scenes.items()}
        keep = {f.key for frames in scenes.values() for f in frames}
        splits = {name: [k for k in keys if k in keep] for name, keys in self.splits.items()}
        return RGBDDataset(root=self.root, format=self.format, class_names=self.class_names, scenes=scenes,
                           splits=splits, height=self.height, width=self.width,
                           meta={**self.meta, "frame_step": step})

    def all_frames(self) -> Iterator[Frame]:
        for frames in self.scenes.values():
            yield from frames

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return (f"RGBDDataset(format={self.format!r}, root={str(self.root)!r}, scenes={len(self.scenes)}, "
                f"frames={len(self)}, classes={self.num_classes}, size={self.width}x{self.height})")


def frame_keys(frames: Iterable[Frame]) -> list[str]:
    return [f.key for f in frames]


def frames_without_labels(frames: Iterable) -> list[Frame]:
    """The frames of ``frames`` that have no ground-truth labels (``Frame.has_labels`` False), in order."""
    return [f for f in frames if not f.has_labels]


def require_labels(frames: Iterable, needed_for: str) -> None:
    """Raise :class:`MissingLabelsError` naming the first frame of ``frames`` without labels, how many of
    them lack labels, and what needs them (``needed_for``, e.g. ``"evaluation (mIoU)"``); nothing when every
    frame has labels."""
    frames = list(frames)
    missing = frames_without_labels(frames)
    if missing:
        raise MissingLabelsError(f"{needed_for} needs ground-truth labels, but frame {missing[0].key} has none "
                                 f"({len(missing)} of {len(frames)} frames have no labels)")


def stack_scene(frames: Sequence[Frame]) -> dict[str, np.ndarray]:
    """Stack the geometry of frames: depths (N,H,W) float32, Ks (N,3,3), world_T_cams (N,4,4)."""
    return {
        "depths": np.stack([f.depth for f in frames]).astype(np.float32),
        "Ks": np.stack([f.K for f in frames]).astype(np.float64),
        "world_T_cams": np.stack([f.world_T_cam for f in frames]).astype(np.float64),
    }
