import os
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")

import pytest

from viewal.core.sample import DEFAULT, ENV_VAR, scannet_sample_available, scannet_sample_path

# a checkout beside a ``shared`` folder of reference data finds the sample there when nothing else names it
_BESIDE = Path(__file__).resolve().parents[2] / "shared" / "data" / "viewal-scannet-sample"
if not os.environ.get(ENV_VAR) and not DEFAULT.is_dir() and _BESIDE.is_dir():
    os.environ[ENV_VAR] = str(_BESIDE)


@pytest.fixture(scope="session")
def scannet_sample():
    """Path of the real ScanNet sample; skips with a clear message when it is absent."""
    if not scannet_sample_available():
        pytest.skip(f"real ScanNet sample not found at {scannet_sample_path()} "
                    f"(set {ENV_VAR} to ViewAL's scannet-sample in viewal-original layout)")
    return scannet_sample_path()


@pytest.fixture(scope="module")
def rooms_64x80(tmp_path_factory):
    """A synthetic dataset of 4 rooms x 5 frames of 64x80 pixels (seed 3) for end-to-end learner tests."""
    from viewal.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("rooms_64x80") / "data"
    generate_dataset(root, scenes=4, frames=5, height=64, width=80, seed=3, progress=False)
    return root


# ------------------------------------------------------------------------------------------ a real Label Studio

LABEL_STUDIO_TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"


def label_studio_command():
    """The ``label-studio`` server command: $VIEWAL_LABEL_STUDIO, else on PATH, else beside this Python."""
    import shutil
    import sys
    from pathlib import Path

    cand = os.environ.get("VIEWAL_LABEL_STUDIO") or shutil.which("label-studio")
    if not cand and (Path(sys.executable).parent / "label-studio").is_file():
        cand = str(Path(sys.executable).parent / "label-studio")
    return cand


class LabelStudioServer:
    """A Label Studio server: its base URL, an API token, and the Python of Label Studio's environment, where
    the SDK's client runs (its dependencies conflict with viewal's)."""

    def __init__(self, url, token, python):
        self.url, self.token, self.python = url, token, python

    def sdk(self, code, **args):
        """Run ``code`` with the SDK's client (``client``) and ``args`` (JSON) in Label Studio's environment;
        returns what it assigns to ``out`` (JSON)."""
        import json
        import subprocess

        script = ("import json, sys\nfrom label_studio_sdk import LabelStudio\n"
                  "client = LabelStudio(base_url=sys.argv[1], api_key=sys.argv[2])\n"
                  "args = json.loads(sys.stdin.read())\nout = None\n" + code + "\nprint(json.dumps(out))\n")
        r = subprocess.run([str(self.python), "-c", script, self.url, self.token], input=json.dumps(args),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A :class:`LabelStudioServer` on 127.0.0.1, one for the session: the one at $VIEWAL_LABEL_STUDIO_URL (with
    $VIEWAL_LABEL_STUDIO_TOKEN), or one started here with a temporary data folder and stopped at the end (first
    start: database migrations, minutes on a busy machine). The SDK's client runs with the Python beside the
    ``label-studio`` command; skips without them.

    The server may call a model and webhooks on this machine (``ML_BLOCK_LOCAL_IP=false``,
    ``SSRF_PROTECTION_ENABLED=false``; both default to blocking local addresses) and sends no error reports
    (``SENTRY_DSN`` empty; Label Studio 1.23.2's Sentry set-up also fails with the sentry-sdk 3 that pip installs
    beside it)."""
    import signal
    import socket
    import subprocess
    import time
    import urllib.request
    from pathlib import Path

    cmd = label_studio_command()
    if not cmd:
        pytest.skip("no label-studio command: install Label Studio in its own venv (pip install label-studio) "
                    "and set VIEWAL_LABEL_STUDIO to its bin/label-studio")
    python = Path(cmd).parent / "python"
    if not python.is_file():
        pytest.skip(f"no python beside {cmd} to run the Label Studio SDK's client")
    r = subprocess.run([str(python), "-c", "from label_studio_sdk import LabelStudio"], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"the Label Studio SDK's client does not import with {python}: "
                    f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
    if os.environ.get("VIEWAL_LABEL_STUDIO_URL"):
        yield LabelStudioServer(os.environ["VIEWAL_LABEL_STUDIO_URL"].rstrip("/"),
                                os.environ["VIEWAL_LABEL_STUDIO_TOKEN"], python)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = tmp_path_factory.mktemp("label-studio")
    data, log = base / "data", base / "label-studio.log"
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "ML_BLOCK_LOCAL_IP": "false",
           "SSRF_PROTECTION_ENABLED": "false", "SENTRY_DSN": ""}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([cmd, "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
                                 "--data-dir", str(data), "--username", "annotator@example.com", "--password",
                                 "viewal-test-password", "--user-token", LABEL_STUDIO_TOKEN,
                                 "--enable-legacy-api-token"],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 1500
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("label-studio did not answer /health within 1500 s")
            time.sleep(3)
        yield LabelStudioServer(url, LABEL_STUDIO_TOKEN, python)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
