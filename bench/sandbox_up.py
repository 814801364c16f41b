"""Measure the sandbox: the first image build, and ``sandbox up --hosts 3`` with the image cached.

Run as root from a checkout: ``.venv/bin/python bench/sandbox_up.py``. It drives the ``pyinfra-iluvatar`` command
the way a user does, with its own state directory, network number and (empty, then warm) image cache, so a
sandbox or cache already on the machine is left alone; it removes what it made when done.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = Path(sys.executable).parent / "pyinfra-iluvatar"
# The first `up` builds the image (debootstrap may take up to 20 minutes); everything else takes seconds.
TIMEOUT = 30 * 60


def timed(argv: list[str]) -> float:
    """Run ``argv`` (checked, within :data:`TIMEOUT`) and return its wall-clock seconds."""
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT)
    return time.monotonic() - started


def main() -> None:
    """Measure, print the figures, clean up."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", type=int, default=250, help="sandbox network number to use (default 250)")
    parser.add_argument("--runs", type=int, default=3, help="cached `up --hosts 3` runs (default 3)")
    parser.add_argument("--suite", default="bookworm")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pyinfra-iluvatar-bench-", dir="/var/tmp"))
    cache, state = work / "images", work / "state"
    common = ["--state-dir", str(state), "--cache-dir", str(cache)]
    up = [str(CLI), "sandbox", "up", "--hosts", "3", "--suite", options.suite, "--net", str(options.net), *common]
    down = [str(CLI), "sandbox", "down", *common]
    try:
        first = timed(up)
        timed(down)
        (manifest,) = cache.glob("*.json")
        build = float(json.loads(manifest.read_text())["build_seconds"])
        cached = []
        for _ in range(options.runs):
            cached.append(timed(up))
            timed(down)
    finally:
        # Only a sandbox that is down has no overlays mounted under `work` for rmtree to walk into.
        if subprocess.run(down, check=False, stdout=subprocess.DEVNULL, timeout=TIMEOUT).returncode == 0:
            shutil.rmtree(work)
        else:
            print(f"`sandbox down` failed: {work} left as it is", file=sys.stderr)

    print(f"first image build (debootstrap {options.suite} + adjustments): {build:.1f} s")
    print(f"first `sandbox up --hosts 3` (image build included): {first:.1f} s")
    print(
        f"`sandbox up --hosts 3`, image cached, {len(cached)} runs: median {statistics.median(cached):.1f} s"
        f" ({', '.join(f'{t:.1f}' for t in cached)})"
    )


if __name__ == "__main__":
    main()
