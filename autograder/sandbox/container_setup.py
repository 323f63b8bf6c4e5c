"""Set up container grading on this machine: the engine, a local base image and the grading image.

    python -m autograder.sandbox.container_setup [--engine docker|podman] [--podman]

Idempotent, and quick when everything is there (a few `docker` calls). On a fresh Debian machine it
installs docker.io and debootstrap, starts dockerd (no systemd here), makes the base image
`localbase:bookworm` with debootstrap (no container registry is reachable) and builds the grading
image from the Dockerfile, tagged with a hash of what goes into it, so a change of the lock, the
Dockerfile or the package makes a new image. Prints the image tag on its last line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_NAME = "autograder-grader"
BASE_IMAGE = "localbase:bookworm"
CA_SOURCES = Path("/usr/local/share/ca-certificates")
DOCKERD_LOG = Path("/var/log/autograder-dockerd.log")
PODMAN_CONF = Path("/etc/containers/containers.conf")
# Root podman asks for 1048576 open files, which root may not set on these machines.
PODMAN_ULIMITS = '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
HASHED = ("Dockerfile", "pyproject.toml", "uv.lock")


class EngineUnavailable(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"container setup: {message}", file=sys.stderr, flush=True)


def _quiet(*argv: str, timeout: float = 60) -> bool:
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def engine_works(engine: str) -> bool:
    return shutil.which(engine) is not None and _quiet(engine, "info", timeout=30)


def find_engine(preferred: str | None = None) -> str:
    """`preferred` if it answers, else a running docker daemon, else podman."""
    if preferred:
        if not engine_works(preferred):
            raise EngineUnavailable(f"{preferred} does not answer (`{preferred} info` fails): run "
                                    f"`python -m autograder.sandbox.container_setup --engine {preferred}`")
        return preferred
    for engine in ("docker", "podman"):
        if engine_works(engine):
            return engine
    raise EngineUnavailable("no container engine answers (docker or podman): run "
                            "`python -m autograder.sandbox.container_setup`")


def image_tag(repo: Path = REPO) -> str:
    """autograder-grader:<hash of the Dockerfile, the project's lock and the autograder package>."""
    if not all((repo / name).is_file() for name in HASHED):
        return f"{IMAGE_NAME}:latest"  # an installed package, not a checkout: the last image built
    digest = hashlib.sha256()
    files = [repo / name for name in HASHED]
    files += sorted(p for p in (repo / "autograder").rglob("*.py") if "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{IMAGE_NAME}:{digest.hexdigest()[:12]}"


def base_name(engine: str) -> str:
    return f"localhost/{BASE_IMAGE}" if engine == "podman" else BASE_IMAGE


def image_exists(engine: str, image: str) -> bool:
    return _quiet(engine, "image", "inspect", image)


def _apt_install(packages: list[str]) -> None:
    log(f"installing {' '.join(packages)}")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=subprocess.DEVNULL)


def ensure_packages(podman: bool = False) -> None:
    wanted = {"dockerd": "docker.io", "debootstrap": "debootstrap"}
    if podman:
        wanted["podman"] = "podman"
        wanted["/usr/libexec/podman/catatonit"] = "catatonit"  # podman's --init (only recommended)
    missing = [package for binary, package in wanted.items()
               if (not Path(binary).exists() if binary.startswith("/") else shutil.which(binary) is None)]
    if missing:
        _apt_install(missing)


def ensure_podman_conf() -> None:
    if PODMAN_CONF.is_file() and "default_ulimits" in PODMAN_CONF.read_text():
        return
    PODMAN_CONF.parent.mkdir(parents=True, exist_ok=True)
    PODMAN_CONF.write_text(PODMAN_ULIMITS)


def ensure_dockerd(wait: float = 60.0) -> None:
    """Start dockerd in the background (there is no systemd) unless a daemon already answers."""
    if engine_works("docker"):
        return
    log(f"starting dockerd (log: {DOCKERD_LOG})")
    with open(DOCKERD_LOG, "ab") as out:
        subprocess.Popen(["dockerd"], stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if engine_works("docker"):
            return
        time.sleep(0.3)
    raise EngineUnavailable(f"dockerd did not answer within {wait:g} s; see {DOCKERD_LOG}")


def _debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def ensure_base(engine: str) -> str:
    """A minimal Debian bookworm with Python 3.11, made with debootstrap (no registry needed)."""
    name = base_name(engine)
    if image_exists(engine, name):
        return name
    log(f"making the base image {name} with debootstrap (about a minute)")
    with tempfile.TemporaryDirectory(prefix="autograder-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase",
                        "--include=python3,python3-pip,python3-venv,ca-certificates",
                        "bookworm", str(rootfs), _debian_mirror()], check=True, stdout=subprocess.DEVNULL)
        for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                        "usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*"):
            for path in rootfs.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([engine, "import", "--change", 'CMD ["python3"]', "--change", "ENV LANG=C.UTF-8",
                        "-", name], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError("tar of the base rootfs failed")
    return name


def _stage_context(repo: Path, into: Path) -> None:
    """Only what the image needs (no reference/, dist/ or hidden tests), plus the proxy's CA."""
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "README.md"):
        if (repo / name).is_file():
            shutil.copy2(repo / name, into / name)
    shutil.copytree(repo / "autograder", into / "autograder", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (into / "ca").mkdir()
    for cert in CA_SOURCES.glob("*.crt") if CA_SOURCES.is_dir() else []:
        shutil.copy2(cert, into / "ca" / cert.name)


def build_command(engine: str, context: Path, tag: str, base: str, build_args: dict[str, str]) -> tuple[list, dict]:
    args = [f"--build-arg=BASE={base}"] + [f"--build-arg={k}={v}" for k, v in build_args.items()]
    env = dict(os.environ)
    if engine == "docker" and Path("/usr/bin/docker").is_file() and "DOCKER_HOST" not in env:
        # Debian's 20.10 client drives BuildKit without buildx (the static 28.x client cannot).
        env["DOCKER_BUILDKIT"] = "1"
        return ["/usr/bin/docker", "build", "--progress=plain", *args, "-t", tag, str(context)], env
    env.pop("DOCKER_BUILDKIT", None)
    return [engine, "build", *args, "-t", tag, str(context)], env


def ensure_image(engine: str, tag: str | None = None, repo: Path = REPO, build_args: dict[str, str] | None = None,
                 force: bool = False) -> str:
    tag = tag or image_tag(repo)
    if image_exists(engine, tag) and not force:
        return tag
    base = ensure_base(engine)
    log(f"building {tag} with {engine} (a few minutes the first time)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autograder-image-") as tmp:
        context = Path(tmp)
        _stage_context(repo, context)
        command, env = build_command(engine, context, tag, base, build_args or {})
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building {tag} failed (exit {done.returncode}):\n{done.stdout[-6000:]}")
    subprocess.run([engine, "tag", tag, f"{IMAGE_NAME}:latest"], check=True)
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


def setup(engine: str | None = None, podman: bool = False, build: bool = True) -> tuple[str, str]:
    """Everything `autograder grade --backend docker` needs; returns (engine, image tag)."""
    if os.geteuid() == 0:
        ensure_packages(podman or engine == "podman")
        if podman or engine == "podman":
            ensure_podman_conf()
        if engine in (None, "docker"):
            ensure_dockerd()
    engine = find_engine(engine)
    tag = ensure_image(engine) if build else image_tag()
    return engine, tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.sandbox.container_setup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("docker", "podman"), help="default: a running docker, else podman")
    parser.add_argument("--podman", action="store_true", help="also install podman (and its open-files fix)")
    parser.add_argument("--no-build", action="store_true", help="set up the engine and print the tag only")
    args = parser.parse_args(argv)
    try:
        engine, tag = setup(args.engine, args.podman, build=not args.no_build)
    except (EngineUnavailable, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"container setup failed: {error}", file=sys.stderr)
        return 1
    log(f"engine {engine}, image {tag}")
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
