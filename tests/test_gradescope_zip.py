"""The Gradescope zip that `autograder build` emits: its content, and a real run of its setup.sh and
run_autograder in a container laid out like Gradescope's (and like Otter's image template).

The run needs a container engine (and registry access for setup.sh's installs): it is docker-marked
and runs in .ci/docker.sh. The content checks run everywhere.
"""

from __future__ import annotations

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
from tests.adversarial.test_persistence import READER, SYSV_KEYS, WRITER
from tests.test_hostile import LIMITS

HW3 = "hw3_losses"
HW4 = "hw4_mnist"
PROBE = '''
import json, os
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
# hw4 runs the notebook up to three times: this one changes its weights when it finds what an earlier
# run left (files where nobody may write, a daemon), so that it reproduces only if nothing persists.
CARRY = '''
import os, subprocess, sys
MARKERS = ["/tmp/.carried", "/var/tmp/.carried", "/dev/shm/.carried"]
DAEMON = "import os, time\\nif os.fork():\\n    os._exit(0)\\nos.setsid()\\ntime.sleep(3600)"
alive = subprocess.run(["pgrep", "-f", "carried-daemon"], capture_output=True).returncode == 0
if alive or any(os.path.exists(p) for p in MARKERS):
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
for p in MARKERS:
    try:
        open(p, "w").write("x")
    except OSError:
        pass
subprocess.Popen([sys.executable, "-c", DAEMON, "carried-daemon"], start_new_session=True).wait()
'''
# The persistence probe of tests/adversarial/test_persistence.py, run in Gradescope's layout: two
# kernels of the unprivileged sandbox one after the other, as root in the container, as run_autograder
# does; then what is left in the container.
DRIVER = '''
import json, os, sys
from autograder.execution.session import NotebookSession
from autograder.sandbox.limits import Limits
from autograder.sandbox.unprivileged import UnprivilegedSandbox

LIMITS = Limits(timeout=600, cell_timeout=240, memory_mb=1024, pids=64, output_kb=256, disk_mb=64)
WRITER, READER, PROBE = sys.argv[1:4]
TOKEN, SYSV = os.environ["TOKEN"], json.loads(os.environ["SYSV"])  # not in a command line the reader sees


def run(code):
    with UnprivilegedSandbox(LIMITS) as sandbox:
        session = NotebookSession(sandbox, LIMITS, [open(code).read()])
        try:
            report = session.run()[0]
        finally:
            session.close()
    assert report.status == "ok", (report.error, report.traceback)
    text = "".join(o.get("text", "") for o in report.outputs if o.get("output_type") == "stream")
    return json.loads(text.strip().splitlines()[-1])


wrote, seen, probe = run(WRITER), run(READER), run(PROBE)
left = [os.path.join(root, name) for top in ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue")
        for root, dirs, files in os.walk(top) for name in dirs + files if TOKEN in name]
for kind in ("shm", "msg", "sem"):
    left += ["sysv " + row for row in open("/proc/sysvipc/" + kind).read().splitlines()[1:]
             if int(row.split()[0]) in SYSV.values()]
json.dump({"wrote": wrote, "seen": seen, "left": left, "probe": probe}, open("/out/persistence.json", "w"))
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
    honest4 = sample_notebooks(built_course.assignment(HW4))["honest_tiny_mlp"]
    nbformat.write(honest4, str(hw4 / "hw4_mnist.ipynb"))
    honest4.cells.append(nbformat.v4.new_code_cell(CARRY))
    (hw4 / "carry").mkdir()
    nbformat.write(honest4, str(hw4 / "carry" / "hw4_mnist.ipynb"))
    token = uuid.uuid4().hex
    header = f"TOKEN, SYSV = {token!r}, {SYSV_KEYS!r}\n"
    (probe_dir / "writer.py").write_text(header + WRITER)
    (probe_dir / "reader.py").write_text(header + READER)
    (probe_dir / "probe.py").write_text(PROBE + "print(json.dumps({'uid': os.getuid(), 'found': found}))\n")
    (probe_dir / "driver.py").write_text(DRIVER)
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
test ! -e /tmp/gradescope-probe.txt  # swept after the kernel: nobody's files do not outlive it
/autograder/venv/bin/python /probe/driver.py /probe/writer.py /probe/reader.py /probe/probe.py
# hw4's zip (its setup.sh installs the very same requirements.txt: checked) with a leaderboard
cmp /zip/requirements.txt /zip4/requirements.txt
rm -rf /autograder/source/* /autograder/submission/* /autograder/results/*
cp -r /zip4/. /autograder/source/
cp /hw4/hw4_mnist.ipynb /autograder/submission/
AUTOGRADER_DATA=/data /autograder/run_autograder
cp /autograder/results/results.json /out/hw4.json
rm -rf /autograder/submission/* /autograder/results/*
cp /hw4/carry/hw4_mnist.ipynb /autograder/submission/
AUTOGRADER_DATA=/data /autograder/run_autograder
cp /autograder/results/results.json /out/carry.json
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
                           "--env", f"TOKEN={token}", "--env", f"SYSV={json.dumps(SYSV_KEYS)}",
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
    persistence = json.loads((out / "persistence.json").read_text())
    wrote = persistence["wrote"]["wrote"]
    assert persistence["seen"]["uid"] == persistence["wrote"]["uid"] == 65534
    for store in ("sysv shm", "sysv msg", "sysv sem", "posix queue", "file /tmp", "file /var/tmp",
                  "file /dev/shm", "abstract socket"):
        assert wrote[store] >= 0, (store, wrote)  # really written: a probe that writes nothing finds nothing
    assert persistence["seen"]["found"] == [] and persistence["left"] == [], persistence
    assert persistence["probe"]["uid"] == 65534  # and the grader material is unreadable to it:
    assert all(what == "denied" for _, what in persistence["probe"]["found"]), persistence["probe"]
    hw4_results = json.loads((out / "hw4.json").read_text())
    integrity = {t["name"]: t for t in hw4_results["tests"]}
    assert integrity["reproducibility"]["score"] == integrity["reproducibility"]["max_score"] > 0, hw4_results
    board = {entry["name"]: entry for entry in hw4_results["leaderboard"]}
    assert board["Accuracy (%)"]["value"] > 95 and board["Accuracy (%)"]["order"] == "desc"
    assert board["Parameters"]["value"] > 0 and board["Eligible"]["value"] == "yes"
    carried = {t["name"]: t for t in json.loads((out / "carry.json").read_text())["tests"]}
    assert carried["reproducibility"]["score"] == integrity["reproducibility"]["score"], carried
