"""The evaluation's fork server (integrity/evaluation_server.py), with real processes throughout.

What is proved here: evaluations run on one long-lived server unless a switch says otherwise; a
child that scribbles over every writable page it has, or leaves files, threads, a daemon, changed
signal handlers behind, changes nothing for the next evaluation or for the server; a child ended
by the backstop, SIGKILL, the CPU or the memory limit gets the verdict it gets in a fresh
interpreter, and the server goes on; a server killed between or during evaluations costs a restart
or a retry, never a wrong verdict; a server that is not safe to fork from refuses, and evaluations
fall back to fresh interpreters; the CPU a child burns in threads is charged to it; the server
dies with the grading process. Hostile children are simulated by a test server whose child runs
hostile code in place of the model's evaluation (`HOSTILE`), after the real confinement: what a
student who escaped GraphModel could do. No wall-clock durations are asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

from autograder.execution import codec
from autograder.integrity import evaluation_server, mnist
from autograder.integrity.evaluation import (
    CPU,
    CRASHED,
    LIMIT,
    MEMORY,
    OK,
    WALL,
    Evaluation,
    EvaluationLimits,
    evaluate,
)
from autograder.integrity.evaluation_server import SERVER_BOOT, EvaluationServer, using
from autograder.integrity.model_export import GraphModel
from autograder.integrity.synthetic import make_synthetic_mnist
from autograder.sandbox.cgroups import CgroupSet
from tests.exports import MEAN, STD, over_the_wall, trained_export, write_split

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server is Linux only")]

REPO = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0  # another process's maps, fds and memory: the server is not dumpable
needs_root = pytest.mark.skipif(not ROOT, reason="reads another process's fds and memory")
MODES = [pytest.param(True, id="cgroup", marks=pytest.mark.skipif(not CgroupSet.usable(), reason="no cgroup")),
         pytest.param(False, id="rlimit")]





@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("evaluation-server")
    rng = np.random.default_rng(1)
    train = make_synthetic_mnist(600, rng)
    splits = {"test": write_split(folder, "test", *make_synthetic_mnist(1000, rng))}
    big = rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10_000, dtype=np.uint8)
    return {"train": train, "splits": splits, "big": write_split(folder, "big", *big), "folder": folder}


@pytest.fixture(scope="module")
def honest(data: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    return trained_export(model, *data["train"], steps=20)


@pytest.fixture(scope="module")
def expected(honest: dict[str, Any], data: dict[str, Any]) -> dict[str, float]:
    """The honest export's accuracies computed here, in-process, with the child's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = GraphModel(honest)
        result = {name: mnist.accuracy(model, mnist.read_idx(images), mnist.read_idx(labels), MEAN, STD)
                  for name, (images, labels) in data["splits"].items()}
    finally:
        torch.set_num_threads(threads)
    assert result["test"] > 0.5
    return result


@pytest.fixture(scope="module")
def heavy() -> dict[str, Any]:
    """A legal MLP that takes minutes of CPU on 10,000 images (tests/test_evaluation.py)."""
    torch.manual_seed(0)
    return over_the_wall(nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                                       nn.Linear(2048, 10)))


class _Hungry(nn.Module):
    """Within GraphModel's caps, 512 MB of intermediates per batch (tests/test_evaluation.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.wide, self.out = nn.Linear(784, 16_000), nn.Linear(16_000, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.wide(x)) * 1.0 + 0.0)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def state_of(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z, ...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def recording(into: list[tuple[int, int]]) -> Callable[[int], None]:
    """An on_start that records each child's pid and its parent's."""
    return lambda pid: into.append((pid, parent_of(pid)))


def server_pid() -> int:
    server = evaluation_server.current()
    assert server is not None and server.alive()
    return server.pid


def fds_of(pid: int) -> dict[str, str]:
    links = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            links[name] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return links


def holders(link: str) -> set[int]:
    """Every process with a descriptor on `link` (socket:[inode])."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if link in fds_of(int(entry)).values():
                    found.add(int(entry))
            except OSError:
                pass
    return found


def assert_healthy(pid: int) -> None:
    """The server: alive, one thread, no writable shared mapping, its four descriptors only (the last
    two read as root only: the server is not dumpable)."""
    assert state_of(pid) in ("S", "R"), state_of(pid)
    assert os.listdir(f"/proc/{pid}/task") == [str(pid)]
    if not ROOT:
        return
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    assert not [line for line in maps if line.split()[1][1] == "w" and line.split()[1][3] == "s"]
    fds = fds_of(pid)
    assert sorted(fds) == sorted(["0", "1", "2", next(n for n, link in fds.items() if link.startswith("socket:"))])
    assert fds["0"] == fds["1"] == "/dev/null"


# --- the server by default, and the switches --------------------------------------------------------

def test_evaluations_share_one_server_unless_a_switch_asks_for_a_fresh_interpreter(
        honest: dict[str, Any], data: dict[str, Any], expected: dict[str, float],
        monkeypatch: pytest.MonkeyPatch) -> None:
    children: list[tuple[int, int]] = []
    first = evaluate(honest, MEAN, STD, data["splits"], on_start=recording(children))
    second = evaluate(honest, MEAN, STD, data["splits"], on_start=recording(children))
    server = server_pid()
    assert [parent for _, parent in children] == [server, server]  # forked by the server, not started here
    assert first.accuracies == second.accuracies == expected and first.kind == second.kind == OK
    assert_healthy(server)

    fresh = evaluate(honest, MEAN, STD, data["splits"], EvaluationLimits(server=False), on_start=recording(children))
    monkeypatch.setenv(evaluation_server.SWITCH, "0")
    switched = evaluate(honest, MEAN, STD, data["splits"], on_start=recording(children))
    assert [parent for _, parent in children[2:]] == [os.getpid(), os.getpid()]
    assert fresh.accuracies == switched.accuracies == expected
    assert fresh.cpu_seconds > second.cpu_seconds  # a fresh interpreter imports torch; a forked child does not
    assert server_pid() == server


# --- hostile children ------------------------------------------------------------------------------

# Run in the test server before `serve`: the child evaluates a {"hostile": [...]} export by doing
# those things after its confinement (where a model's evaluation would run), then evaluating the
# honest export saved in `scratch`. Any other export is evaluated as usual.
HOSTILE = textwrap.dedent('''
    import autograder.integrity.evaluation as _evaluation

    _honest_evaluation = _evaluation._evaluate_here

    def _hostile(control):
        import json, os, signal, sys, threading, time
        from pathlib import Path
        from autograder.execution import codec
        request = codec.decode(json.loads(Path(control["export"]).read_text()))
        if not (isinstance(request, dict) and "hostile" in request):
            return _honest_evaluation(control)
        acts, scratch = request["hostile"], Path(request["scratch"])
        if "inspect" in acts:
            report = {"fds": {}, "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0),
                      "cwd": os.getcwd(), "modules": sorted(sys.modules),
                      "threads": len(os.listdir("/proc/self/task")), "signals": SIGNALS()}
            for name in os.listdir("/proc/self/fd"):
                try:
                    report["fds"][name] = os.readlink("/proc/self/fd/" + name)
                except OSError:
                    pass
            (scratch / ("inspect-%d.json" % os.getpid())).write_text(json.dumps(report))
        if "files" in acts:
            Path("left-behind").write_text("x")
            (scratch / ("left-%d" % os.getpid())).write_text("x")
        if "thread" in acts:
            threading.Thread(target=time.sleep, args=(3600,), name="left-behind").start()
        if "fds" in acts:
            kept = [os.open(os.devnull, os.O_RDONLY) for _ in range(20)]
        if "daemon" in acts:
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    (scratch / "daemon.pid").write_text(str(os.getpid()))
                    time.sleep(600)
                os._exit(0)
            os.wait()
            while not (scratch / "daemon.pid").exists():
                time.sleep(0.01)
        if "signals" in acts:
            for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
                signal.signal(number, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2, signal.SIGALRM])
        if "burn" in acts:
            def burn():
                while time.thread_time() < request["burn"]:
                    pass
            burners = [threading.Thread(target=burn) for _ in range(2)]
            for burner in burners:
                burner.start()
            for burner in burners:
                burner.join()
        return _honest_evaluation(dict(control, export=str(scratch / "honest.json")))

    _evaluation._evaluate_here = _hostile
''')

SIGNALS = textwrap.dedent('''
    def SIGNALS():
        import signal
        state = {}
        for number in signal.valid_signals():
            try:
                state[str(int(number))] = repr(signal.getsignal(number))
            except (OSError, ValueError):
                pass
        state["mask"] = sorted(int(n) for n in signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return state
''')

HOSTILE_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
                f"exec(compile({SIGNALS + HOSTILE!r}, 'hostile', 'exec')); "
                "from autograder.integrity.evaluation_server import serve; serve(sys.argv[2:])")

ALLOWED_AUTOGRADER = {"autograder", "autograder.execution", "autograder.execution.codec", "autograder.integrity",
                      "autograder.integrity.evaluation", "autograder.integrity.evaluation_server",
                      "autograder.integrity.mnist", "autograder.integrity.model_export", "autograder.sandbox",
                      "autograder.sandbox.cgroups"}
FOREIGN = ("IPython", "zmq", "jupyter_client", "nbclient", "nbformat", "otter", "ipykernel", "tornado")


def fresh_signals() -> dict[str, str]:
    """A fresh interpreter's signal dispositions and mask, started as the grader starts processes."""
    code = SIGNALS + "\nimport json\nprint(json.dumps(SIGNALS()))"
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL)
    return json.loads(done.stdout)


@pytest.fixture(scope="class")
def hostile_server() -> Iterator[EvaluationServer]:
    """The test server, for the tests of one class (the others run on the grader's own server)."""
    with using(EvaluationServer(1, HOSTILE_BOOT)) as server:
        yield server


class TestHostileChildren:
    @pytest.fixture()
    def scratch(self, tmp_path: Path, honest: dict[str, Any]) -> Path:
        (tmp_path / "honest.json").write_text(json.dumps(codec.encode(honest)))
        return tmp_path

    @needs_root
    @pytest.mark.parametrize("cgroup", MODES)
    def test_what_a_child_leaves_behind_changes_nothing_for_the_next(
            self, cgroup: bool, hostile_server: EvaluationServer, scratch: Path, honest: dict[str, Any],
            data: dict[str, Any], expected: dict[str, float]) -> None:
        limits = EvaluationLimits(cgroup=cgroup)
        before = evaluate(honest, MEAN, STD, data["splits"], limits)
        server = hostile_server.pid
        sockets = fds_of(server)

        acts = ["inspect", "files", "thread", "fds", "daemon", "signals"]
        hostile = evaluate({"hostile": acts, "scratch": str(scratch)}, MEAN, STD, data["splits"], limits)
        daemon = int((scratch / "daemon.pid").read_text())
        try:
            # The daemon outlives the child only without a cgroup (the cgroup's removal kills what is
            # in it), as it would with a fresh interpreter.
            assert (state_of(daemon) in (None, "Z")) == cgroup
            assert (hostile.kind, hostile.accuracies) == (OK, expected)  # a leftover thread does not hold it
            after = evaluate(honest, MEAN, STD, data["splits"], limits)
            later = evaluate({"hostile": ["inspect"], "scratch": str(scratch)}, MEAN, STD, data["splits"], limits)
        finally:
            if state_of(daemon) not in (None, "Z"):
                os.kill(daemon, signal.SIGKILL)
        assert (after.kind, after.accuracies) == (before.kind, before.accuracies) == (OK, expected)
        assert later.accuracies == expected
        assert hostile_server.pid == server and hostile_server.alive()
        assert_healthy(server)
        assert fds_of(server) == sockets  # the same descriptors, the same socket
        ours = os.readlink(f"/proc/self/fd/{hostile_server.sock.fileno()}")  # type: ignore[union-attr]
        theirs = next(link for link in sockets.values() if link.startswith("socket:"))
        assert holders(theirs) == {server} and holders(ours) == {os.getpid()}  # no child or daemon kept one

        reports = [json.loads(path.read_text()) for path in sorted(scratch.glob("inspect-*.json"))]
        assert len(reports) == 2
        signals = fresh_signals()
        for report in reports:  # what the child's code sees, before and after a child changed its own
            assert report["ppid"] == server and report["pgid"] == report["pid"] != server
            assert report["fds"] == {"0": "/dev/null", "1": "/dev/null", "2": f"{report['cwd']}/stderr.txt"}
            assert report["signals"] == signals  # a fresh interpreter's dispositions and mask
            assert report["threads"] == 1
            assert {m for m in report["modules"] if m.split(".")[0] == "autograder"} <= ALLOWED_AUTOGRADER
            assert not [m for m in report["modules"] if m.split(".")[0] in FOREIGN]
        assert reports[0]["cwd"] != reports[1]["cwd"]

    def test_cpu_burnt_in_threads_is_the_childs(self, hostile_server: EvaluationServer, scratch: Path,
                                                data: dict[str, Any], expected: dict[str, float]) -> None:
        # Two threads, each until its own CPU time reaches 1 s: 2 s of the child's at least.
        burnt = evaluate({"hostile": ["burn"], "scratch": str(scratch), "burn": 1.0}, MEAN, STD, data["splits"])
        assert (burnt.kind, burnt.accuracies) == (OK, expected)
        assert burnt.cpu_seconds >= 2.0, burnt
        # and RLIMIT_CPU counts them: two threads of 3 s each against a limit of 1 s
        stopped = evaluate({"hostile": ["burn"], "scratch": str(scratch), "burn": 3.0}, MEAN, STD, data["splits"],
                           EvaluationLimits(cpu_seconds=1))
        assert (stopped.kind, stopped.limit) == (LIMIT, CPU)
        assert 1.0 <= stopped.cpu_seconds < 6.0, stopped
        assert hostile_server.alive()
        assert_healthy(hostile_server.pid)


def scribble(pid: int) -> tuple[bytes, list[int]]:
    """The child stopped, then a marker written at every resident page of every writable mapping it
    has (and the first page of each), through /proc/<pid>/mem: as if the child wrote them itself."""
    os.kill(pid, signal.SIGSTOP)
    assert wait_for(lambda: state_of(pid) == "T")
    marker, written = os.urandom(16), []
    mem = os.open(f"/proc/{pid}/mem", os.O_RDWR)
    pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            span, perms = line.split()[:2]
            if perms[1] != "w":
                continue
            start, end = (int(value, 16) for value in span.split("-"))
            entries = np.frombuffer(os.pread(pagemap, (end - start) // 4096 * 8, start // 4096 * 8), np.uint64)
            pages = set(np.flatnonzero(entries >> np.uint64(63)).tolist()) | {0}
            for page in sorted(pages):
                try:
                    os.pwrite(mem, marker, start + page * 4096)
                    written.append(start + page * 4096)
                except OSError:
                    pass
    finally:
        os.close(mem)
        os.close(pagemap)
    os.kill(pid, signal.SIGKILL)
    return marker, written


@needs_root
def test_a_child_that_writes_into_every_writable_mapping_changes_nothing_in_the_server(
        honest: dict[str, Any], data: dict[str, Any], expected: dict[str, float]) -> None:
    evaluate(honest, MEAN, STD, data["splits"])
    server = server_pid()
    found: list[tuple[bytes, list[int]]] = []
    scribbled = evaluate(honest, MEAN, STD, data["splits"], on_start=lambda pid: found.append(scribble(pid)))
    assert (scribbled.kind, scribbled.limit) == (LIMIT, CRASHED)
    marker, written = found[0]
    checked = 0
    mem = os.open(f"/proc/{server}/mem", os.O_RDONLY)
    try:
        for address in written:
            try:
                seen = os.pread(mem, len(marker), address)
            except OSError:
                continue  # not mapped in the server (the child's own mapping)
            checked += 1
            assert seen != marker, hex(address)
    finally:
        os.close(mem)
    assert checked > 10_000, (checked, len(written))  # most of ~400 MB of the server's pages
    after = evaluate(honest, MEAN, STD, data["splits"])
    assert (after.kind, after.accuracies) == (OK, expected)
    assert server_pid() == server
    assert_healthy(server)


# --- limits on the server, and the next evaluation ---------------------------------------------------

def _killed_later(pid: int) -> None:
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()  # mid-way through minutes of work


LIMIT_CASES = {
    "backstop": (WALL, lambda d: ("honest", d["splits"], EvaluationLimits(wall_seconds=1),
                                  lambda pid: os.kill(pid, signal.SIGSTOP))),
    "sigkill": (CRASHED, lambda d: ("heavy", {"a": d["big"]}, EvaluationLimits(), _killed_later)),
    "cpu": (CPU, lambda d: ("heavy", {"a": d["big"], "b": d["big"]}, EvaluationLimits(cpu_seconds=1), None)),
}


@pytest.mark.parametrize("case", LIMIT_CASES, ids=LIMIT_CASES)
def test_a_child_ended_by_a_limit_gets_its_verdict_and_the_server_goes_on(
        case: str, honest: dict[str, Any], heavy: dict[str, Any], data: dict[str, Any],
        expected: dict[str, float]) -> None:
    evaluate(honest, MEAN, STD, data["splits"])
    server = server_pid()
    limit, make = LIMIT_CASES[case]
    which, splits, limits, on_start = make(data)
    ended = evaluate({"honest": honest, "heavy": heavy}[which], MEAN, STD, splits, limits, on_start=on_start)
    assert (ended.kind, ended.limit, ended.accuracies) == (LIMIT, limit, {}), ended
    after = evaluate(honest, MEAN, STD, data["splits"])
    assert (after.kind, after.accuracies) == (OK, expected)
    assert server_pid() == server
    assert_healthy(server)


@pytest.mark.parametrize("cgroup", MODES)
def test_a_child_out_of_memory_gets_its_verdict_and_the_server_goes_on(
        cgroup: bool, honest: dict[str, Any], data: dict[str, Any], expected: dict[str, float]) -> None:
    limits = EvaluationLimits(cgroup=cgroup)
    first = evaluate(honest, MEAN, STD, data["splits"], limits)
    server = server_pid()
    fresh = evaluate(honest, MEAN, STD, data["splits"], replace_server(limits, False))
    # The peaks are comparable: the server's share is counted in (a few percent apart)
    assert abs(first.peak_memory_mb - fresh.peak_memory_mb) < 0.1 * fresh.peak_memory_mb, (first, fresh)
    limit_mb = int(first.peak_memory_mb + 200)  # the hungry model needs ~700 MB more
    hungry = evaluate(over_the_wall(_Hungry()), MEAN, STD, data["splits"],
                      EvaluationLimits(memory_mb=limit_mb, cgroup=cgroup))
    assert (hungry.kind, hungry.limit) == (LIMIT, MEMORY), hungry
    assert f"{limit_mb} MB" in hungry.error
    after = evaluate(honest, MEAN, STD, data["splits"], limits)
    assert (after.kind, after.accuracies) == (OK, expected)
    assert server_pid() == server
    assert_healthy(server)


def replace_server(limits: EvaluationLimits, server: bool) -> EvaluationLimits:
    from dataclasses import replace

    return replace(limits, server=server)


# --- a lost server ---------------------------------------------------------------------------------

def test_a_server_killed_between_evaluations_is_replaced(
        honest: dict[str, Any], data: dict[str, Any], expected: dict[str, float]) -> None:
    evaluate(honest, MEAN, STD, data["splits"])
    server = server_pid()
    os.kill(server, signal.SIGKILL)
    assert wait_for(lambda: state_of(server) in (None, "Z"))
    children: list[tuple[int, int]] = []
    after = evaluate(honest, MEAN, STD, data["splits"], on_start=recording(children))
    assert (after.kind, after.accuracies) == (OK, expected)
    assert server_pid() != server and children == [(children[0][0], server_pid())]  # a new server's child
    assert_healthy(server_pid())


def test_a_server_killed_during_an_evaluation_costs_a_retry_not_a_verdict(
        honest: dict[str, Any], data: dict[str, Any], expected: dict[str, float]) -> None:
    evaluate(honest, MEAN, STD, data["splits"])
    server = server_pid()
    children: list[tuple[int, int]] = []

    def kill_the_server(pid: int) -> None:
        recording(children)(pid)
        if len(children) == 1:
            os.kill(server, signal.SIGKILL)
            assert wait_for(lambda: state_of(pid) in (None, "Z"))  # its child dies with it

    during = evaluate(honest, MEAN, STD, data["splits"], on_start=kill_the_server)
    assert (during.kind, during.accuracies) == (OK, expected)
    assert [parent for _, parent in children] == [server, os.getpid()]  # retried in a fresh interpreter
    after = evaluate(honest, MEAN, STD, data["splits"], on_start=recording(children))
    assert (after.kind, after.accuracies) == (OK, expected)
    assert children[2][1] == server_pid() != server


@pytest.mark.parametrize("unsafe", [
    pytest.param("import threading, time; threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()",
                 id="a-thread"),
    pytest.param("import mmap; shared = mmap.mmap(-1, 4096)", id="a-shared-mapping"),  # MAP_SHARED by default
])
def test_a_server_unsafe_to_fork_from_refuses_and_evaluations_start_fresh(
        unsafe: str, honest: dict[str, Any], data: dict[str, Any], expected: dict[str, float],
        caplog: pytest.LogCaptureFixture) -> None:
    children: list[tuple[int, int]] = []
    with using(EvaluationServer(1, f"{unsafe}; {SERVER_BOOT}")) as server:
        first = evaluate(honest, MEAN, STD, data["splits"], on_start=recording(children))
        second = evaluate(honest, MEAN, STD, data["splits"], on_start=recording(children))
        assert server.process is not None and server.process.returncode is not None  # ended
        assert evaluation_server.current() is None
    reason = "threads" if "thread" in unsafe else "a writable shared mapping"
    assert [r for r in caplog.records if "refused to serve" in r.getMessage() and reason in r.getMessage()]
    assert first.accuracies == second.accuracies == expected
    assert [parent for _, parent in children] == [os.getpid(), os.getpid()]  # not asked again


# --- the server's own life ---------------------------------------------------------------------------

def test_a_server_started_from_a_thread_that_ends_and_with_sigchld_ignored_lives_on(
        honest: dict[str, Any], data: dict[str, Any], expected: dict[str, float]) -> None:
    results: list[Evaluation] = []
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the server's children must still be reaped by it
    try:
        with using(EvaluationServer(1)) as server:
            thread = threading.Thread(target=lambda: results.append(evaluate(honest, MEAN, STD, data["splits"])))
            thread.start()
            thread.join()
            pid = server.pid
            time.sleep(0.2)  # PR_SET_PDEATHSIG would have killed it when that thread ended
            results.append(evaluate(honest, MEAN, STD, data["splits"]))
            assert server.pid == pid and server.alive() and evaluation_server.current() is server
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert [(r.kind, r.accuracies) for r in results] == [(OK, expected)] * 2
    assert wait_for(lambda: state_of(pid) in (None, "Z"))  # stopped when `using` ended


GRADER = textwrap.dedent('''
    import atexit, json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from autograder.execution import codec
    from autograder.integrity import evaluation_server
    from autograder.integrity.evaluation import evaluate
    export = codec.decode(json.loads(Path(sys.argv[2]).read_text()))
    splits = {"test": (sys.argv[3], sys.argv[4])}
    servers = []
    # registered before the server's own exit handler, so run after it: how the server ended
    atexit.register(lambda: print(json.dumps({"exit": servers[0].process.returncode}), flush=True))
    result = evaluate(export, 0.1307, 0.3081, splits)
    servers.append(evaluation_server.current())
    print(json.dumps({"server": servers[0].pid, "kind": result.kind}), flush=True)
    if sys.argv[5] == "wait":
        time.sleep(600)
''')


@pytest.mark.parametrize("end", ["killed", "exits"])
def test_the_server_dies_with_the_grading_process(end: str, honest: dict[str, Any], data: dict[str, Any],
                                                  tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text(json.dumps(codec.encode(honest)))
    images, labels = data["splits"]["test"]
    grader = subprocess.Popen([sys.executable, "-c", GRADER, str(REPO), str(tmp_path / "export.json"), str(images),
                               str(labels), "wait" if end == "killed" else "exit"],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        report = json.loads(grader.stdout.readline())  # type: ignore[union-attr]
        assert report["kind"] == OK and parent_of(report["server"]) == grader.pid
        if end == "killed":
            grader.kill()  # no exit handler runs: PR_SET_PDEATHSIG ends the server
            assert grader.wait(60) == -signal.SIGKILL
        else:  # stopped at exit: its socket closed, it ended by itself
            assert json.loads(grader.stdout.readline()) == {"exit": 0}  # type: ignore[union-attr]
            assert grader.wait(60) == 0
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()
    assert wait_for(lambda: state_of(report["server"]) in (None, "Z"))
