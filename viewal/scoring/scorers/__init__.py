"""Scorers, registered by name: ``viewal.scoring.scorers.names()`` lists them,
``viewal.scoring.scorers.get(name)`` makes one."""
from .base import (
                   NEEDS,
                   SceneInputs,
                   Scorer,
                   Scores,
                   build_scene_inputs,
                   get,
                   names,
                   pool_regions,
                   register,
                   register_need,
)

__all__ = ["NEEDS", "SceneInputs", "Scorer", "Scores", "build_scene_inputs", "get", "names", "pool_regions", "register",
           "register_need"]
