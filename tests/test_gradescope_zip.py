"""The Gradescope zip that `autograder build` emits: its content, and a real run of its setup.sh and
run_autograder in a container laid out like Gradescope's (and like Otter's image template).

The run needs a container engine (and registry access for setup.sh's installs): it is docker-marked
and runs in .ci/docker.sh. The content checks run everywhere.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder.authoring.gradescope_zip import write_gradescope_zip, zip_path
from autograder.authoring.samples import sample_notebooks
from autograder.course import Course
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.integrity.synthetic import write_synthetic_mnist
from autograder.store import Store
from tests.test_hostile import LIMITS

HW3 = "hw3_losses"
HW4 = "hw4_mnist"
PROBE = '''
import os
found = []
for path in ["/autograder/source/material/tests/q1.py", "/autograder/source/tests/q1.py",
             "/autograder/source/material/autograder.json", "/autograder/submission", "/autograder/results"]:
    try:
        found.append((path, os.listdir(path) if os.path.isdir(path) else open(path).read(20)))
    except OSError:
        found.append((path, "denied"))
with open("/tmp/gradescope-probe.txt", "w") as out:
    out.write(repr((os.getuid(), found)))
'''


def test_zip_holds_the_grader_material_and_is_reproducible(built_course: Course) -> None:
    assignment = built_course.assignment(HW3)
    path = zip_path(assignment)
    first = path.read_bytes()
    names = zipfile.ZipFile(path).namelist()
    assert {"setup.sh", "run_autograder", "requirements.txt", "material/autograder.json",
            "material/student/hw3_losses.ipynb", "package/autograder/cli.py"} <= set(names)
    hidden = [n for n in names if n.startswith("material/tests/")]
    assert hidden and any("hidden" in zipfile.ZipFile(path).read(n).decode() for n in hidden)
    assert not any(n.startswith(("reference/", "package/autograder/__pycache__")) for n in names)
    infos = {i.filename: i.external_attr >> 16 for i in zipfile.ZipFile(path).infolist()}
    assert infos["run_autograder"] & 0o111 and infos["setup.sh"] & 0o111
    requirements = zipfile.ZipFile(path).read("requirements.txt").decode()
    assert "torch==2.14.1" in requirements and "--hash=sha256:" in requirements
    write_gradescope_zip(assignment)
    assert path.read_bytes() == first


@pytest.mark.docker
@pytest.mark.skipif(os.environ.get("AUTOGRADER_DOCKER_TESTS") != "1",
                    reason="container tests: run .ci/docker.sh (sets AUTOGRADER_DOCKER_TESTS=1)")
def test_run_autograder_grades_the_samples_in_gradescopes_layout(built_course: Course, engine_pool: Any,
                                                                 tmp_path: Path) -> None:
    from autograder.sandbox.container_setup import ensure_base, setup

    engine, _ = setup(os.environ.get("AUTOGRADER_DOCKER_ENGINE") or None, build=False)
    base = ensure_base(engine)
    assignment = built_course.assignment(HW3)
    source = tmp_path / "source"
    with zipfile.ZipFile(zip_path(assignment)) as archive:
        archive.extractall(source)
    subs = tmp_path / "submissions"
    shutil.copytree(built_course.root / "reference" / HW3 / "submissions", subs)
    reference = json.loads((subs / "reference.ipynb").read_text())
    reference["cells"].append({"cell_type": "code", "execution_count": None, "id": "probe", "metadata": {},
                               "outputs": [], "source": PROBE})
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "probe.ipynb").write_text(json.dumps(reference))
    out = tmp_path / "out"
    out.mkdir()
    source4 = tmp_path / "source4"
    with zipfile.ZipFile(zip_path(built_course.assignment(HW4))) as archive:
        archive.extractall(source4)
    hw4 = tmp_path / "hw4"
    hw4.mkdir()
    nbformat.write(sample_notebooks(built_course.assignment(HW4))["honest_tiny_mlp"], str(hw4 / "hw4_mnist.ipynb"))
    write_synthetic_mnist(tmp_path / "data" / "MNIST" / "raw")
    # Gradescope: /autograder/source (the zip), setup.sh once as root, then per submission
    # /autograder/submission/<file> -> /autograder/run_autograder -> /autograder/results/results.json.
    # Otter's template also pre-creates results/results.pkl, which run_autograder then fills.
    script = r"""
set -e
mkdir -p /autograder/source /autograder/submission /autograder/results
cp -r /zip/. /autograder/source/
cp /autograder/source/run_autograder /autograder/run_autograder && chmod +x /autograder/run_autograder
bash /autograder/source/setup.sh
echo "setup.sh took $SECONDS s"
for nb in /subs/*.ipynb /probe/*.ipynb; do
    stem=$(basename "$nb" .ipynb)
    rm -rf /autograder/submission/* /autograder/results/*
    cp "$nb" /autograder/submission/
    touch /autograder/results/results.pkl
    /autograder/run_autograder
    cp /autograder/results/results.json "/out/$stem.json"
    cp /autograder/results/results.pkl "/out/$stem.pkl"
done
cp /tmp/gradescope-probe.txt /out/probe.txt
# hw4's zip (its setup.sh installs the very same requirements.txt: checked) with a leaderboard
cmp /zip/requirements.txt /zip4/requirements.txt
rm -rf /autograder/source/* /autograder/submission/* /autograder/results/*
cp -r /zip4/. /autograder/source/
cp /hw4/hw4_mnist.ipynb /autograder/submission/
AUTOGRADER_DATA=/data /autograder/run_autograder
cp /autograder/results/results.json /out/hw4.json
chmod -R a+rwX /out
"""
    ca = "/etc/ssl/certs/ca-certificates.crt"  # this machine's proxy CA, for setup.sh's downloads
    name = f"autograder-gradescope-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    done = subprocess.run([engine, "run", "--name", name, "--volume", f"{source}:/zip:ro",
                           "--volume", f"{subs}:/subs:ro", "--volume", f"{probe_dir}:/probe:ro",
                           "--volume", f"{source4}:/zip4:ro", "--volume", f"{hw4}:/hw4:ro",
                           "--volume", f"{tmp_path / 'data'}:/data:ro",
                           "--volume", f"{out}:/out", "--volume", f"{ca}:{ca}:ro", "--env", f"SSL_CERT_FILE={ca}",
                           base, "bash", "-c", script], capture_output=True, text=True, timeout=1500)
    subprocess.run([engine, "rm", "--force", name], capture_output=True)
    print(f"\n[gradescope] setup.sh + {len(list(subs.glob('*.ipynb'))) + 1} submissions in a container: "
          f"{time.monotonic() - started:.0f} s")
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]

    local = grade_batch(built_course.assignment(HW3), [subs], tmp_path / "local", Store(tmp_path / "db.sqlite"),
                        BatchOptions(limits=LIMITS, jobs=2, progress=False), executor=engine_pool)
    expected = {Path(r["filename"]).stem: r for r in local.records}
    import dill

    for stem, record in expected.items():
        results = json.loads((out / f"{stem}.json").read_text())
        scores = {t["name"]: t["score"] for t in results["tests"]}
        assert scores == {q["name"]: q["score"] for q in record["questions"]}, stem
        assert results["score"] == sum(q["score"] for q in record["questions"])
        assert "leaderboard" not in results  # hw3 has none; hw4's results carry it
        with open(out / f"{stem}.pkl", "rb") as handle:
            otter_results = dill.load(handle)
        assert otter_results.total == pytest.approx(results["score"]), stem
    probe = json.loads((out / "probe.json").read_text())
    assert probe["score"] == json.loads((out / "reference.json").read_text())["score"]
    uid, found = ast.literal_eval((out / "probe.txt").read_text())
    assert uid == 65534
    assert all(what == "denied" for _, what in found), found
    hw4_results = json.loads((out / "hw4.json").read_text())
    integrity = {t["name"]: t for t in hw4_results["tests"]}
    assert integrity["reproducibility"]["score"] == integrity["reproducibility"]["max_score"] > 0, hw4_results
    board = {entry["name"]: entry for entry in hw4_results["leaderboard"]}
    assert board["Accuracy (%)"]["value"] > 95 and board["Accuracy (%)"]["order"] == "desc"
    assert board["Parameters"]["value"] > 0 and board["Eligible"]["value"] == "yes"
