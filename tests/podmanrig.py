"""Building and running the container image with podman, offline from registries.

This machine reaches no container registry, so the image's base is made
here: a minimal Debian bookworm (``debootstrap``, from the mirror the
machine's apt sources name) with Python, imported as a local image. It is
kept by name across runs and made again only when missing; the image itself
is built once per test session from the repository's Containerfile.

podman runs with a containers.conf of our own (``CONTAINERS_CONF``): the
``runc`` runtime and default ulimits the kernel here grants. Nothing under
/etc is changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/blackhole-test-base:bookworm"
IMAGE = "localhost/blackhole-test:latest"
BUILD_IMAGE = "localhost/blackhole-test-build:latest"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""
TOOLS = ("podman", "runc", "debootstrap")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def debian_mirror(apt: Path = Path("/etc/apt")) -> str | None:
    """The first Debian archive (not the security one) the apt sources name."""
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]
    pattern = re.compile(r"^(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+)", re.MULTILINE)
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in pattern.findall(text):
            if "security" not in uri and uri.rstrip("/").endswith("debian"):
                return uri
    return None


class Podman:
    def __init__(self, workdir: Path) -> None:
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.workdir = workdir

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=stdin.decode() if stdin is not None else None,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def image_id(self, image: str) -> str | None:
        done = self.run("image", "inspect", "--format", "{{.Id}}", image, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def ensure_base(self, mirror: str) -> None:
        """The Debian base image: made with debootstrap unless already there."""
        if self.exists(BASE_IMAGE):
            return
        root = self.workdir / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase",
             "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(root), mirror],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["podman", "import", "-", BASE_IMAGE],
            stdin=tar.stdout, env=self.env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        assert tar.wait() == 0
        shutil.rmtree(root, ignore_errors=True)

    def build(self) -> None:
        """The image from the Containerfile, and its build stage, both by name.

        Tagging the build stage too (built first, then reused from the layer
        cache) lets a rebuild remove the images it replaces: nothing is left
        untagged to pile up in podman's storage.
        """
        for target, tag in (("build", BUILD_IMAGE), (None, IMAGE)):
            previous = self.image_id(tag)
            self.run(
                "build", "--format", "docker",  # docker format: keeps HEALTHCHECK
                "--build-arg", f"BASE={BASE_IMAGE}",
                # pip inside the build reaches the package index through this
                # machine's TLS interception: it needs the host's CA bundle.
                "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
                *(("--target", target) if target else ()),
                "-t", tag, "-f", str(REPO / "Containerfile"), str(REPO),
                timeout=600,
            )  # fmt: skip
            if previous is not None and previous != self.image_id(tag):
                self.run("rmi", previous, check=False)

    def secret(self, name: str, data: bytes) -> None:
        self.run("secret", "rm", name, check=False)
        self.run("secret", "create", name, "-", stdin=data)

    def port(self, container: str, port: int) -> int:
        out = self.run("port", container, f"{port}/tcp").stdout.strip()
        return int(out.rsplit(":", 1)[1])

    def logs(self, container: str) -> str:
        done = self.run("logs", container, check=False)
        return done.stdout + done.stderr

    def remove(self, container: str, secrets: Sequence[str]) -> None:
        self.run("rm", "-f", "-t", "0", container, check=False)
        for name in secrets:
            self.run("secret", "rm", name, check=False)
