"""Kernel templates: a kernel forked from a process that has already imported torch.

A fresh kernel costs about 2.6 CPU-seconds before the notebook's first line (the interpreter,
ipykernel, and `import torch`, which every notebook of the course does): more than the rest of a
hw1-hw3 grading. A template is a process, started once per grading process and thread setting,
that imports those modules and then only forks. It is the grader's own code from start to end:
it never sees a submission, a test or anything a kernel produced; a request names only the grader's
own settings (a sandbox's namespaces, cgroup, uid, environment, connection file).

The walls are bubblewrap's, exactly as for a fresh kernel (`autograder.sandbox.local`): the sandbox
is started as before, with a placeholder instead of the kernel. A child of the template then

1. joins the sandbox's cgroups (so its CPU time and memory count from here), as root on the host;
2. joins the placeholder's mount, network, ipc, uts, cgroup and pid namespaces (setns: the same
   walls bubblewrap built, the same root, the same /proc);
3. forks the kernel (the first process of the pid namespace it joined), which drops to the
   sandbox's uid with no groups and no capabilities, runs the prologue's isolation in-process
   (forgets the uid's host keys, makes a user namespace of its own, a new session keyring,
   no_new_privs), closes every inherited file descriptor, reseeds numpy's global generator, and
   runs ipykernel as `python -m ipykernel_launcher` would;
4. waits for the kernel and, when it ends, kills the placeholder: the sandbox ends with its kernel,
   so whoever watches the sandbox's process sees the kernel's death.

What the template shares with its kernels, and why nothing crosses from one kernel to the next:
its memory is copied at fork, never shared (the template refuses to serve if it has any shared
writable mapping, and refuses to fork while it has a second thread); its processes are outside
every sandbox's pid namespace (a kernel cannot name them, let alone signal or trace them, and they
run as root); it holds no file a kernel can reach. What the template's imports drew from the
system (numpy's and torch's global generators) is drawn again in each kernel; Python's `random`
does so itself after a fork. Python's string-hash seed cannot be drawn again: every kernel of one
template shares it (the iteration order of a set of strings), so the runs hw4 compares with a
submission's first run have kernels of another template (`variant`), as two fresh interpreters
would differ. A kernel's own /proc/self/cmdline is its template's (public source, no secret).
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from autograder.sandbox.prologue import ISOLATION

# sympy and torch._dynamo: what torch.use_deterministic_algorithms (the course's set_seed) imports, ~1 CPU-s
PRELOADED = ("numpy", "torch", "sympy", "torch._dynamo", "otter", "ipykernel.kernelapp")
log = logging.getLogger(__name__)
READY_TIMEOUT = 60.0  # seconds for a template to import what it preloads, on a loaded machine
REPLY_TIMEOUT = 30.0  # seconds for a template's fork to be acknowledged

# The template's own code. Inline, like the prologue: the same text runs in the template (outside
# any sandbox) and in its kernels (where the autograder package is not importable).
TEMPLATE = ISOLATION + r'''
import gc, json, select, signal, traceback

CLONE = {"mnt": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
         "net": 0x40000000, "pid": 0x20000000}
JOINED = ("ipc", "uts", "net", "cgroup", "pid", "mnt")
KEEPER_JOINS = ("ipc", "uts", "net", "pid")  # its child, the kernel, is then in the sandbox's pid namespace
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAP_AMBIENT, CAP_KILL = 1, 4, 47, 5
KEEPER_TIMEOUT = 20  # seconds for a keeper to join a sandbox: a few milliseconds, unless broken
STARTUP_SIGNALS = {}  # the interpreter's own dispositions (SIGPIPE and SIGXFSZ ignored), for the kernels


class BecomeKernel(BaseException):
    """Raised in a forked kernel once it is isolated: it unwinds every frame of the template and
    keeper code (and their locals: the request, host pids and paths) before ipykernel runs."""

    def __init__(self, arguments):
        self.arguments = arguments


def one_thread():
    return len(os.listdir("/proc/self/task")) == 1


def shared_writable_mappings():
    with open("/proc/self/maps") as maps:
        return [line for line in maps if line.split()[1][1] == "w" and line.split()[1][3] == "s"]


def anonymous_kb():
    with open("/proc/self/status") as status:
        return int([line.split()[1] for line in status if line.startswith("RssAnon:")][0])


def serve(preload):
    for signum in range(1, signal.NSIG):
        try:
            STARTUP_SIGNALS[signum] = signal.getsignal(signum)
        except (OSError, ValueError):
            pass
    for name in preload:
        __import__(name)
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(1)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernels' keepers are reaped by the system
    gc.freeze()  # what the imports made is never collected, so never copied into a kernel by gc
    problem = None if one_thread() else "a preloaded module started a thread"
    problem = problem or ("shared writable mappings: %r" % shared_writable_mappings()[:3]
                          if shared_writable_mappings() else None)
    # closefd=False: in a kernel, fds 0 and 1 are /dev/null by the time these objects are freed.
    requests = open(0, "rb", buffering=0, closefd=False)
    replies = open(1, "wb", buffering=0, closefd=False)
    replies.write((json.dumps({"ready": problem is None, "problem": problem,
                               "anonymous_kb": anonymous_kb()}) + "\n").encode())
    if problem:
        os._exit(1)
    pending = b""
    while True:
        chunk = requests.read(65536)
        if not chunk:
            os._exit(0)  # the grader closed its end, or is gone
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            if not one_thread():
                replies.write(b'{"error": "the template has a thread of its own: no fork"}\n')
                continue
            joined, told = os.pipe()
            keeper = os.fork()
            if keeper == 0:
                os.close(joined)
                try:
                    keep(request, told)
                except BecomeKernel:
                    raise
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            os.close(told)
            # The keeper says when the kernel is forked inside, or closes the pipe having failed.
            ready = select.select([joined], [], [], KEEPER_TIMEOUT)[0]
            said = os.read(joined, 1) if ready else b""
            os.close(joined)
            reply = {"pid": keeper} if said == b"1" else {"error": "the keeper could not start the kernel"}
            replies.write((json.dumps(reply) + "\n").encode())


def keep(request, told):
    """The kernel's keeper: joins the sandbox, forks the kernel, tells the template so, and ends
    the sandbox when the kernel ends (the grader sees the kernel's death as the sandbox's). Any
    failure ends the keeper alone: the template tells the grader, which ends the sandbox."""
    handle = os.pidfd_open(request["placeholder"])
    keep_kernel(request, handle, told)
    signal.pidfd_send_signal(handle, signal.SIGKILL)


def keep_kernel(request, handle, told):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)  # the template's pipes: the grader sees them end with the template
    os.close(null)
    os.setsid()
    placeholder = request["placeholder"]
    namespaces = {kind: os.open("/proc/%d/ns/%s" % (placeholder, kind), os.O_RDONLY) for kind in JOINED}
    # Still the placeholder (alive, so its pid was not reused), and namespaces of a sandbox, not ours.
    if select.select([handle], [], [], 0)[0]:
        fail("the sandbox's placeholder ended")
    for kind, fd in namespaces.items():
        if os.fstat(fd).st_ino == os.stat("/proc/self/ns/" + kind).st_ino:
            fail("the placeholder shares the template's %s namespace" % kind)
    for kind in KEEPER_JOINS:
        join(namespaces, kind)
    kernel = os.fork()
    if kernel == 0:
        try:
            # The kernel alone joins the sandbox's cgroups (the keeper stays out of its memory
            # limit), by "0", itself, before its cgroup and mount namespaces hide the host's.
            for procs in request["cgroup_procs"]:
                with open(procs, "w") as target:
                    target.write("0")
            for kind in ("cgroup", "mnt"):
                join(namespaces, kind)
            arguments = become_kernel(request)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        raise BecomeKernel(arguments)
    os.write(told, b"1")
    os.close(told)
    # From here the keeper needs only to signal the placeholder: as root with every capability it
    # would be more to its kernel than bubblewrap's init is (a tracer, by PTRACE_TRACEME).
    set_capabilities(1 << CAP_KILL)
    while True:  # its own child, and any the kernel gives it by CLONE_PARENT
        try:
            if os.waitpid(-1, 0)[0] == kernel:
                return
        except ChildProcessError:
            return


def join(namespaces, kind):
    if libc.setns(namespaces[kind], CLONE[kind]) != 0:
        fail("cannot join the sandbox's %s namespace" % kind)


def become_kernel(request):
    uid = request["uid"]
    os.chdir(request["cwd"])
    cap = 0
    while prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    set_capabilities(0)
    # A change of uid makes the process undumpable (its /proc/self root's): as after an exec, it is
    # dumpable again, or it could not write its own uid_map below.
    if prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        fail("cannot set dumpable")
    isolate("require", request["forget"])
    set_capabilities(0)  # those of its new user namespace: a fresh kernel loses them at its exec
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, 2 ** 31 - 1)
    for signum, disposition in STARTUP_SIGNALS.items():
        try:
            signal.signal(signum, disposition)
        except (OSError, ValueError, TypeError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.environ.clear()
    os.environ.update(request["env"])
    arguments = list(request["arguments"])
    request.clear()
    return arguments


def run_kernel(arguments):
    """In the kernel, at the top of its stack: what `python -m ipykernel_launcher ARGUMENTS` runs."""
    # Drawn from the system at import, in the template: every kernel would draw the same numbers
    # and keys (Python's random draws again by itself after a fork).
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    if "multiprocessing" in sys.modules:
        sys.modules["multiprocessing"].current_process().authkey = os.urandom(32)
    import runpy
    sys.argv = [""] + arguments
    sys.orig_argv = [sys.executable, "-m", "ipykernel_launcher", *arguments]
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    sys.exit(0)


def set_capabilities(mask):
    """Exactly the capabilities in `mask` (of the first 32) permitted and effective, none
    inheritable or ambient (setuid from root clears the first two sets, not the inheritable one)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)(mask, mask, 0, 0, 0, 0)
    if libc.capset(header, data) != 0:
        fail("cannot set capabilities")
    if prctl(PR_CAP_AMBIENT, 4, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:  # CLEAR_ALL
        fail("cannot clear ambient capabilities")


if __name__ == "__main__":
    becoming = None
    try:
        serve(sys.argv[1].split(","))
    except BecomeKernel as raised:
        becoming = raised.arguments
    # Out of the except block, the exception and every frame it held are gone.
    gc.collect()
    run_kernel(becoming)
'''


class TemplateUnavailable(RuntimeError):
    pass


class KernelTemplate:
    """One template process, for kernels of one environment (the thread settings are read by the
    numerical libraries when they are loaded, so a template serves only kernels of its own).
    It dies with the thread that starts it (PR_SET_PDEATHSIG): start it from a thread that lives
    as long as its kernels are wanted (a worker's main thread); one that died is started again."""

    def __init__(self, environment: dict[str, str], preload: tuple[str, ...] = PRELOADED) -> None:
        self.environment = dict(environment)
        self.broken = False
        self._lock = threading.Lock()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the template's stderr, for its failures
        self.process = subprocess.Popen(
            [sys.executable, "-c", TEMPLATE, ",".join(preload)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd="/",
            env=self.environment, close_fds=True)
        self._ready = False  # its imports go on while the caller does other work: see _wait_ready
        # What its kernels share with it and do not pay for in their cgroup: its anonymous memory,
        # which a fresh kernel would have allocated itself (known once it is ready).
        self.reserve_mb = 0.0

    def _wait_ready(self) -> None:
        if self._ready:
            return
        try:
            reply = self._reply(READY_TIMEOUT)
        except TemplateUnavailable:
            reply = {"problem": self.log_tail()[-1000:] or "it exited"}
        if not reply.get("ready"):
            self.broken = True
            raise TemplateUnavailable(f"the kernel template did not start: {reply.get('problem')}")
        self._ready = True
        self.reserve_mb = reply.get("anonymous_kb", 0) / 1024

    def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            raise TemplateUnavailable("the kernel template stopped answering")
        return json.loads(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, size: int = 4000) -> str:
        """The end of what the template and its keepers wrote to stderr (their tracebacks)."""
        self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, self._log.tell() - size))
        return self._log.read().decode("utf-8", "replace")

    def failed(self) -> None:
        """A kernel of this template did not start: no more kernels from it (they start fresh)."""
        self.broken = True
        log.warning("a kernel forked from the template did not start; kernels start fresh from now on. "
                    "The template's log ends with:\n%s", self.log_tail())

    def fork(self, placeholder: int, cgroup_procs: list[Path], uid: int, env: dict[str, str], cwd: str,
             arguments: list[str], forget: bool) -> int:
        """Start a kernel in the sandbox of `placeholder` (its host pid); return the keeper's pid."""
        request = {"placeholder": placeholder, "cgroup_procs": [str(p) for p in cgroup_procs], "uid": uid,
                   "env": env, "cwd": cwd, "arguments": arguments, "forget": forget}
        with self._lock:
            self._wait_ready()
            assert self.process.stdin is not None
            try:
                self.process.stdin.write((json.dumps(request) + "\n").encode())
                self.process.stdin.flush()
            except OSError as error:
                raise TemplateUnavailable(f"the kernel template is gone: {error}") from None
            reply = self._reply(REPLY_TIMEOUT)
        if "pid" not in reply:
            raise TemplateUnavailable(f"the kernel template refused: {reply.get('error')}")
        return int(reply["pid"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


_templates: dict[tuple[Any, ...], KernelTemplate | None] = {}
_templates_lock = threading.Lock()


def template_for(environment: dict[str, str], variant: int = 0) -> KernelTemplate | None:
    """This process's template for kernels of `environment`, started on first use; None where none
    can run, or where one failed (then kernels start fresh). Templates of two variants are two
    interpreters: what each drew at its start (the string-hash seed) differs between them."""
    key = (variant, *sorted(environment.items()))
    with _templates_lock:
        if key in _templates:
            template = _templates[key]
            if template is None or template.broken:
                return None
            if template.alive():
                return template
            template.close()  # killed or crashed: another one
        try:
            template = KernelTemplate(environment)
        except (TemplateUnavailable, OSError) as error:
            log.warning("kernels start fresh: %s", error)
            template = None
        _templates[key] = template
        return template
