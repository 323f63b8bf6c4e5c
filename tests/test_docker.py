"""Grading in containers (`--backend docker`): the same grades as the local sandbox, hostile notebooks
contained by a real engine, nothing secret in the image.

These need a container engine and the grading image: `.ci/docker.sh` sets both up and runs them with
AUTOGRADER_DOCKER_TESTS=1 (AUTOGRADER_DOCKER_ENGINE=podman picks podman). Without it they skip, so
the main test run stays free of containers.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from autograder.course import Course
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.store import Store
from tests.probe import assert_bombs_contained
from tests.test_hostile import FIXTURES, HW1, LIMITS

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.environ.get("AUTOGRADER_DOCKER_TESTS") != "1",
                       reason="container tests: run .ci/docker.sh (sets AUTOGRADER_DOCKER_TESTS=1)"),
]

# Small models keep it quick: an MLP that reaches the threshold and a linear one below it.
SEEDED = ("honest_tiny_mlp", "linear_model")
HOSTILE = ["resource_bombs.ipynb", "hangs.ipynb", "kills_kernel.ipynb", "background_process.ipynb",
           "forges_results.ipynb"]


@pytest.fixture(scope="session")
def backend() -> dict[str, str]:
    """The engine and the grading image, set up (and built) if missing."""
    from autograder.sandbox.container_setup import setup

    started = time.monotonic()
    engine, image = setup(os.environ.get("AUTOGRADER_DOCKER_ENGINE") or None)
    print(f"\n[docker] engine {engine}, image {image} ready in {time.monotonic() - started:.1f} s")
    return {"engine": engine, "image": image}


def _grade(course: Course, assignment: str, subs: Path, out: Path, pool: Any,
           backend: dict[str, str] | None) -> dict[str, Any]:
    options = BatchOptions(limits=LIMITS, jobs=2, progress=False, backend=backend)
    started = time.monotonic()
    outcome = grade_batch(course.assignment(assignment), [subs], out, Store(out / "results.sqlite"), options,
                          executor=pool)
    return {"records": {r["submission"].split("/", 1)[1]: r for r in outcome.records},
            "seconds": time.monotonic() - started, "csv": (out / "final_grades.csv").read_text(encoding="utf-8")}


@pytest.fixture(scope="session")
def hw1_both(built_course: Course, engine_pool: Any, backend: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    work = tmp_path_factory.mktemp("docker-hw1")
    subs = work / "submissions"
    subs.mkdir()
    shutil.copy(built_course.root / "reference" / HW1 / "submissions" / "reference.ipynb", subs / "reference.ipynb")
    for name in HOSTILE:
        shutil.copy(FIXTURES / "hw1" / name, subs / name)
    return {"local": _grade(built_course, HW1, subs, work / "local", engine_pool, None),
            "docker": _grade(built_course, HW1, subs, work / "docker", engine_pool, backend)}


def _scores(record: dict[str, Any]) -> dict[str, float]:
    return {q["name"]: q["score"] for q in record["questions"]}


def _total(record: dict[str, Any]) -> float:
    return sum(q["score"] for q in record["questions"])


def test_hostile_notebooks_get_the_same_grades_in_containers(hw1_both: dict) -> None:
    local, docker = hw1_both["local"], hw1_both["docker"]
    assert sorted(docker["records"]) == sorted(local["records"]) == sorted(HOSTILE + ["reference.ipynb"])
    for name, record in docker["records"].items():
        assert record["status"] == "graded", (name, record["message"])
        assert _scores(record) == _scores(local["records"][name]), name
    assert docker["csv"] == local["csv"]
    print(f"\n[docker] hw1, {len(HOSTILE) + 1} notebooks, 2 at a time: local {local['seconds']:.1f} s, "
          f"docker {docker['seconds']:.1f} s")


def test_bombs_hit_the_container_limits(hw1_both: dict) -> None:
    """Memory, fork, thread, disk and output bombs each cost only their cell (as in test_hostile)."""
    assert_bombs_contained(hw1_both["docker"]["records"]["resource_bombs.ipynb"], LIMITS.memory_mb)


def test_hangs_and_dead_kernels_cost_only_their_cells(hw1_both: dict) -> None:
    records = hw1_both["docker"]["records"]
    statuses = [c["status"] for c in records["hangs.ipynb"]["cells"]]
    assert statuses.count("timeout") >= 2 and "error" in statuses and _total(records["hangs.ipynb"]) == 26
    assert records["kills_kernel.ipynb"]["restarts"] >= 2 and _total(records["kills_kernel.ipynb"]) == 26
    assert _total(records["forges_results.ipynb"]) == 0
    assert _total(records["background_process.ipynb"]) == 26


def test_no_container_outlives_its_submission(hw1_both: dict, backend: dict[str, str]) -> None:
    left = subprocess.run([backend["engine"], "ps", "--all", "--quiet", "--filter", "name=autograder-"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == []
    assert not list(Path("/tmp").glob("autograder-container-*"))


def test_probe_finds_no_secret_no_network_and_runs_unprivileged(built_course: Course,
                                                                   backend: dict[str, str]) -> None:
    from autograder.grading.material import Material
    from autograder.sandbox.container import ContainerSandbox
    from tests.probe import run_probe

    material = Material.load(built_course.assignment(HW1))
    with ContainerSandbox(LIMITS, material.home_files, **backend) as sandbox:
        found = run_probe(sandbox, LIMITS)
    leaked, network, visible = found["LEAKED"], found["NETWORK"], found["VISIBLE_ROOT"]
    uid, env, wrote = found["UID"], found["ENV_KEYS"], found["WROTE_OUTSIDE"]
    assert leaked == [], f"the notebook could read secrets at {leaked}"
    assert network.startswith("blocked"), network
    assert uid == 1000
    assert "reference" not in visible and "work" not in visible and wrote == []
    assert not any(key.startswith("AUTOGRADER_COURSE") for key in env)


def test_a_class_gets_identical_final_grades_from_both_backends(built_course: Course, engine_pool: Any,
                                                                backend: dict[str, str], tmp_path: Path) -> None:
    """hw3_losses' samples (reference, blank, realistic mistakes): final_grades.csv value for value."""
    subs = tmp_path / "hw3"
    shutil.copytree(built_course.root / "reference" / "hw3_losses" / "submissions", subs)
    local = _grade(built_course, "hw3_losses", subs, tmp_path / "local", engine_pool, None)
    docker = _grade(built_course, "hw3_losses", subs, tmp_path / "docker", engine_pool, backend)
    assert len(docker["records"]) >= 9
    assert all(r["status"] == "graded" for r in docker["records"].values())
    assert docker["csv"] == local["csv"]
    per_local = statistics.mean(r["seconds"] for r in local["records"].values())
    per_docker = statistics.mean(r["seconds"] for r in docker["records"].values())
    print(f"\n[docker] hw3 class of {len(docker['records'])} notebooks, 2 at a time: local "
          f"{local['seconds']:.1f} s, docker {docker['seconds']:.1f} s; per submission "
          f"{per_local:.2f} s local, {per_docker:.2f} s docker: a container adds {per_docker - per_local:+.2f} s")


def test_cli_grades_with_the_docker_backend(built_course: Course, backend: dict[str, str], tmp_path: Path) -> None:
    from autograder.cli import main

    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(built_course.root / "reference" / "hw3_losses" / "submissions" / "reference.ipynb", subs)
    code = main(["--course", str(built_course.root), "grade", "hw3_losses", str(subs), "--out", str(tmp_path / "out"),
                 "--backend", "docker", "--engine", backend["engine"], "--image", backend["image"], "--jobs", "1",
                 "--memory", "2500"])
    assert code == 0
    rows = (tmp_path / "out" / "final_grades.csv").read_text().splitlines()
    assert rows[2].endswith(",1.0,Completed"), rows


def test_kernel_start_overhead(backend: dict[str, str]) -> None:
    """How much longer a kernel takes to start (and run one cell) in a container: printed, not asserted."""
    from autograder.execution.session import NotebookSession
    from autograder.sandbox.container import ContainerSandbox
    from autograder.sandbox.local import LocalSandbox

    times: dict[str, list[float]] = {"local": [], "docker": []}
    for _ in range(3):
        for kind, make in (("local", lambda: LocalSandbox(LIMITS)),
                           ("docker", lambda: ContainerSandbox(LIMITS, **backend))):
            started = time.monotonic()
            with make() as sandbox:
                session = NotebookSession(sandbox, LIMITS, ["import numpy"])
                try:
                    assert [r.status for r in session.run()] == ["ok"]
                finally:
                    session.close()
            times[kind].append(time.monotonic() - started)
    local, docker = statistics.median(times["local"]), statistics.median(times["docker"])
    print(f"\n[docker] kernel start + one cell + teardown, median of 3: local {local:.2f} s, "
          f"docker {docker:.2f} s ({docker - local:+.2f} s)")


def test_the_containers_cpu_time_counts_its_threads_and_children(backend: dict[str, str]) -> None:
    """hw4's budget in a container: CPU time read from the container's cgroup, so a thread and a
    child process busy in the background count, and sleeping does not."""
    from autograder.execution.session import NotebookSession
    from autograder.sandbox.container import ContainerSandbox

    busy = ("import subprocess, sys, threading, time\n"
            "spin = 'import time\\nend = time.process_time() + 2\\nwhile time.process_time() < end: pass'\n"
            "child = subprocess.Popen([sys.executable, '-c', spin])\n"
            "worker = threading.Thread(target=exec, args=(spin,))\nworker.start()\n"
            "worker.join(); child.wait()\ntime.sleep(2)")
    with ContainerSandbox(LIMITS, **backend) as sandbox:
        session = NotebookSession(sandbox, LIMITS, [busy])
        try:
            assert [r.status for r in session.run()] == ["ok"]
            cpu = sandbox.cpu_seconds()
        finally:
            session.close()
    assert cpu is not None and 4.0 <= cpu < 4.0 + 6.0, cpu  # 2 s + 2 s busy, the sleep not, plus start-up


def test_image_holds_no_secret_and_the_host_versions(backend: dict[str, str]) -> None:
    import numpy
    import torch

    script = ("import os, sys, torch, numpy; print(os.getuid(), torch.__version__, numpy.__version__, "
              "sys.version_info[:2]); print(sorted(os.listdir('/usr/local/share/ca-certificates'))); "
              "print(open('/etc/ssl/certs/ca-certificates.crt').read().count('BEGIN'))")
    done = subprocess.run([backend["engine"], "run", "--rm", "--network", "none", backend["image"], "python", "-c",
                           script], capture_output=True, text=True, timeout=300, check=True)
    identity, cas, _count = done.stdout.splitlines()[-3:]
    assert identity == f"1000 {torch.__version__} {numpy.__version__} (3, 11)"
    assert cas == "[]"
    host_extra = list(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    bundle = subprocess.run([backend["engine"], "run", "--rm", "--network", "none", backend["image"], "cat",
                             "/etc/ssl/certs/ca-certificates.crt"], capture_output=True, text=True, check=True).stdout
    for cert in host_extra:  # the build's proxy CA stayed in the throw-away stage
        body = "".join(cert.read_text().split("-----")[2].split())[:200]
        assert body not in "".join(bundle.split())
    found = subprocess.run([backend["engine"], "run", "--rm", "--network", "none", backend["image"], "sh", "-c",
                            "find / -xdev \\( -name '*.ipynb' -o -name 'samples.toml' -o -name 'grading.toml' "
                            "-o -path '*/reference/hw*' -o -path '*/dist/hw*' -o -name 'MNIST' \\) -print 2>/dev/null"],
                           capture_output=True, text=True).stdout.split()
    assert found == []


def test_seeded_training_in_the_image_reproduces_the_hosts_weights(built_course: Course, engine_pool: Any,
                                                                   backend: dict[str, str], tmp_path: Path) -> None:
    """hw4 on synthetic MNIST: the same trained weights (hash), accuracy and verdicts in both backends,
    since the image has the host's package versions; the data reaches the container read-only."""
    import nbformat

    from autograder.authoring.samples import sample_notebooks
    from autograder.integrity.synthetic import write_synthetic_mnist

    raw = tmp_path / "data" / "MNIST" / "raw"
    write_synthetic_mnist(raw)
    subs = tmp_path / "hw4"
    subs.mkdir()
    samples = sample_notebooks(built_course.assignment("hw4_mnist"))
    for name in SEEDED:
        nbformat.write(samples[name], str(subs / f"{name}.ipynb"))
    records = {}
    for kind, chosen in (("local", None), ("docker", backend)):
        options = BatchOptions(overrides={"timeout": 150, "cell_timeout": 150, "threads": 1}, jobs=2,
                               progress=False, data_dir=raw, backend=chosen)
        outcome = grade_batch(built_course.assignment("hw4_mnist"), [subs], tmp_path / kind,
                              Store(tmp_path / f"{kind}.sqlite"), options, executor=engine_pool)
        records[kind] = {Path(r["filename"]).stem: r for r in outcome.records}
    for name in SEEDED:
        local, docker = records["local"][name]["integrity"], records["docker"][name]["integrity"]
        assert docker["weights_sha256"] and docker["weights_sha256"] == local["weights_sha256"], name
        assert (docker["measured_accuracy"], docker["flags"]) == (local["measured_accuracy"], local["flags"]), name
        assert _scores(records["docker"][name]) == _scores(records["local"][name]), name
    assert records["docker"]["honest_tiny_mlp"]["integrity"]["reproducible"] is True
    sheets = [(tmp_path / kind / "final_grades.csv").read_text() for kind in ("local", "docker")]
    assert sheets[0] == sheets[1]
