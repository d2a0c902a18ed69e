"""The classes of the synthetic rooms: names in label order, and ``C``: name -> label id."""
from __future__ import annotations

__all__ = ["CLASS_NAMES", "C"]

CLASS_NAMES = [
    "wall", "floor", "ceiling", "door", "window", "table", "chair", "sofa", "bed",
    "cabinet", "shelf", "lamp", "tv", "picture", "plant", "box", "rug",
]
C = {name: i for i, name in enumerate(CLASS_NAMES)}
