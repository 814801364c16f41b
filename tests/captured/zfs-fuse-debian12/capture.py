"""
Capture real zfs-fuse output for the ``facts/zfs.py`` fixtures, on a Debian machine with ``zfs-fuse``
installed and ``/dev/fuse`` present, as root:

    unshare -m --propagation private .venv/bin/python tests/captured/zfs-fuse-debian12/capture.py OUTDIR

Everything happens inside that private mount namespace: a tmpfs on ``/run/zfs`` (the daemon's socket) and
an overlay on ``/var/lib`` (its ``zpool.cache`` and the containerd dataset's mountpoint) keep the host
untouched, and every FUSE mount dies with the namespace. Pools live on sparse files under
``/tmp/iluvatar-zfs-capture``, which is removed at the end; the daemon is stopped and waited for.

Each ``NN-name.txt`` in OUTDIR holds ``$ <the fact's exact command>`` and then its stdout (the facts
capture exit status and stderr in-band); ``00-setup.log`` holds every setup step with its output and
exit status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pyinfra.api.facts import FactBase

from pyinfra_iluvatar.facts.zfs import (
    ZfsDatasetProperties,
    ZfsImplementation,
    ZpoolImportable,
    ZpoolList,
    ZpoolStatus,
)

ROOT = Path("/tmp/iluvatar-zfs-capture")
VDEVS = ROOT / "vdevs"
ASIDE = ROOT / "aside"
MNT = ROOT / "mnt"
SNAPSHOTTER = "/var/lib/containerd/io.containerd.snapshotter.v1.zfs"


class Capture:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.count = 0
        self.log = (out / "00-setup.log").open("w")
        self.daemon: subprocess.Popen[bytes] | None = None

    def step(self, command: str, check: bool = True) -> str:
        """Run a setup command, log it with its output and exit status."""
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        self.log.write(f"$ {command}\n{result.stdout}{result.stderr}[exit={result.returncode}]\n")
        self.log.flush()
        if check and result.returncode != 0:
            raise SystemExit(f"setup step failed: {command}\n{result.stderr}")
        return result.stdout

    def fact(self, name: str, fact: FactBase[Any], *args: str) -> None:
        """Run ``fact``'s command as pyinfra would (``sh -c``) and keep its stdout."""
        command = str(fact.command(*args))
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        if result.returncode != 0 or result.stderr:
            raise SystemExit(f"fact command failed ({result.returncode}): {command}\n{result.stderr}")
        self.count += 1
        (self.out / f"{self.count:02d}-{name}.txt").write_text(f"$ {command}\n{result.stdout}")

    def start_daemon(self) -> None:
        self.log.write("$ zfs-fuse --no-daemon --no-kstat-mount &\n")
        self.daemon = subprocess.Popen(["zfs-fuse", "--no-daemon", "--no-kstat-mount"])
        for _ in range(50):
            if subprocess.run(["zpool", "list"], capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("zfs-fuse did not answer within 10 s")

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.log.write("$ kill -TERM <zfs-fuse>; wait\n")
            self.daemon.terminate()
            self.log.write(f"[exit={self.daemon.wait(timeout=60)}]\n")
            self.daemon = None

    def wait_for_scrub(self, pool: str) -> None:
        for _ in range(120):
            if "in progress" not in self.step(f"zpool status {pool}"):
                return
            time.sleep(0.5)
        raise SystemExit(f"scrub of {pool} did not finish")


def corrupt(vdev: Path) -> None:
    """Overwrite 48 MiB in the middle of a vdev file, well away from its labels (first and last 512 KiB)."""
    with vdev.open("r+b") as handle:
        handle.seek(8 << 20)
        handle.write(os.urandom(48 << 20))


def scenario(cap: Capture) -> None:
    status, listing, get, importable, implementation = (
        ZpoolStatus(),
        ZpoolList(),
        ZfsDatasetProperties(),
        ZpoolImportable(),
        ZfsImplementation(),
    )
    vdevs = str(VDEVS)
    cap.step("uname -r; cat /etc/debian_version; dpkg-query -W zfs-fuse; date -u")

    # ZFS not answering: the daemon is not running.
    cap.fact("implementation-daemon-stopped", implementation)
    cap.fact("status-daemon-stopped", status)
    cap.fact("list-daemon-stopped", listing)
    cap.fact("get-daemon-stopped", get)
    cap.fact("import-daemon-stopped", importable, vdevs)

    cap.start_daemon()
    cap.fact("implementation-daemon-running", implementation)
    cap.fact("status-no-pools", status)
    cap.fact("list-no-pools", listing)
    cap.fact("get-no-datasets", get)
    cap.fact("import-empty-directory", importable, vdevs)
    cap.fact("import-no-directory", importable, str(ROOT / "absent"))
    cap.fact("status-bad-pool-name", status, "bad/name")
    # What zfs-fuse refuses (so the facts do not use it).
    cap.step("zpool status -P", check=False)
    cap.step("zpool list -p", check=False)
    cap.step("zpool get all", check=False)
    cap.step("zfs get -t filesystem type", check=False)

    for name in ("tank0", "mpool-a", "mpool-b", "rz-a", "rz-b", "rz-c", "deg-a", "deg-b", "err0", "st-a", "st-b"):
        cap.step(f"truncate -s 128M {VDEVS / name}")
    cap.step(f"zpool create -m {MNT}/tank tank {VDEVS}/tank0")
    cap.step(f"zfs create -o mountpoint={SNAPSHOTTER} tank/containerd")
    cap.step(f"zpool create -m {MNT}/mpool mpool mirror {VDEVS}/mpool-a {VDEVS}/mpool-b")
    cap.step(f"zpool create -m {MNT}/rzpool rzpool raidz {VDEVS}/rz-a {VDEVS}/rz-b {VDEVS}/rz-c")
    cap.step(f"zpool create -m {MNT}/degpool degpool mirror {VDEVS}/deg-a {VDEVS}/deg-b")
    cap.step(f"zpool offline degpool {VDEVS}/deg-b")
    cap.step(f"findmnt -t fuse.zfs; ls -ld {SNAPSHOTTER}")

    cap.fact("status-all", status)
    cap.fact("status-tank", status, "tank")
    cap.fact("status-mpool", status, "mpool")
    cap.fact("status-rzpool", status, "rzpool")
    cap.fact("status-degpool-offline", status, "degpool")
    cap.fact("status-no-such-pool", status, "nope")
    cap.fact("list-all", listing)
    cap.fact("list-tank", listing, "tank")
    cap.fact("list-no-such-pool", listing, "nope")
    cap.fact("get-all", get)
    cap.fact("get-containerd", get, "tank/containerd")
    cap.fact("get-no-such-dataset", get, "tank/nope")
    cap.fact("import-all-imported", importable, vdevs)

    # A pool without redundancy whose data was overwritten under it: permanent errors.
    cap.step(f"zpool create -m {MNT}/errpool errpool {VDEVS}/err0")
    cap.step(f"dd if=/dev/urandom of={MNT}/errpool/data bs=1M count=60 status=none && sync")
    cap.step("zpool export errpool")
    corrupt(VDEVS / "err0")
    cap.step(f"zpool import -d {VDEVS} errpool")
    cap.step(f"cat {MNT}/errpool/data > /dev/null", check=False)
    cap.fact("status-errpool-read-errors", status, "errpool")
    cap.step("zpool scrub errpool")
    cap.wait_for_scrub("errpool")
    cap.fact("status-errpool-scrubbed", status, "errpool")

    # A mirror with one side overwritten: the scrub repairs it and counts checksum errors.
    cap.step(f"dd if=/dev/urandom of={MNT}/mpool/data bs=1M count=60 status=none && sync")
    cap.step("zpool export mpool")
    corrupt(VDEVS / "mpool-b")
    cap.step(f"zpool import -d {VDEVS} mpool")
    cap.step("zpool scrub mpool")
    cap.wait_for_scrub("mpool")
    cap.fact("status-mpool-repaired", status, "mpool")

    # Exported pools, and pools with a vdev file gone, as `zpool import -d` lists them.
    cap.step("zpool export mpool")
    cap.fact("import-mpool-exported", importable, vdevs)
    cap.step("zpool export rzpool")
    cap.step(f"mkdir -p {ASIDE} && mv {VDEVS}/rz-c {ASIDE}/")
    cap.fact("import-rzpool-vdev-missing", importable, vdevs)
    cap.step(f"zpool import -d {VDEVS} rzpool")
    cap.fact("status-rzpool-vdev-missing", status, "rzpool")
    cap.step(f"zpool create -m {MNT}/stripe stripe {VDEVS}/st-a {VDEVS}/st-b")
    cap.step("zpool export stripe")
    cap.step(f"mv {VDEVS}/st-b {ASIDE}/")
    cap.fact("import-stripe-vdev-missing", importable, vdevs)

    # A restart without the cache file (what a reboot does to file-vdev pools): nothing is imported,
    # every pool is waiting in the directory.
    cap.stop_daemon()
    cap.step("rm -f /var/lib/zfs/zpool.cache")
    cap.start_daemon()
    cap.fact("status-restarted-without-cache", status)
    cap.fact("import-restarted-without-cache", importable, vdevs)

    # Clean up: import what can be imported, destroy every pool.
    for pool in ("tank", "mpool", "rzpool", "degpool", "errpool"):
        cap.step(f"zpool import -d {VDEVS} {pool}")
    for pool in ("tank", "mpool", "rzpool", "degpool", "errpool"):
        cap.step(f"zpool destroy {pool}")
    cap.step("zpool list; findmnt -t fuse.zfs", check=False)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if ROOT.exists():
        raise SystemExit(f"{ROOT} exists: remove it first")
    for path in (VDEVS, ASIDE, MNT, ROOT / "upper", ROOT / "work"):
        path.mkdir(parents=True)
    cap = Capture(out)
    run_zfs = Path("/run/zfs")
    created_run_zfs = not run_zfs.exists()
    run_zfs.mkdir(exist_ok=True)
    cap.step("mount -t tmpfs zfsrun /run/zfs")
    cap.step(f"mount -t overlay varlib -o lowerdir=/var/lib,upperdir={ROOT}/upper,workdir={ROOT}/work /var/lib")
    try:
        scenario(cap)
    finally:
        cap.stop_daemon()
        cap.step("umount /var/lib; umount /run/zfs", check=False)
        shutil.rmtree(ROOT)
        if created_run_zfs:
            run_zfs.rmdir()
        cap.log.close()


if __name__ == "__main__":
    main()
