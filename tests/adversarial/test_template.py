"""Kernels forked from a kernel template (`autograder.sandbox.template`): what a notebook sees is
what a fresh kernel sees, and nothing a kernel does reaches its template, its keeper or the next
kernel of the same template.

Whether a kernel came from a template shows in its parent: a template's kernel is forked by a
keeper outside its pid namespace (getppid() is 0), a fresh one is started by bubblewrap's init
(getppid() is 1). Every test checks which kind it got, so none passes on the wrong path.
(`test_persistence.py` runs its probes in template kernels too: templates are the default.)
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from autograder.execution.session import NotebookSession
from autograder.sandbox import template
from autograder.sandbox.limits import Limits
from autograder.sandbox.local import LocalSandbox, sandbox_problem
from tests.probe import run_cell_json

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the probes use x86_64 syscall numbers"),
    pytest.mark.skipif(sandbox_problem() is not None, reason=f"no local sandbox: {sandbox_problem()}"),
]

LIMITS = Limits(timeout=300, cell_timeout=120, memory_mb=1024, pids=64, output_kb=256, disk_mb=64)

# What a notebook can observe about its process and sandbox, minus what differs between any two
# kernels (pids, namespace ids, the connection file's folder).
LOOK = r'''
import json, os, socket, sys
def status(key):
    return [l.split(":", 1)[1].strip() for l in open("/proc/self/status") if l.startswith(key + ":")][0]
mounts = sorted((f[4], f[5].split(",")[0], f[-3], f[-1].split(",")[0])
                for f in (l.split() for l in open("/proc/self/mountinfo"))
                if not f[4].startswith("/tmp/autograder-sandbox"))
shared = [l.split()[-1] for l in open("/proc/self/maps") if l.split()[1][1] == "w" and l.split()[1][3] == "s"]
visible = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue  # its own command line is the template's (of public source): what it forked from
    try:
        visible[pid] = (open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\0", b" ").decode(errors="replace"),
                        [l.split()[1] for l in open("/proc/%s/status" % pid) if l.startswith("Uid:")][0])
    except OSError:
        pass
import numpy, random
print(json.dumps({
    "ppid": os.getppid(), "preloaded": "torch" in sys.modules,
    "path": sys.path, "flags": list(sys.flags), "argv0": sys.argv[0], "argv": sys.argv[2:][1:],
    "cwd": os.getcwd(), "env": {k: v for k, v in os.environ.items()},
    "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
    "caps": {k: status(k) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    "nnp": status("NoNewPrivs"), "seccomp": status("Seccomp"),
    "oom_score_adj": open("/proc/self/oom_score_adj").read().strip(), "hostname": socket.gethostname(),
    "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]),
    "mounts": mounts, "shared_writable": shared, "visible": visible, "fds": sorted(os.listdir("/proc/self/fd")),
    "numpy": numpy.random.random(), "random": random.random(), "hash": hash("a string"),
    "torch": __import__("torch").rand(1).item(),
}))
'''


def _run(sandbox: LocalSandbox, code: str) -> dict[str, Any]:
    return run_cell_json(sandbox, LIMITS, code)


def _look(use_template: bool) -> dict[str, Any]:
    with LocalSandbox(LIMITS) as sandbox:
        sandbox.use_template = use_template
        return _run(sandbox, LOOK)


def _template_of(sandbox: LocalSandbox) -> template.KernelTemplate:
    found = template.template_for(sandbox.template_environment())
    assert found is not None and found.alive()
    return found


def test_a_template_kernel_sees_what_a_fresh_kernel_sees() -> None:
    fresh, forked = _look(False), _look(True)
    assert (fresh["ppid"], fresh["preloaded"]) == (1, False)  # bubblewrap's init started it
    assert (forked["ppid"], forked["preloaded"]) == (0, True)  # a keeper outside its pid namespace
    for key in ("path", "flags", "argv0", "argv", "cwd", "env", "ids", "caps", "nnp", "seccomp", "oom_score_adj",
                "hostname", "interfaces", "mounts", "shared_writable", "fds"):
        assert forked[key] == fresh[key], key
    assert set(forked["caps"].values()) == {"0000000000000000"}  # none, in any set
    assert forked["nnp"] == "1" and forked["ids"][:4] == [forked["ids"][0]] * 4 and forked["ids"][4] == []
    assert forked["shared_writable"] == []
    # What it can see of other processes: the sandbox's own, never the template or the keeper.
    assert not any("become_kernel" in cmdline for cmdline, _ in forked["visible"].values())
    # bubblewrap's init (root outside, so unmapped inside), and for a template's kernel the
    # placeholder, of the kernel's own uid.
    for seen, others in ((fresh, []), (forked, [["sleep infinity ", str(forked["ids"][0])]])):
        inits = [entry for entry in seen["visible"].values() if entry[0].startswith("bwrap ")]
        assert [uid for _, uid in inits] == ["65534"]
        assert [entry for entry in seen["visible"].values() if entry not in inits] == others


def _look_rerun() -> dict[str, Any]:
    with LocalSandbox(LIMITS, rerun=True) as sandbox:
        return _run(sandbox, LOOK)


def test_kernels_of_one_template_draw_different_random_numbers() -> None:
    first, second = _look(True), _look(True)
    assert first["ppid"] == second["ppid"] == 0
    # numpy's and torch's global generators were seeded in the template, at import.
    for generator in ("numpy", "torch", "random"):
        assert first[generator] != second[generator], generator
    assert first["hash"] == second["hash"]  # the one thing they share (hence the reruns' template)


def test_a_rerun_kernel_comes_from_another_interpreter_than_the_first_runs() -> None:
    first, rerun = _look(True), _look_rerun()
    assert first["ppid"] == rerun["ppid"] == 0
    assert first["hash"] != rerun["hash"]  # as between two fresh interpreters: a set of strings iterates differently


ATTACK = r'''
import ctypes, json, os, signal
libc = ctypes.CDLL(None, use_errno=True)
found = []
# Every writable mapping it has: if one were shared with the template, the next kernel would see this.
for line in open("/proc/self/maps"):
    fields = line.split()
    if fields[1][1] == "w" and len(fields) > 5 and fields[5].startswith("/") and "(deleted)" not in line:
        found.append(fields[5])
os.environ["TEMPLATE_MARK"] = "left"
for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
        try:
            os.kill(int(name), signal.SIGKILL)
            found.append("killed %s" % name)
        except OSError:
            pass
print(json.dumps({"ppid": os.getppid(), "tried": found}))
'''


def test_what_a_kernel_does_to_its_sandbox_leaves_the_template_serving() -> None:
    with LocalSandbox(LIMITS) as sandbox:
        served_by = _template_of(sandbox).process.pid
        session = NotebookSession(sandbox, LIMITS, [ATTACK])
        try:
            session.run()  # its own sandbox may die under it: that is all it can reach
        finally:
            session.close()
    after = _look(True)
    assert after["ppid"] == 0 and "TEMPLATE_MARK" not in after["env"]
    with LocalSandbox(LIMITS) as sandbox:
        assert _template_of(sandbox).process.pid == served_by  # the same template, still healthy


def test_a_killed_template_is_replaced() -> None:
    with LocalSandbox(LIMITS) as sandbox:
        old = _template_of(sandbox)
    old.process.kill()
    old.process.wait()
    after = _look(True)
    assert after["ppid"] == 0
    with LocalSandbox(LIMITS) as sandbox:
        assert _template_of(sandbox).process.pid != old.process.pid


def test_a_template_kernel_that_cannot_start_is_replaced_by_a_fresh_one(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A keeper that cannot join its sandbox (here: told a pid that is no process) fails at once; a
    fresh kernel takes its place, and that template serves no more kernels."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    monkeypatch.setattr(LocalSandbox, "_placeholder_pid", lambda self: gone.pid)
    caplog.set_level(logging.WARNING, logger=template.__name__)
    environment = None
    try:
        with LocalSandbox(LIMITS) as sandbox:
            environment = sandbox.template_environment()
            started = time.monotonic()
            seen = _run(sandbox, LOOK)
        assert seen["ppid"] == 1 and not seen["preloaded"]  # a fresh kernel
        assert time.monotonic() - started < 60  # no wait for the start timeout (120 s): the failure is reported
        assert "did not start" in caplog.text
        assert template.template_for(environment) is None
    finally:
        template._templates.pop((0, *sorted((environment or {}).items())), None)


def test_a_keeper_refuses_a_process_in_the_templates_own_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Told the pid of a process outside every sandbox, the keeper must not start a kernel there."""
    host = subprocess.Popen(["sleep", "60"])
    monkeypatch.setattr(LocalSandbox, "_placeholder_pid", lambda self: host.pid)
    environment = None
    try:
        with LocalSandbox(LIMITS) as sandbox:
            environment = sandbox.template_environment()
            seen = _run(sandbox, LOOK)
        assert seen["ppid"] == 1  # a fresh kernel in the sandbox, not a forked one on the host
        assert host.poll() is None  # and the keeper left alone what it was wrongly pointed at
    finally:
        if host.poll() is None:
            host.kill()
        template._templates.pop((0, *sorted((environment or {}).items())), None)


def test_no_kernel_outlives_its_keeper_or_its_sandbox() -> None:
    with LocalSandbox(LIMITS) as sandbox:
        uid = sandbox.uid
        _run(sandbox, "import subprocess; subprocess.Popen(['sleep', '600'], start_new_session=True); print('{}')")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        owned = [p for p in filter(str.isdigit, os.listdir("/proc"))
                 if _uid_of(p) == uid]
        if not owned:
            break
        time.sleep(0.2)
    assert owned == []


def _uid_of(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
    except (OSError, IndexError):
        return None
