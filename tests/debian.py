"""Debian packages a test needs, installed when missing (the README's promise: `make test`
sets up what it needs).  apt-get as root, else through ``sudo -n``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable


def install(package: str, present: Callable[[], bool]) -> list[str]:
    """Install ``package`` unless ``present()``; what went wrong, for a failure message."""
    if present():
        return []
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and shutil.which("sudo") is None:
        return ["not root, and no sudo to run apt-get with"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    problems = []
    # A stale package list is the usual cause of a failed install: update, then try again.
    for command in (["install", "-y", package], ["update"], ["install", "-y", package]):
        done = subprocess.run(
            [*prefix, "apt-get", *command], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            problems.append(f"$ apt-get {' '.join(command)}: {done.stderr.strip()[-800:]}")
        if present():
            return problems
    return problems
