"""A hostile notebook against kernels forked from a kernel template (`autograder.sandbox.template`).

Each test FAILS if its attack works. Every probe runs in real sandboxes and real kernels, and checks
that it got the kind of kernel it meant to attack (a template's kernel has getppid() == 0, a fresh
one 1: see test_template.py).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from autograder.execution.kernel import SandboxedKernel
from autograder.execution.session import NotebookSession
from autograder.sandbox import template
from autograder.sandbox.limits import Limits
from autograder.sandbox.local import LocalSandbox
from tests.adversarial.test_template import pytestmark  # noqa: F401 - kernel, x86_64, a local sandbox
from tests.probe import run_cell_json

LIMITS = Limits(timeout=300, cell_timeout=120, memory_mb=1024, pids=64, output_kb=256, disk_mb=64)


def _session(cells: list[str], use_template: bool = True, limits: Limits = LIMITS,
             first_start: Any = None) -> tuple[list[Any], dict[str, Any]]:
    """Run `cells` in one sandbox: the cells' reports, and what the sandbox counted."""
    with LocalSandbox(limits) as sandbox:
        sandbox.use_template = use_template
        session = NotebookSession(sandbox, limits, cells,
                                  first_start=first_start and (lambda kernel: first_start(sandbox, kernel)))
        try:
            reports = session.run()
            counted = {"peak_mb": sandbox.peak_memory_mb(), "cpu": sandbox.cpu_seconds(),
                       "oom": sandbox.oom_kills(), "restarts": session.restarts}
        finally:
            session.close()
    return reports, counted


def _printed(report: Any) -> dict[str, Any]:
    text = "".join(o.get("text", "") for o in report.outputs if o.get("output_type") == "stream")
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def _one(code: str, use_template: bool = True) -> dict[str, Any]:
    reports, _ = _session([code], use_template)
    assert reports[0].status == "ok", (reports[0].error, reports[0].traceback)
    seen = _printed(reports[0])
    assert seen["ppid"] == (0 if use_template else 1), "not the kind of kernel this test attacks"
    return seen


# --- 3. a wrong verdict because the kernel was forked ------------------------------------------

SIGNALS = r'''
import json, os, signal
seen = {"ppid": os.getppid(),
        "dispositions": {name: str(signal.getsignal(getattr(signal, name))) for name in ("SIGPIPE", "SIGXFSZ")},
        "SigIgn": [l.split()[1] for l in open("/proc/self/status") if l.startswith("SigIgn:")][0]}
reader, writer = os.pipe()
os.close(reader)
try:
    os.write(writer, b"x")  # a fresh interpreter ignores SIGPIPE: this raises BrokenPipeError
    seen["write"] = "written"
except BrokenPipeError:
    seen["write"] = "BrokenPipeError"
print(json.dumps(seen))
'''


def test_a_broken_pipe_raises_in_a_template_kernel_as_in_a_fresh_one() -> None:
    """CPython ignores SIGPIPE and SIGXFSZ at start-up; become_kernel resets every signal to SIG_DFL,
    so a write to a closed pipe or socket (a dead DataLoader worker, a closed subprocess) kills a
    template's kernel (the cell: "dead", its kernel restarted) where a fresh kernel gets an
    exception the notebook can catch."""
    fresh = _one(SIGNALS, use_template=False)
    assert fresh["write"] == "BrokenPipeError"
    reports, _ = _session([SIGNALS])
    assert reports[0].status == "ok", f"the template's kernel died of SIGPIPE: {reports[0].status} {reports[0].error}"
    forked = _printed(reports[0])
    assert forked["ppid"] == 0
    assert forked["dispositions"] == fresh["dispositions"] and forked["SigIgn"] == fresh["SigIgn"]


MEMORY_LIMITS = Limits(timeout=300, cell_timeout=120, memory_mb=640, pids=64, output_kb=256, disk_mb=64)
MEMORY = r'''
import json, os, torch, numpy
block = numpy.ones(450 * 2**20 // 8)  # 450 MB, touched
print(json.dumps({"ppid": os.getppid(), "mb": block.nbytes // 2**20}))
'''
IMPORT_TORCH = 'import json, os, torch; print(json.dumps({"ppid": os.getppid()}))'


def test_the_memory_limit_counts_what_a_template_kernel_inherited() -> None:
    """In a cgroup, pages are charged to whoever first touched them: the template's imports (torch,
    numpy: ~260 MB) stay charged to the template's (the grading worker's) cgroup, so a template's
    kernel has that much more memory under the same limit than a fresh kernel, and its
    peak_memory_mb() is that much lower. The same notebook: killed for memory (fresh), fine (template),
    and a template that breaks mid-batch switches the rest of the batch to the stricter limit."""
    (fresh,), fresh_counted = _session([MEMORY], use_template=False, limits=MEMORY_LIMITS)
    (forked,), forked_counted = _session([MEMORY], limits=MEMORY_LIMITS)
    (baseline_fresh,), baseline_fresh_counted = _session([IMPORT_TORCH], use_template=False)
    (baseline_forked,), baseline_forked_counted = _session([IMPORT_TORCH])
    assert _printed(baseline_fresh)["ppid"] == 1 and _printed(baseline_forked)["ppid"] == 0
    peaks = (baseline_fresh_counted["peak_mb"], baseline_forked_counted["peak_mb"])
    assert fresh.status == forked.status, (
        f"the same notebook under a {MEMORY_LIMITS.memory_mb} MB limit: fresh {fresh.status} ({fresh.error}), "
        f"template {forked.status}; peak after `import torch`: fresh {peaks[0]:.0f} MB, template {peaks[1]:.0f} MB")
    assert peaks[1] >= 0.8 * peaks[0], f"peak after `import torch`: fresh {peaks[0]:.0f} MB, template {peaks[1]:.0f} MB"


# --- 1./2. information the template's memory gives away -----------------------------------------

HOST_PIDS = r'''
import gc, json, os, sys
found = [o["placeholder"] for o in gc.get_objects() if isinstance(o, dict) and "placeholder" in o and "uid" in o]
grader = [a for a in getattr(sys, "orig_argv", []) if a.isdigit()]
for _ in range(int(SEND)):  # the sender: each child takes a host pid
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
print(json.dumps({"ppid": os.getppid(), "host_pids": found, "grader_pid": grader}))
'''


def test_a_kernel_sees_no_host_pid_and_no_pid_counter_crosses_submissions() -> None:
    """The kernel is a fork of the template, deep inside `become_kernel(request)`: the request dict
    (the placeholder's host pid, the cgroup's and the ipc folder's host paths) is alive in the
    kernel's memory (gc.get_objects()), and sys.orig_argv holds the grader's host pid. A fresh
    kernel, in its pid namespace, sees no host pid. The host pid counter then carries bits between
    submissions: submission A forks N times; submission B, next on the same template, reads the
    gap between its placeholder's host pid and the one before."""
    gaps = []
    seen = []
    for send in (0, 0, 600, 0):
        seen.append(_one(HOST_PIDS.replace("int(SEND)", str(send))))
    pids = [s["host_pids"][0] if s["host_pids"] else None for s in seen]
    if None not in pids:
        gaps = [b - a for a, b in zip(pids, pids[1:], strict=False)]
    assert all(not s["host_pids"] and not s["grader_pid"] for s in seen), (
        f"host pids seen by the kernels: {pids} (gaps {gaps}: the third kernel's 600 forks show in the "
        f"fourth's gap), grader's pid {seen[0]['grader_pid']}")


SECRETS = r'''
import hashlib, json, multiprocessing, os, sys
import numpy
print(json.dumps({
    "ppid": os.getppid(),
    # multiprocessing's authentication key (drawn once, at import: in the template)
    "authkey": multiprocessing.current_process().authkey.hex(),
    # AT_RANDOM: glibc's stack canary and pointer guard
    "at_random": hashlib.sha256(open("/proc/self/auxv", "rb").read()).hexdigest(),
    # the address-space layout (ASLR), hence the order of a set of plain objects
    "libc": [l.split("-")[0] for l in open("/proc/self/maps") if "libc.so" in l][:1],
    "module": id(sys.modules["numpy"]),
}))
'''


def test_two_kernels_of_one_template_share_no_key_drawn_at_import() -> None:
    """multiprocessing's authkey is drawn at import (os.urandom), in the template: each kernel
    draws its own again."""
    first, second = _one(SECRETS), _one(SECRETS)
    fresh = [_one(SECRETS, use_template=False) for _ in range(2)]
    assert fresh[0]["authkey"] != fresh[1]["authkey"]  # two fresh kernels differ
    assert first["authkey"] != second["authkey"], "the authkey is the same in two kernels of one template"


@pytest.mark.parametrize("secret", ["at_random", "libc"])
def test_what_only_an_exec_draws_differs_between_a_first_run_and_its_rerun(secret: str) -> None:
    """AT_RANDOM (glibc's stack canary and pointer guard) and the ASLR layout are drawn at exec:
    kernels of one template share them (a known limit, SECURITY.md; nothing a verdict compares),
    but hw4's reruns come from the second template, so run 1 and run 2 differ in them as two fresh
    interpreters do."""
    first, second = _one(SECRETS), _one(SECRETS)
    assert first[secret] == second[secret]  # the limit, as documented: one template, one draw
    with LocalSandbox(LIMITS, rerun=True) as sandbox:
        rerun = run_cell_json(sandbox, LIMITS, SECRETS)
    assert rerun["ppid"] == 0 and rerun[secret] != first[secret]


# --- 2. the placeholder: a process of the kernel's uid, outside the kernel's user namespace ------

PLACEHOLDER = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
placeholder = [p for p in os.listdir("/proc")
               if p.isdigit() and open("/proc/%s/cmdline" % p, "rb").read().startswith(b"sleep")]
tried = {}
if placeholder:
    pid = int(placeholder[0])
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    def _vm_read(pid):
        buffer = ctypes.create_string_buffer(8)
        start = int(open("/proc/self/maps").readline().split("-")[0], 16)  # the same layout: forked, no exec
        local, remote = iovec(ctypes.addressof(buffer), 8), iovec(start, 8)
        if libc.syscall(ctypes.c_long(310), ctypes.c_long(pid), ctypes.byref(local), ctypes.c_long(1),
                        ctypes.byref(remote), ctypes.c_long(1), ctypes.c_long(0)) < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return buffer.raw
    def attempt(name, call):
        try:
            result = call()
            tried[name] = "allowed: %r" % (result,)[:80]
        except OSError as error:
            tried[name] = error.strerror
    attempt("environ", lambda: open("/proc/%d/environ" % pid, "rb").read())
    attempt("mem", lambda: open("/proc/%d/mem" % pid, "rb"))
    attempt("fd open", lambda: os.open("/proc/%d/fd/0" % pid, os.O_RDONLY))  # listing the names is allowed
    attempt("fd readlink", lambda: os.readlink("/proc/%d/fd/0" % pid))
    attempt("process_vm_readv", lambda: _vm_read(pid))
    PTRACE_SEIZE = 0x4206
    result = libc.ptrace(ctypes.c_long(PTRACE_SEIZE), ctypes.c_long(pid), None, None)
    tried["ptrace"] = "allowed" if result == 0 else os.strerror(ctypes.get_errno())
    pidfd = libc.syscall(ctypes.c_long(434), ctypes.c_long(pid), ctypes.c_long(0))  # pidfd_open
    got = -1  # pidfd_getfd(its stdin)
    if pidfd >= 0:
        got = libc.syscall(ctypes.c_long(438), ctypes.c_long(pidfd), ctypes.c_long(0), ctypes.c_long(0))
    tried["pidfd_getfd"] = "allowed" if got >= 0 else os.strerror(ctypes.get_errno())
print(json.dumps({"ppid": os.getppid(), "placeholder": placeholder, "tried": tried}))
'''


def test_the_kernel_cannot_trace_or_read_its_placeholder() -> None:
    """The placeholder runs as the kernel's uid but in the host's user namespace, still possessing
    the grader's session keyring (it never ran the prologue): code run in it would reach that
    keyring, shared by every kernel of the grader. The kernel's own user namespace must keep it out
    (commoncap: a tracer in another user namespace needs CAP_SYS_PTRACE over the target's)."""
    seen = _one(PLACEHOLDER)
    assert seen["placeholder"], "no placeholder to attack"
    allowed = {k: v for k, v in seen["tried"].items() if v.startswith("allowed")}
    assert allowed == {}, allowed
    assert set(seen["tried"].values()) <= {"Operation not permitted", "Permission denied"}, seen["tried"]


# --- 4. a student who turns the template off for every later submission -------------------------

FILL_IPC = r'''
import json, os, sys
folder = os.path.dirname([a for a in sys.argv if a.endswith(".json")][0])
made = 0
with open(os.path.join(folder, "filler"), "wb", buffering=0) as filler:
    for size in (1 << 20, 4096):  # every page of the folder's tmpfs: the connection file's is freed at the restart
        try:
            while True:
                made += filler.write(b"x" * size)
        except OSError:
            pass
print(json.dumps({"ppid": os.getppid(), "made": made, "free_pages": os.statvfs(folder).f_bavail}))
'''
DIE = "import os; os._exit(1)"


def test_a_student_cannot_switch_later_submissions_to_fresh_kernels() -> None:
    """The kernel's ipc folder (a tmpfs of IPC_MB, the slot's uid may write it) outlives the kernel.
    A notebook fills it, and then loses its kernel: at the restart in the same sandbox the grader's
    new connection file takes the last page, the placeholder's `echo > ready` has no room, the
    template's kernel does not start and `template_failed()` blames the template (broken = True).
    The notebook itself goes on in a fresh kernel (the connection file's page is freed again), but
    every later submission of that grading worker gets a fresh kernel: 2.6 CPU-s more each
    (counted in hw4's CPU budget) and ~260 MB less memory under the same limit (see above)."""
    environment = None
    try:
        with LocalSandbox(LIMITS) as sandbox:
            environment = sandbox.template_environment()
            assert template.template_for(environment) is not None
            session = NotebookSession(sandbox, LIMITS, [FILL_IPC, DIE, IMPORT_TORCH])
            try:
                reports = session.run()
            finally:
                session.close()
        assert _printed(reports[0])["ppid"] == 0 and _printed(reports[0])["made"] > 0
        revived = reports[2].status, reports[2].status == "ok" and _printed(reports[2])["ppid"]
        assert template.template_for(environment) is not None, (
            f"the template was switched off by a submission (whose own kernel came back: {revived})")
        after = _one(IMPORT_TORCH)  # the next submission
        assert after["ppid"] == 0
    finally:
        broken = template._templates.pop((0, *sorted((environment or {}).items())), None)
        if broken is not None:
            broken.close()


# --- 3. the keeper: whoever watches the sandbox sees the kernel's death only through it ---------

def _kill_keeper(sandbox: LocalSandbox, kernel: SandboxedKernel) -> None:
    SandboxedKernel.start(kernel)
    keeper = _keeper_of(sandbox)
    os.kill(keeper, signal.SIGKILL)  # as the worker cgroup's OOM killer would (keepers look as big as the template)
    time.sleep(0.5)


def _keeper_of(sandbox: LocalSandbox) -> int:
    kernels = [int(p) for p in sandbox.cgroups.procs_files()[0].read_text().split()
               if Path(f"/proc/{p}/status").read_text().count("NSpid:\t") and
               Path(f"/proc/{p}/status").read_text().split("NSpid:\t")[1].split("\n")[0].split()[1:] == ["3"]]
    assert kernels, "no template kernel in the sandbox"
    ppid = int(Path(f"/proc/{kernels[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert "become_kernel" in Path(f"/proc/{ppid}/cmdline").read_bytes().decode(errors="replace")
    return ppid


KEEPER_LIMITS = Limits(timeout=120, cell_timeout=30, memory_mb=1024, pids=64, output_kb=256, disk_mb=64)


def test_a_kernel_whose_keeper_died_is_still_seen_dead() -> None:
    """The keeper alone turns the kernel's death into the sandbox's. If it dies first (SIGKILL: the
    OOM killer of the worker's cgroup, where keepers are and where each counts the template's
    pages in its RSS), the kernel lives on, reparented to the host's init; when it then dies the
    placeholder keeps the sandbox up, and the grader waits for the cell's timeout and records a
    'timeout', not the death."""
    reports, _ = _session([DIE, 'import json, os; print(json.dumps({"ppid": os.getppid()}))'],
                          limits=KEEPER_LIMITS, first_start=_kill_keeper)
    assert reports[0].status == "dead", (reports[0].status, reports[0].error, round(reports[0].seconds, 1))


# --- 2. the keeper's root privileges, through the kernel's parent link ---------------------------

PARENT = r'''
import ctypes, json, os, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
seen = {"ppid": os.getppid()}
# clone(CLONE_PARENT | SIGCHLD): a process whose parent is the kernel's parent
child = libc.syscall(ctypes.c_long(56), ctypes.c_long(0x00008000 | 17), *[ctypes.c_long(0)] * 4)
if child == 0:
    time.sleep(600)
    os._exit(0)
status = open("/proc/%d/status" % child).read()
seen["sibling_parent"] = [line.split()[1] for line in status.splitlines() if line.startswith("PPid:")][0]
os.kill(child, 9)
# PTRACE_TRACEME: the kernel's parent becomes its tracer (refused unless the parent holds
# CAP_SYS_PTRACE over the kernel's user namespace: the keeper, root on the host, does)
traced = libc.ptrace(ctypes.c_long(0), ctypes.c_long(0), None, None) == 0
seen["traceme"] = "allowed" if traced else os.strerror(ctypes.get_errno())
print(json.dumps(seen))
'''


def test_the_kernel_cannot_make_its_root_keeper_its_tracer_or_its_childrens_parent() -> None:
    """A fresh kernel's parent is bubblewrap's init, with no capabilities: PTRACE_TRACEME is refused
    and CLONE_PARENT makes children of that init. A template kernel's parent is the keeper, root
    with every capability on the host: the kernel makes it its tracer (every later signal then
    stops the kernel and the keeper ends the sandbox), and hands it children it never reaps.
    Nothing more follows here (no_new_privs, nosuid mounts), but it is the keeper's privilege
    within the kernel's reach; a keeper that dropped its capabilities after the fork would refuse."""
    fresh = _one(PARENT, use_template=False)
    assert fresh["traceme"] == "Operation not permitted" and fresh["sibling_parent"] == "1"
    forked = _one(PARENT)
    assert forked["traceme"] == fresh["traceme"], f"PTRACE_TRACEME {forked['traceme']}: the root keeper is its tracer"


# --- 3. limits: what the sandbox's processes may be ----------------------------------------------

PIDS = r'''
import json, os, time
children = []
try:
    for _ in range(500):
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
        children.append(child)
except OSError:
    pass
for child in children:
    os.kill(child, 9)
    os.waitpid(child, 0)
print(json.dumps({"ppid": os.getppid(), "children": len(children)}))
'''


def test_a_template_kernel_may_start_as_many_processes_as_a_fresh_one() -> None:
    """The placeholder (`sleep infinity`) is one more process in the sandbox's pids cgroup: a
    template's kernel gets one process fewer under the same `pids` limit."""
    fresh, forked = _one(PIDS, use_template=False), _one(PIDS)
    assert forked["children"] == fresh["children"], (fresh["children"], forked["children"])


OOM = r'''
import numpy
blocks = [numpy.ones(2**27 // 8) for _ in range(40)]  # 40 x 128 MB, touched: past a 640 MB limit
'''


def test_a_template_kernel_out_of_memory_is_reported_as_such_and_the_template_serves_on() -> None:
    """Control: the memory limit holds for a template's kernel, its death is an out-of-memory
    death (not the keeper's, which is outside the sandbox's cgroup), and the template goes on."""
    reports, counted = _session([OOM, 'import json, os; print(json.dumps({"ppid": os.getppid()}))'],
                                limits=MEMORY_LIMITS)
    assert reports[0].status == "dead" and "memory limit" in (reports[0].error or ""), reports[0].error
    assert counted["oom"] >= 1
    assert reports[1].status == "ok" and _printed(reports[1])["ppid"] == 0  # revived from the template
    assert _one(IMPORT_TORCH)["ppid"] == 0


# --- 4. (not the template's own) a restart the notebook prepared -------------------------------

BLOCK_RESTART = r'''
import json, os, sys
folder = os.path.dirname([a for a in sys.argv if a.endswith(".json")][0])
os.mkdir(os.path.join(folder, "kernel2.json"))  # the name of the next start's connection file
open(os.path.join(folder, "kernel2.json", "x"), "w").close()
print(json.dumps({"ppid": os.getppid()}))
'''


@pytest.mark.parametrize("use_template", [True, False])
def test_a_notebook_cannot_make_its_own_restart_raise_in_the_grader(use_template: bool) -> None:
    """The next connection file's name is predictable (kernel{N}.json in the ipc folder, which the
    kernel may write): a folder there makes jupyter_client's write raise IsADirectoryError out of
    SandboxedKernel.start, through NotebookSession.run: the job fails as a grader failure
    ("run again", not stored) instead of the notebook losing its kernel."""
    reports, _ = _session([BLOCK_RESTART, DIE, "print(1)"], use_template=use_template)
    assert reports[1].status == "dead"
