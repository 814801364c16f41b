"""
Capture real ``blkid`` output for the ``facts/devices.py`` fixtures, on a Debian machine with ``zfs-fuse``,
``gdisk`` (sgdisk) and ``lvm2`` installed, ``/dev/fuse`` and loop devices present, as root:

    unshare -m --propagation private .venv/bin/python tests/captured/devices-debian12/capture_devices.py OUTDIR

Every probed object is a file under ``/tmp/iluvatar-devices-capture`` (removed at the end) or a loop device
attached to one such file (detached at the end): an ext4 filesystem, a GPT, swap, an LVM physical volume
(``pvcreate`` on a loop device, then detached), a zfs-fuse pool's vdev file (pool ``scratch``, exported), a
file holding both a ZFS label and an ext4 superblock (blkid: ambivalent), an empty file, a directory and a
missing path. zfs-fuse runs inside this private mount namespace (tmpfs on ``/run/zfs``, overlay on
``/var/lib`` for its ``zpool.cache``) and is stopped and waited for. Nothing of the machine is written to.

Each ``NN-name.txt`` in OUTDIR holds ``$ <the fact's exact command>`` and then its stdout (the fact captures
exit statuses and stderr in-band); ``00-setup.log`` holds every setup step with its output and exit status.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from pyinfra_iluvatar.facts.devices import DeviceSignatures

ROOT = Path("/tmp/iluvatar-devices-capture")
BY_ID = ROOT / "by-id"


class Capture:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.count = 0
        self.log = (out / "00-setup.log").open("w")
        self.daemon: subprocess.Popen[bytes] | None = None
        self.loops: list[str] = []

    def step(self, command: str, check: bool = True) -> str:
        """Run a setup command, log it with its output and exit status."""
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        self.log.write(f"$ {command}\n{result.stdout}{result.stderr}[exit={result.returncode}]\n")
        self.log.flush()
        if check and result.returncode != 0:
            raise SystemExit(f"setup step failed: {command}\n{result.stderr}")
        return result.stdout

    def fact(self, name: str, devices: list[str], user: str | None = None) -> None:
        """Run the fact's command as pyinfra would (``sh -c``), as root or as ``user``, and keep its stdout."""
        command = str(DeviceSignatures().command(devices))
        argv = ["sh", "-c", command]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *argv]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0 or result.stderr:
            raise SystemExit(f"fact command failed ({result.returncode}): {command}\n{result.stderr}")
        self.count += 1
        runner = f"(as {user}) " if user else ""
        (self.out / f"{self.count:02d}-{name}.txt").write_text(f"{runner}$ {command}\n{result.stdout}")

    def loop(self, image: Path) -> str:
        device = self.step(f"losetup -f --show {image}").strip()
        self.loops.append(device)
        return device

    def detach(self, device: str) -> None:
        self.step(f"losetup -d {device}")
        self.loops.remove(device)

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


def scenario(cap: Capture) -> None:
    cap.step("uname -r; cat /etc/debian_version; blkid --version; dpkg-query -W zfs-fuse gdisk lvm2; date -u")
    images = {name: ROOT / f"{name}.img" for name in ("ext4", "gpt", "swap", "lvm", "zfs", "ambivalent", "empty")}
    for image in images.values():
        cap.step(f"truncate -s 128M {image}")
    cap.step(f"mkfs.ext4 -q -F -L iluvatar-data -U 2d1c6f47-5a0e-4b8f-9c1e-6f3a2b7d9e10 {images['ext4']}")
    cap.step(f"sgdisk -o -U 5604d047-db35-47b7-aa7d-7f7911c59dfa {images['gpt']}")
    cap.step(f"mkswap -U fcc51042-2bcc-49f2-a122-7cc68273da8b {images['swap']}")
    lvm = cap.loop(images["lvm"])
    cap.step(f"pvcreate -q {lvm}")
    cap.detach(lvm)
    cap.start_daemon()
    cap.step(f"zpool create scratch {images['zfs']}")
    cap.step("zpool export scratch")
    # A ZFS label and an ext4 superblock on one file: ext4's superblock (at 1 KiB) lands in the 8 KiB that
    # ZFS's first label leaves blank, so both stay readable and blkid refuses to choose.
    cap.step(f"cp {images['zfs']} {images['ambivalent']}")
    cap.step(f"truncate -s 8M {ROOT}/e2.img && mkfs.ext4 -q -F {ROOT}/e2.img")
    cap.step(f"dd if={ROOT}/e2.img of={images['ambivalent']} bs=4096 count=1 conv=notrunc status=none")
    cap.step(f"rm {ROOT}/e2.img; mkdir {ROOT}/directory; wipefs {images['ambivalent']} | head -n 4")

    files = [str(images[name]) for name in ("ext4", "gpt", "swap", "lvm", "zfs", "ambivalent", "empty")]
    cap.fact("files", [*files, str(ROOT / "missing.img"), str(ROOT / "directory")])
    for name in ("ext4", "gpt", "swap", "lvm", "zfs", "ambivalent", "empty", "missing"):
        cap.fact(name, [str(images.get(name, ROOT / f"{name}.img"))])

    # Block devices through by-id style symlinks: a blank disk and one with a GPT.
    for name in ("disk-blank", "disk-gpt"):
        cap.step(f"truncate -s 128M {ROOT}/{name}.img")
    cap.step(f"sgdisk -o -U 72f6141e-09e1-43fe-8221-371356263f0b {ROOT}/disk-gpt.img")
    BY_ID.mkdir()
    for name in ("disk-blank", "disk-gpt"):
        (BY_ID / name).symlink_to(cap.loop(ROOT / f"{name}.img"))
    cap.fact("loop-devices", [str(BY_ID / "disk-blank"), str(BY_ID / "disk-gpt"), str(BY_ID / "disk-gone")])
    for device in list(cap.loops):
        cap.detach(device)

    # blkid cannot read the file: exit 2 with a message (not "nothing found").
    cap.step(f"chmod 755 {ROOT}; chmod 600 {images['ext4']}")
    cap.fact("permission-denied", [str(images["ext4"])], user="nobody")

    cap.step(f"zpool import -d {ROOT} scratch && zpool destroy scratch")
    cap.step("zpool list", check=False)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if ROOT.exists():
        raise SystemExit(f"{ROOT} exists: remove it first")
    ROOT.mkdir()
    (ROOT / "upper").mkdir()
    (ROOT / "work").mkdir()
    cap = Capture(out)
    run_zfs = Path("/run/zfs")
    # Runtime directories the tools create on the machine's /run (outside the overlay): removed at the end
    # unless they were there before.
    runtime = [run_zfs, Path("/run/lock/zfs"), Path("/run/lvm"), Path("/run/lock/lvm")]
    created = [path for path in runtime if not path.exists()]
    run_zfs.mkdir(exist_ok=True)
    cap.step("mount -t tmpfs zfsrun /run/zfs")
    cap.step(f"mount -t overlay varlib -o lowerdir=/var/lib,upperdir={ROOT}/upper,workdir={ROOT}/work /var/lib")
    try:
        scenario(cap)
    finally:
        for device in list(cap.loops):
            cap.detach(device)
        cap.stop_daemon()
        cap.step("umount /var/lib; umount /run/zfs", check=False)
        shutil.rmtree(ROOT)
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        cap.log.close()


if __name__ == "__main__":
    main()
