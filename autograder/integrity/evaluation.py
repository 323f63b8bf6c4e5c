"""The grader's evaluation of an exported model, in a child process with limits of its own.

A hw4 export is student data: `GraphModel` refuses anything but an MLP and caps its size, but an
allowed model can still cost minutes of CPU, and a bug or an unforeseen path could take memory
until the worker dies, together with its neighbours' jobs in the same process pool. So the model
is rebuilt and measured in a child process, and only plain JSON comes back:

    evaluation = evaluate(export, mean, std, {"test": (images, labels), ...}, EvaluationLimits())
    evaluation.kind        # "ok" | "not_an_mlp" | "failed" | "limit"
    evaluation.accuracies  # {"test": 0.981, ...}: the splits measured before anything went wrong
    evaluation.error       # for the student, or None; never a grader path, command or variable
    evaluation.limit       # "cpu" | "memory" | "wall" | "crashed" when kind == "limit"

How the child is started, and why this way:
- `subprocess.Popen([sys.executable, "-I", "-c", BOOT, <package root>, <control.json>])`, not
  multiprocessing: spawn would pickle the arguments (the export is student data: it crosses only as
  `codec` JSON, arrays as .npy with allow_pickle=False), refuses children of daemonic pool
  workers, and re-imports the caller's __main__. `-I` ignores PYTHON* variables, the user's site
  and the working folder; the package root is put first on the path explicitly, so the child runs
  this very code however the package was installed (editable, a Gradescope zip's folder, an image).
- A private temporary folder carries the request (`export.json`, `control.json`) and the result
  (`result.json`, written to a temporary name and renamed, so a killed child leaves none). The
  child's environment is minimal (PATH, the thread pins, no CUDA device): nothing of the grader's.
- The caller reaps the child itself with os.wait4, which gives the child's own CPU time, and sends
  it SIGKILL when the wall-clock backstop passes. (Not its ru_maxrss: after vfork + exec it starts
  from the caller's peak. The peak reported is the cgroup's, or the child's own VmHWM.)
- On Linux, that interpreter is by default not started per evaluation: a fork server
  (evaluation_server.py), started by the first evaluation of the grading process, has imported
  torch once, and forks a child per evaluation that runs `_child` just as BOOT does; the server
  reaps it with os.wait4 and reports its status and CPU time, and kills it at the backstop on the
  caller's word. Its module docstring tells what keeps children apart from it and from each other,
  and how memory is counted. A lost server costs a retry in a fresh interpreter, never a verdict.
  `EvaluationLimits(server=False)` or AUTOGRADER_EVALUATION_SERVER=0: a fresh interpreter each time.

How it is limited (all in the child, before it reads the export; none depends on machine load):
- CPU time: RLIMIT_CPU, counted from after `import torch` and torch's first meta-device call (the
  grader's own ~2.5 s of CPU here, paid once by the server): SIGXCPU at the soft limit (Python keeps
  its default action: the process ends), SIGKILL CPU_GRACE_SECONDS later. RLIMIT_CPU counts every
  thread of the process, so the pinned thread count is part of the bound.
- Memory: a cgroup of its own (memory.limit_in_bytes on v1, memory.max and no swap on v2) when the
  grader runs as root with a writable hierarchy (`CgroupSet.usable()`); the kernel's OOM killer then
  ends the child, and the cgroup's oom_kill count tells it was memory. The cgroup counts what the
  kernel charges (torch's shared libraries mostly not: an honest evaluation peaks at ~390-490 MB in
  it). Otherwise, or with `EvaluationLimits(cgroup=False)`, RLIMIT_DATA and RLIMIT_AS,
  set *after* `import torch`: measured here, torch 2.14.1+cu130 maps ~3.2 GB of address space and
  ~800 MB of VmData (550 MB RSS) on import, so any limit set before the import that is not far above
  the budget fails the import itself ("failed to map segment" with RLIMIT_AS=2 GB or
  RLIMIT_DATA=512 MB; RLIMIT_DATA=1 GB still imports). Set after the import, at the current usage
  plus the budget left (memory_mb - current RSS), an over-large allocation fails cleanly
  (MemoryError from numpy, "DefaultCPUAllocator: can't allocate memory" from torch), which the child
  reports as the memory limit.
- Threads: OMP/MKL/OpenBLAS variables and torch.set_num_threads(threads) (the grader's pinned
  count, 1 by default); the cgroup also caps processes and threads at PIDS.
- The child asks for SIGKILL when its parent dies (PR_SET_PDEATHSIG), writes no core file and no
  file over MAX_FILE_BYTES (RLIMIT_FSIZE), and offers itself first to the system's OOM killer
  (oom_score_adj 1000) where no cgroup holds it.
- Wall clock: only a backstop against a stopped or starved child, WALL_FACTOR x the CPU limit plus
  STARTUP_SECONDS; it never decides an honest evaluation on a loaded machine.
- Size: GraphModel's own caps (nodes, parameters, intermediate bytes) hold in the child as before.

The caller never raises for what the child does (dies, hits a limit, writes garbage); it raises
GraderError only for the grader's own problems (a split file missing or unreadable, no Python to
start), whose messages may carry paths and are not for students.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import autograder
from autograder.execution import codec
from autograder.sandbox.cgroups import CgroupSet

if TYPE_CHECKING:
    from autograder.integrity.evaluation_server import EvaluationServer

log = logging.getLogger(__name__)

CPU_SECONDS = 120  # measured on one core here, 3 splits of 10,000 images: a reference-sized MLP (0.54 M
# parameters) 1 s, a maximal allowed one (19.2 M parameters, ~40 MFLOP per image) 14 s, besides ~2.5 s
# of start-up that is not counted: ~8x room for a slower machine, and a bound on a hostile one
MEMORY_MB = 2048  # measured (cgroup peak): 490 MB for a reference-sized MLP, 800 MB for a 19.2 M-parameter
# one; the worst an allowed export can ask is ~1.3 GB (torch's import ~550 MB RSS, ~64 MB of JSON, two
# copies of 80 MB of weights, GraphModel's cap of 512 MB of intermediate values per batch)
THREADS = 1  # the grader's pinned torch/BLAS thread count (sandbox Limits.threads)
WALL_FACTOR = 10  # the wall-clock backstop, as a multiple of the CPU limit: only a stopped child hits it
STARTUP_SECONDS = 60  # added to the backstop: starting Python and importing torch on a loaded machine
CPU_GRACE_SECONDS = 2  # RLIMIT_CPU's hard limit after the soft one, should SIGXCPU not end the child
PIDS = 32  # processes and threads in the child's cgroup: torch with one thread runs 2
POLL_SECONDS = 0.05  # how often the caller looks whether the child has ended
MAX_RESULT_BYTES = 1 << 20  # the child's answer: a few accuracies and one message
MAX_MESSAGE = 600  # characters of a message kept: model_export's messages are at most ~300
MAX_FILE_BYTES = 16 << 20  # any file the child writes (its stderr, its answer): RLIMIT_FSIZE
LOG_TAIL = 2000  # characters of the child's stderr logged (for the grader's log only) when it fails

OK, NOT_AN_MLP, FAILED, LIMIT = "ok", "not_an_mlp", "failed", "limit"
KINDS = (OK, NOT_AN_MLP, FAILED, LIMIT)
CPU, MEMORY, WALL, CRASHED = "cpu", "memory", "wall", "crashed"
_GRADER = "grader"  # the child's word for "the grader's own data failed": raised as GraderError here

LIMIT_MESSAGES = {  # what the student reads; the numbers are the limits, never machine data
    CPU: "evaluating the model took more than {cpu} s of CPU time, and it was stopped",
    MEMORY: "evaluating the model needed more than {memory} MB of memory, and it was stopped",
    WALL: "evaluating the model did not finish within {wall} s, and it was stopped",
    CRASHED: "the process evaluating the model ended without a result",
}

# The child's first lines: the package root first on the path, then this module's _child.
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from autograder.integrity.evaluation import _child; _child(sys.argv[2])")


class GraderError(RuntimeError):
    """The grader's own side failed (its data, its Python): not the student's doing."""


@dataclass(frozen=True)
class EvaluationLimits:
    cpu_seconds: int = CPU_SECONDS
    memory_mb: int = MEMORY_MB
    threads: int = THREADS
    wall_seconds: float | None = None  # None: WALL_FACTOR x cpu_seconds + STARTUP_SECONDS
    cgroup: bool = True  # a cgroup where usable; False forces RLIMIT_DATA/RLIMIT_AS (tests, odd hosts)
    server: bool = True  # the fork server (evaluation_server.py) on Linux; False: a fresh interpreter each time

    def __post_init__(self) -> None:
        if min(self.cpu_seconds, self.memory_mb, self.threads) < 1 or (self.wall_seconds or 1) <= 0:
            raise ValueError(f"limits must be positive: {self}")

    @property
    def backstop_seconds(self) -> float:
        if self.wall_seconds is not None:
            return self.wall_seconds
        return WALL_FACTOR * self.cpu_seconds + STARTUP_SECONDS


@dataclass(frozen=True)
class Evaluation:
    kind: str  # one of KINDS
    accuracies: dict[str, float] = field(default_factory=dict)  # split -> accuracy in [0, 1]
    error: str | None = None  # student-facing; applies to the splits missing from `accuracies`
    limit: str | None = None  # CPU, MEMORY, WALL or CRASHED when kind == LIMIT
    cpu_seconds: float | None = None  # the child's CPU time (a fresh interpreter's start-up included)
    peak_memory_mb: float | None = None  # the cgroup's peak, or the child's own VmHWM (None if killed)

    @property
    def ok(self) -> bool:
        return self.kind == OK


# --- the caller's side -----------------------------------------------------------------------------

def evaluate(export: Any, mean: float, std: float, splits: dict[str, tuple[Path, Path]],
             limits: EvaluationLimits = EvaluationLimits(), *,
             on_start: Callable[[int], None] | None = None) -> Evaluation:
    """`export` rebuilt by GraphModel and measured on each split (images IDX, labels IDX) in a child
    process under `limits`. `on_start` is called with the child's pid (for logs and tests)."""
    from autograder.integrity import evaluation_server  # it imports this module
    control = {"splits": {name: [str(Path(images)), str(Path(labels))] for name, (images, labels) in
                          _checked_splits(splits).items()},
               "mean": float(mean), "std": float(std), "threads": int(limits.threads),
               "cpu_seconds": int(limits.cpu_seconds)}
    try:
        payload = json.dumps(codec.encode(export), separators=(",", ":"))  # NaN constants cross as the kernel sent them
    except (codec.NotPlainData, ValueError, TypeError, RecursionError):
        return Evaluation(NOT_AN_MLP, error="the export is not plain data (a graph and arrays of weights)")
    with tempfile.TemporaryDirectory(prefix="autograder-evaluation-") as name:
        folder = Path(name)  # mode 0700: only the grader's uid reads the request
        (folder / "export.json").write_text(payload, encoding="utf-8")
        del payload
        control["export"] = str(folder / "export.json")
        names, suffix = list(splits), ""
        if evaluation_server.wanted(limits):
            with evaluation_server.reserved(limits.threads) as server:
                if server is not None:
                    try:
                        return _attempt(folder, suffix, control, limits, on_start, names, server)
                    except evaluation_server.ServerLost as error:  # nothing of this attempt counts
                        if isinstance(error, evaluation_server.ServerRefused):
                            evaluation_server.refused(str(error))
                        log.warning("the evaluation server was lost (%s): evaluating in a fresh interpreter", error)
                        suffix = "-2"  # new files: a child of the lost server cannot answer for the retry
        return _attempt(folder, suffix, control, limits, on_start, names, None)


def _attempt(folder: Path, suffix: str, control: dict[str, Any], limits: EvaluationLimits,
             on_start: Callable[[int], None] | None, names: list[str],
             server: EvaluationServer | None) -> Evaluation:
    """One child, on `server` or in a fresh interpreter, with files and a cgroup of its own (a retry
    after a lost server uses new names: a child of the lost attempt cannot answer for this one)."""
    reserve = server.baseline_mb if server is not None else 0.0  # what a forked child shares, uncharged
    cgroups = _cgroups(limits, reserve)
    paths = {key: folder / f"{key}{suffix}{ext}" for key, ext in
             (("control", ".json"), ("result", ".json"), ("stderr", ".txt"))}
    try:
        control = control | {"result": str(paths["result"]),
                             "parent": server.pid if server is not None else os.getpid(),
                             "cgroup_procs": [str(p) for p in cgroups.procs_files()] if cgroups else [],
                             "memory_mb": None if cgroups else int(limits.memory_mb)}
        paths["control"].write_text(json.dumps(control), encoding="utf-8")
        if server is not None:
            status, cpu, stopped = server.run(paths["control"], paths["stderr"], folder, limits.backstop_seconds,
                                              on_start)
        else:
            status, cpu, stopped = _run_fresh(folder, paths, limits, on_start)
        return _finish(paths, status, cpu, stopped, cgroups, reserve, names, limits)
    finally:
        if cgroups is not None:
            cgroups.remove()


def _checked_splits(splits: dict[str, tuple[Path, Path]]) -> dict[str, tuple[Path, Path]]:
    """Each split's files, their IDX headers checked here (cheap), so that the grader's own broken
    data raises before a child is started rather than as the student's failure."""
    if not splits or not all(isinstance(name, str) for name in splits):
        raise GraderError("no split to evaluate on, or a split not named by a string")
    for name, (images, labels) in splits.items():
        shapes = _idx_shape(Path(images), 3), _idx_shape(Path(labels), 1)
        if shapes[0][0] != shapes[1][0] or not shapes[1][0]:
            raise GraderError(f"split {name}: {shapes[0][0]} images but {shapes[1][0]} labels")
    return splits


def _idx_shape(path: Path, ndim: int) -> tuple[int, ...]:
    """The shape an unsigned-byte IDX file of `ndim` dimensions declares, checked against its size."""
    try:
        with path.open("rb") as handle:
            header = handle.read(4 + 4 * ndim)
        size = path.stat().st_size
    except OSError as error:
        raise GraderError(f"{path}: {error.strerror}") from None
    if len(header) != 4 + 4 * ndim or header[:4] != bytes((0, 0, 0x08, ndim)):
        raise GraderError(f"{path}: not an unsigned-byte IDX file of {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", header[4:])
    if size != len(header) + math.prod(shape):
        raise GraderError(f"{path}: its size does not match its header")
    return shape


def _cgroups(limits: EvaluationLimits, reserve_mb: float = 0.0) -> CgroupSet | None:
    """The child's cgroup: memory_mb, less `reserve_mb` already held for it (a forked child's share
    of the server's pages, charged to the server: evaluation_server.py)."""
    if not limits.cgroup or not CgroupSet.usable():
        return None
    memory_mb = max(1, math.floor(limits.memory_mb - reserve_mb))
    try:
        return CgroupSet(f"evaluation-{os.getpid()}-{uuid.uuid4().hex[:8]}", memory_mb, PIDS)
    except OSError as error:  # a hierarchy that looks writable but is not: the rlimits still hold
        log.warning("no cgroup for the evaluation (%s): memory limited by RLIMIT_DATA/RLIMIT_AS", error)
        return None


def _environment(threads: int) -> dict[str, str]:
    pinned = str(threads)
    return {"PATH": os.defpath, "LC_ALL": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": pinned,
            "MKL_NUM_THREADS": pinned, "OPENBLAS_NUM_THREADS": pinned}


def _run_fresh(folder: Path, paths: dict[str, Path], limits: EvaluationLimits,
               on_start: Callable[[int], None] | None) -> tuple[int, float, bool]:
    """A child in a fresh interpreter: its wait status, CPU seconds, and whether the backstop ended it."""
    if not sys.executable:
        raise GraderError("no Python executable to start the evaluation with")
    root = str(Path(autograder.__file__).resolve().parent.parent)
    with paths["stderr"].open("wb") as stderr:
        try:
            process = subprocess.Popen([sys.executable, "-I", "-c", BOOT, root, str(paths["control"])],
                                       cwd=folder, env=_environment(limits.threads), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=stderr, close_fds=True)
        except OSError as error:
            raise GraderError(f"the evaluation process could not start: {error}") from None
        status, usage, stopped = _reap(process, limits.backstop_seconds, on_start)
    return status, usage.ru_utime + usage.ru_stime if usage else 0.0, stopped


def _finish(paths: dict[str, Path], status: int, cpu: float, stopped: bool, cgroups: CgroupSet | None,
            reserve_mb: float, names: list[str], limits: EvaluationLimits) -> Evaluation:
    oom = cgroups.oom_kills() if cgroups else 0
    evaluation = _outcome(os.waitstatus_to_exitcode(status), cpu, stopped, oom > 0, _result_text(paths["result"]),
                          names, limits)
    if evaluation.kind == LIMIT and evaluation.limit == CRASHED:
        try:
            tail = paths["stderr"].read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:]
        except OSError:
            tail = "(none)"
        log.warning("the evaluation process ended without a result (status %s); its stderr ends with:\n%s",
                    status, tail)
    # Not ru_maxrss: after a vfork + exec it starts from the caller's own peak. The cgroup's peak (plus
    # what a forked child shares uncharged), or the child's own VmHWM as it reported it (unknown when
    # it was killed).
    peak = cgroups.peak_memory_mb() + reserve_mb if cgroups else evaluation.peak_memory_mb
    return replace(evaluation, cpu_seconds=round(cpu, 3),
                   peak_memory_mb=None if peak is None or math.isnan(peak) else round(peak, 1))


def _reap(process: subprocess.Popen[bytes], backstop: float,
          on_start: Callable[[int], None] | None) -> tuple[int, resource.struct_rusage | None, bool]:
    """Wait for the child (its status and own resource usage), killing it at the backstop; it is
    killed too if anything here raises (a hook, KeyboardInterrupt), so no child outlives the call."""
    deadline, stopped = time.monotonic() + backstop, False
    try:
        if on_start is not None:
            on_start(process.pid)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()  # not reaped yet, so the pid is still this child's
                stopped = True
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(POLL_SECONDS)
    except ChildProcessError:  # reaped by someone else (SIGCHLD ignored): only its answer file tells
        process.returncode = 0
        return 0, None, stopped
    except BaseException:
        if process.returncode is None:
            process.kill()
            process.wait()
        raise
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return status, usage, stopped


def _result_text(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RESULT_BYTES + 1)
    except OSError:
        return None
    return data.decode("utf-8", errors="replace") if len(data) <= MAX_RESULT_BYTES else None


def _outcome(exitcode: int, cpu: float, stopped: bool, out_of_memory: bool, text: str | None,
             names: list[str], limits: EvaluationLimits) -> Evaluation:
    """What the child's end means: its own answer if it exited cleanly with a valid one, otherwise the
    limit that ended it (each cause checked in the order that can tell it apart)."""
    if stopped:
        return _limit(WALL, limits)
    if out_of_memory:  # the OOM killer's SIGKILL, or anything that failed because memory ran out
        return _limit(MEMORY, limits)
    if exitcode == -signal.SIGXCPU or (exitcode == -signal.SIGKILL and cpu >= limits.cpu_seconds):
        return _limit(CPU, limits)
    if exitcode != 0 or text is None:
        return _limit(CRASHED, limits)
    answer = _parsed(text, names)
    if answer is None:
        return _limit(CRASHED, limits)
    if answer.kind == _GRADER:
        raise GraderError(f"the evaluation could not read the grader's data: {answer.error}")
    if answer.kind == LIMIT:
        return replace(answer, error=_limit(answer.limit or CRASHED, limits).error)
    return answer


def _limit(limit: str, limits: EvaluationLimits) -> Evaluation:
    message = LIMIT_MESSAGES[limit].format(cpu=limits.cpu_seconds, memory=limits.memory_mb,
                                           wall=round(limits.backstop_seconds))
    return Evaluation(LIMIT, error=message, limit=limit)


def _parsed(text: str, names: list[str]) -> Evaluation | None:
    """The child's answer, only if it has exactly the expected form; None for anything else."""
    try:
        answer = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(answer, dict) or set(answer) != {"kind", "accuracies", "error", "limit", "peak_mb"}:
        return None
    kind, accuracies, error, limit = answer["kind"], answer["accuracies"], answer["error"], answer["limit"]
    peak = answer["peak_mb"]
    valid = (kind in (*KINDS, _GRADER) and isinstance(accuracies, dict) and set(accuracies) <= set(names)
             and all(type(v) is float and 0.0 <= v <= 1.0 for v in accuracies.values())
             and (error is None or isinstance(error, str)) and (error is None) == (kind == OK)
             and (limit in (MEMORY, CRASHED) if kind == LIMIT else limit is None)
             and (kind != OK or set(accuracies) == set(names))
             and (peak is None or (type(peak) is float and 0.0 <= peak)))
    if not valid:
        return None
    return Evaluation(kind, {name: accuracies[name] for name in names if name in accuracies},
                      error[:MAX_MESSAGE] if error else None, limit, peak_memory_mb=peak)


# --- the child's side ------------------------------------------------------------------------------

def _child(control_path: str, rss_kb: int | None = None) -> None:
    """The child process: confine itself, then evaluate and write the answer. `rss_kb`, for a child
    forked from the evaluation server: the server's resident memory at the fork, which a fresh child
    would hold here (the forked one holds less: its parent's file pages are mapped in it lazily)."""
    unmapped_kb = 0 if rss_kb is None else max(0, rss_kb - _status_kb()["VmRSS"])  # added to its VmHWM
    control = json.loads(Path(control_path).read_text(encoding="utf-8"))
    try:
        _confine(control)
    except OSError as error:  # no cgroup to join: evaluate nothing unconfined
        _answer(control, {"kind": _GRADER, "accuracies": {}, "error": f"cannot confine the evaluation: {error}",
                          "limit": None, "peak_mb": None})
        return
    import torch

    torch.set_num_threads(control["threads"])
    _warm_up(torch)
    _limit_cpu(control["cpu_seconds"])
    if control["memory_mb"] is not None:
        _limit_memory(control["memory_mb"], rss_kb)
    _answer(control, _evaluate_here(control), unmapped_kb)


def _warm_up(torch: Any) -> None:
    """torch's first call on the meta device (GraphModel's dry run) loads its meta kernels, ~0.9 s of
    CPU: the grader's cost, paid before the CPU limit starts counting the student's."""
    with torch.device("meta"):
        layer = torch.nn.Linear(2, 2)
        layer(torch.empty((1, 2), device="meta"))


def _answer(control: dict[str, Any], answer: dict[str, Any], unmapped_kb: int = 0) -> None:
    """Written under another name, then renamed: a child killed meanwhile leaves no half answer."""
    answer["peak_mb"] = (_status_kb().get("VmHWM", 0) + unmapped_kb) / 1024
    temporary = Path(control["result"] + ".partial")
    temporary.write_text(json.dumps(answer), encoding="utf-8")
    temporary.replace(control["result"])


def _confine(control: dict[str, Any]) -> None:
    """Before anything is imported or read: into the cgroup, die with the parent, no core file."""
    for procs in control["cgroup_procs"]:
        Path(procs).write_text(str(os.getpid()))
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != control["parent"]:  # the parent died before the prctl took effect
        os._exit(1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))  # its stderr and its answer
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")  # raising one's own score needs no privilege
    except OSError:
        pass


def _limit_cpu(seconds: int) -> None:
    """From now on: SIGXCPU after `seconds` more of CPU time, SIGKILL CPU_GRACE_SECONDS later."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + CPU_GRACE_SECONDS))


def _limit_memory(memory_mb: int, rss_kb: int | None = None) -> None:
    """Without a cgroup: what the process may still take is memory_mb minus what it holds now
    (`rss_kb` if given), added to its current data and address-space sizes (torch's import already
    mapped them)."""
    status = _status_kb()
    left = max(0, memory_mb * 1024 - (status["VmRSS"] if rss_kb is None else rss_kb)) * 1024
    for limit, current in ((resource.RLIMIT_DATA, status["VmData"]), (resource.RLIMIT_AS, status["VmSize"])):
        resource.setrlimit(limit, (current * 1024 + left, current * 1024 + left))


def _status_kb() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmData", "VmSize"):
            fields[key] = int(value.split()[0])
    return fields


def _evaluate_here(control: dict[str, Any]) -> dict[str, Any]:
    from autograder.integrity import mnist
    from autograder.integrity.model_export import GraphModel, ModelFailed, NotAnMLP

    def answer(kind: str, error: str | None = None, limit: str | None = None) -> dict[str, Any]:
        return {"kind": kind, "accuracies": accuracies, "error": error, "limit": limit, "peak_mb": None}

    accuracies: dict[str, float] = {}
    try:  # the grader's own files: read before anything of the student's
        data = {name: _split(Path(images), Path(labels), mnist.read_idx)
                for name, (images, labels) in control["splits"].items()}
    except Exception as error:  # noqa: BLE001 - reported to the grader, never to the student
        return answer(_GRADER, f"{type(error).__name__}: {error}"[:MAX_MESSAGE])
    try:
        export = codec.decode(json.loads(Path(control["export"]).read_text(encoding="utf-8")))
        model = GraphModel(export)
        for name, (images, labels) in data.items():
            accuracies[name] = float(mnist.accuracy(model, images, labels, control["mean"], control["std"]))
    except Exception as error:  # noqa: BLE001 - sorted below; only fixed texts or model_export's own
        if _out_of_memory(error):
            return answer(LIMIT, LIMIT_MESSAGES[MEMORY], MEMORY)
        if isinstance(error, ModelFailed):
            return answer(FAILED, str(error))
        if isinstance(error, NotAnMLP):
            return answer(NOT_AN_MLP, str(error))
        return answer(FAILED, f"the model could not be evaluated ({type(error).__name__})")
    return answer(OK)


def _split(images: Path, labels: Path, read: Callable[[Path], Any]) -> tuple[Any, Any]:
    pixels, targets = read(images), read(labels)
    if pixels.ndim != 3 or targets.ndim != 1 or len(pixels) != len(targets) or not len(targets):
        raise ValueError(f"{images}, {labels}: not as many images as labels")
    return pixels, targets


def _out_of_memory(error: BaseException) -> bool:
    """Memory ran out, here or inside torch (GraphModel wraps torch's error into ModelFailed `from
    None`, which keeps the original as __context__)."""
    seen: BaseException | None = error
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, MemoryError) or (isinstance(seen, RuntimeError) and "can't allocate memory" in str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


if __name__ == "__main__":  # `python -m autograder.integrity.evaluation <control.json>` works too
    _child(sys.argv[1])
