import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

import pytest

from viewal.sample import ENV_VAR, scannet_sample_available, scannet_sample_path


@pytest.fixture(scope="session")
def scannet_sample():
    """Path of the real ScanNet sample; skips with a clear message when it is absent."""
    if not scannet_sample_available():
        pytest.skip(f"real ScanNet sample not found at {scannet_sample_path()} "
                    f"(set {ENV_VAR} to ViewAL's scannet-sample in viewal-original layout)")
    return scannet_sample_path()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny synthetic dataset (4 scenes x 5 frames, 64x80) for end-to-end learner tests."""
    from viewal.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("tiny") / "data"
    generate_dataset(root, scenes=4, frames=5, height=64, width=80, seed=3, progress=False)
    return root
