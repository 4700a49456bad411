"""The runtime image's install steps, run in a venv (no container builder on CI machines).

The test reads the Dockerfile's own build argument and health check, installs what the image
installs, serves a model from that venv, and runs the HEALTHCHECK command against it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

from test_runtime_only import FORBIDDEN, REPO, install_venv

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _extras() -> str:
    return re.search(r"^ARG EXTRAS=(\S+)$", DOCKERFILE, re.MULTILINE).group(1)


def _healthcheck(port: int) -> list[str]:
    command = re.search(r"^\s*CMD (\[.*\])$", DOCKERFILE, re.MULTILINE).group(1)
    return [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in json.loads(command)]


def test_image_install_serves_and_passes_its_health_check(tmp_path_factory, distilbert):
    assert _extras() == "cpu,serve" and "USER engine" in DOCKERFILE
    python = install_venv(tmp_path_factory, _extras())
    heavy = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in "
                            f"{FORBIDDEN!r} if u.find_spec(m)])"],
                           capture_output=True, text=True, check=True)
    assert heavy.stdout.strip() == "[]"
    server = subprocess.Popen(
        [str(python.parent / "onnx-engine"), "serve", f"clf={distilbert.artifact}", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        check = _healthcheck(port)
        check[0] = str(python)  # the image's `python` is the venv's
        deadline = time.monotonic() + 60
        while subprocess.run(check, capture_output=True, timeout=10).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0
