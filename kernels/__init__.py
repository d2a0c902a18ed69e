"""Multi-view kernels (``viewal.kernels``): back-projection, cross-projection, view entropy/divergence,
superpixel overlap, 3D label propagation, all under one depth test (``DepthTest``; default ``DEPTH_TEST``).
NumPy reference, Numba CPU and Numba CUDA backends (see ``view_entropy_divergence``), and a linear-time fused
(voxel) approximation (``view_entropy_divergence_fused``)."""
from ._common import BACKENDS, candidate_pairs, check_backend, cuda_available
from ._math import AGGREGATIONS, MODES, VIEWAL_WORLD_DISTANCE
from .depth_test import DEPTH_TEST, DepthTest
from .overlap import OverlapTable, superpixel_overlap
from .views import view_entropy_divergence

__all__ = [
    "AGGREGATIONS",
    "BACKENDS",
    "DEPTH_TEST",
    "DepthTest",
    "MODES",
    "VIEWAL_WORLD_DISTANCE",
    "OverlapTable",
    "PROPAGATION_RULE",
    "Propagation",
    "PropagationRule",
    "candidate_pairs",
    "check_backend",
    "cuda_available",
    "propagate_labels",
    "superpixel_overlap",
    "view_entropy_divergence",
    "view_entropy_divergence_fused",
]


_PROPAGATE = ("PROPAGATION_RULE", "Propagation", "PropagationRule", "propagate_labels")


def __getattr__(name: str):
    # the fused and propagation kernels import Numba at once: loaded when first used, so that importing the
    # package (e.g. for DepthTest) stays light
    if name == "view_entropy_divergence_fused":
        from .fused import view_entropy_divergence_fused

        return view_entropy_divergence_fused
    if name in _PROPAGATE:
        from . import propagate

        return getattr(propagate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
