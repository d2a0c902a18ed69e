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
