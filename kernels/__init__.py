"""Multi-view kernels (``viewal.kernels``): back-projection, cross-projection, view entropy/divergence,
superpixel overlap. NumPy reference, Numba CPU and Numba CUDA backends (see ``view_entropy_divergence``),
and a linear-time fused (voxel) approximation (``view_entropy_divergence_fused``)."""
from ._common import BACKENDS, candidate_pairs, check_backend, cuda_available
from ._math import MODES, VIEWAL_WORLD_DISTANCE
from .fused import view_entropy_divergence_fused
from .overlap import OverlapTable, superpixel_overlap
from .views import view_entropy_divergence

__all__ = [
    "BACKENDS",
    "MODES",
    "VIEWAL_WORLD_DISTANCE",
    "OverlapTable",
    "candidate_pairs",
    "check_backend",
    "cuda_available",
    "superpixel_overlap",
    "view_entropy_divergence",
    "view_entropy_divergence_fused",
]
