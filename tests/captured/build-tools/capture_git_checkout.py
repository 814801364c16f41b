"""Capture ``facts.build.GitCheckout`` on this machine (git 2.39, Debian 12): run from a checkout. It makes, under
``/tmp/pyinfra-iluvatar-git``, a source repository (two commits, an annotated tag ``v1`` on the first), a clone of it
(``co``, at ``master``, with a build stamp), an empty directory and a directory holding a file, then writes
``git-<case>.txt`` here (the command, its output, its exit status) and the fixtures in
``tests/facts/build.GitCheckout/``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from pyinfra_iluvatar.facts.build import GitCheckout

HERE = Path(__file__).parent
FIXTURES = HERE.parent.parent / "facts" / "build.GitCheckout"
ROOT = Path("/tmp/pyinfra-iluvatar-git")


def git(folder: Path, *arguments: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@lab.example", "-C", str(folder), *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    source = ROOT / "src"
    source.mkdir(parents=True)
    git(source, "init", "-q", "-b", "master")
    git(source, "commit", "-q", "--allow-empty", "-m", "one")
    git(source, "tag", "-a", "v1", "-m", "v1")
    git(source, "commit", "-q", "--allow-empty", "-m", "two")
    subprocess.run(["git", "clone", "-q", str(source), str(ROOT / "co")], check=True)
    head = git(ROOT / "co", "rev-parse", "HEAD")
    (ROOT / "co" / ".git" / "pyinfra-iluvatar-build").write_text(f"{head} release x86_64-unknown-linux-gnu\n")
    (ROOT / "empty").mkdir()
    (ROOT / "other").mkdir()
    (ROOT / "other" / "notes.txt").write_text("mine\n")
    cases = {
        "checkout_at_master_built": (ROOT / "co", "master", "a clone at master, with a build stamp"),
        "checkout_asked_for_a_tag": (ROOT / "co", "v1", "the same clone, asked for its annotated tag v1"),
        "checkout_asked_for_a_commit": (ROOT / "co", head, "the same clone, asked for a commit (no ls-remote)"),
        "checkout_asked_for_a_missing_ref": (ROOT / "co", "no-such-branch", "the same clone, an unknown ref"),
        "missing": (ROOT / "nope", "master", "a path that does not exist"),
        "empty_directory": (ROOT / "empty", "master", "an empty directory"),
        "directory_with_a_file": (ROOT / "other", "master", "a directory holding a file, not a checkout"),
        "inside_another_checkout": (ROOT / "co" / ".git", "master", "the .git directory inside a checkout"),
    }
    for name, (path, ref, what) in cases.items():
        command = GitCheckout().command(path=str(path), ref=ref)
        run = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
        (HERE / f"git-{name}.txt").write_text(f"$ {command}\n{run.stdout}[exit={run.returncode}]\n")
        lines = run.stdout.splitlines()
        fixture = {
            "source": f"Real: tests/captured/build-tools/git-{name}.txt, the fact's command on the development"
            f" machine (Debian 12, git 2.39.5), 2026-12-03: {what}.",
            "command": command,
            "arg": {"path": str(path), "ref": ref},
            "output": lines,
            "fact": GitCheckout().process(lines),
        }
        (FIXTURES / f"{name}.json").write_text(json.dumps(fixture, indent=2) + "\n")


if __name__ == "__main__":
    main()
