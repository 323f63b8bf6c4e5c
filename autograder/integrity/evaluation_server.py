"""The evaluation's fork server: torch imported once per grading process, not once per evaluation.

A fresh interpreter that imports torch costs ~3 s of CPU, most of an evaluation on small data. So
the first evaluation of a grading process (Linux only) starts one long-lived server per thread
setting, `python -I -c SERVER_BOOT`, which imports PRELOADED (numpy, torch, the parts of torch that
the child's meta-device warm-up would import, the child-side modules) and nothing else, and then
forks one child per evaluation. The child does exactly what evaluation.BOOT's child does after its
imports (`evaluation._child`: cgroup, limits, control.json, export.json, result.json); the grader's
side (evaluation.py) reads the child's end as before.

    grader ──socketpair──> server ──fork──> child (reads control.json, export.json; writes result.json)

What crosses, and what does not:
- The server reads no student data, nor control.json: a request carries the paths the grader chose
  (control.json, the child's stderr file, the folder), and the server's answers are the kernel's
  numbers (the child's pid, its wait status and CPU time from os.wait4, the server's own RssAnon).
- Nothing of a child reaches the server or a later child: the server has no writable MAP_SHARED
  mapping and a single thread (both checked at start and before every fork; it refuses to serve
  otherwise, and the grader falls back to a fresh interpreter), so a fork copies everything; gc is
  frozen so that children copy few pages; no torch op runs in the server, so torch's thread pools
  start in each child. The child, first thing: PR_SET_PDEATHSIG (and getppid checked), its own
  process group, the socket closed and every inherited fd but 0, 1 (/dev/null) and 2 (its own
  stderr file) closed, the signal dispositions and mask the server had on start restored (those of
  a fresh interpreter), dumpable again (the server itself is not: a same-uid process that is not
  root cannot ptrace it or open its /proc/<pid>/mem), then `evaluation._child`. It ends with
  os._exit: it never returns into the server's code.
- A child is the server's child: its crash, hang, OOM kill or SIGKILL is a status the server reaps
  (os.wait4, the pid exact: it is reaped only after the grader acknowledged it, so `on_start` and
  a backstop SIGKILL, sent by the server on the grader's request, never hit a reused pid).
- The server dies with the grading process: PR_SET_PDEATHSIG (getppid checked after), and its end of
  the socket reads EOF, whereupon it kills its child and exits. It is started from one long-lived
  thread of the grading process, because PR_SET_PDEATHSIG fires when the *thread* that started a
  process ends. At exit the grader closes the socket and waits a little (SIGKILL after STOP_SECONDS).
- Lost server: dead before a request (restarted), dead or silent during one (ServerLost: the
  evaluation is done again in a fresh interpreter, with new file names and a new cgroup, so nothing
  of the lost attempt counts), refusing (ServerRefused: this process stops using servers).

Memory: a forked child shares the server's pages; the kernel charges them to the server's cgroup,
not the child's. The child's cgroup therefore gets memory_mb minus the server's RssAnon (what a
fresh interpreter's import would have been charged: measured equal here), and the peak reported
adds it back; without a cgroup, RLIMIT_DATA/AS are computed from the server's VmRSS at the fork, as
a fresh child computes them from its own. Pages the child copies on write count twice (in the
server's RssAnon and in the child's cgroup): the server path is a little stricter, never laxer.

`EvaluationLimits(server=False)` or AUTOGRADER_EVALUATION_SERVER=0 forces a fresh interpreter per
evaluation. A busy server (another thread of the process evaluating) means a fresh interpreter too.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import logging
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import autograder
from autograder.integrity import evaluation

log = logging.getLogger(__name__)

SWITCH = "AUTOGRADER_EVALUATION_SERVER"  # "0", "no", "off" or "false": a fresh interpreter per evaluation
PRELOADED = ("numpy", "torch",
             "sympy", "torch._dynamo",  # what torch's first meta-device call imports (~1.1 s of CPU): _warm_up
             "autograder.integrity.mnist", "autograder.integrity.model_export")  # the child's own imports
REPLY_SECONDS = 30  # the server's answer to a request (a fork, a kill): longer means it is lost
STOP_SECONDS = 2  # at exit, after its socket closed, before SIGKILL
MAX_LINE_BYTES = 4096  # one message either way: a few paths or a few numbers
MAX_FAILED_STARTS = 3  # servers that failed to start in a row before this process stops trying
LOG_TAIL = 2000  # characters of a lost server's stderr logged

SERVER_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
               "from autograder.integrity.evaluation_server import serve; serve(sys.argv[2:])")


class ServerLost(Exception):
    """The server died, went silent or broke the protocol: this evaluation is done again without it."""


class ServerRefused(ServerLost):
    """The server found itself unsafe to fork from (a thread, a writable shared mapping)."""


def wanted(limits: evaluation.EvaluationLimits) -> bool:
    return (limits.server and sys.platform.startswith("linux") and hasattr(os, "fork")
            and hasattr(socket, "socketpair")
            and os.environ.get(SWITCH, "1").strip().lower() not in ("0", "no", "off", "false"))


# --- the grader's side -----------------------------------------------------------------------------

class EvaluationServer:
    """One server process, driven over a socketpair; one request at a time (`busy`)."""

    def __init__(self, threads: int, boot: str = SERVER_BOOT) -> None:
        self.threads, self.boot = int(threads), boot
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.pid = 0
        self.rss_anon_kb = 0  # the server's RssAnon at its last answer: what its children share
        self.busy = threading.Lock()
        self.closed = False
        self._buffer = b""
        self._stderr: Any = None

    @property
    def baseline_mb(self) -> float:
        return self.rss_anon_kb / 1024

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # both ends close-on-exec
        self._stderr = tempfile.TemporaryFile(prefix="autograder-evaluation-server-")
        root = str(Path(autograder.__file__).resolve().parent.parent)
        command = [sys.executable, "-I", "-c", self.boot, root, str(theirs.fileno()), str(os.getpid()),
                   str(self.threads)]

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(command, cwd="/", env=evaluation._environment(self.threads),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                    pass_fds=(theirs.fileno(),), start_new_session=True)

        try:
            self.process = _registry.starter().call(spawn)
        except OSError as error:
            ours.close()
            raise ServerLost(f"the server could not start: {error}") from None
        finally:
            theirs.close()
        self.sock = ours
        try:
            ready = self._receive(time.monotonic() + evaluation.STARTUP_SECONDS)
            if ready is None:
                raise ServerLost("the server was not ready in time")
            if "refused" in ready:
                raise ServerRefused(str(ready["refused"]))
            if ready.get("ready") is not True or ready.get("pid") != self.process.pid:
                raise ServerLost(f"the server's first answer is not as expected: {ready}")
            self._baseline(ready)
        except BaseException:
            self.close()
            raise
        self.pid = self.process.pid

    def alive(self) -> bool:
        return not self.closed and self.process is not None and self.process.poll() is None

    def run(self, control: Path, stderr: Path, folder: Path, backstop: float,
            on_start: Callable[[int], None] | None) -> tuple[int, float, bool]:
        """One child: its wait status, its own CPU seconds, and whether the backstop killed it. The
        server is closed (and the child dies with it) if anything goes wrong here, or raises."""
        try:
            self._send({"run": {"control": str(control), "stderr": str(stderr), "folder": str(folder)}})
            started = self._receive(time.monotonic() + REPLY_SECONDS)
            if started is not None and "refused" in started:
                raise ServerRefused(str(started["refused"]))
            pid = started.get("started") if started else None
            if type(pid) is not int or pid <= 0:
                raise ServerLost(f"no child started: {started}")
            deadline = time.monotonic() + backstop
            if on_start is not None:
                on_start(pid)
            self._send({"go": True})  # from now on the server may reap it
            stopped = False
            ended = self._receive(deadline)
            if ended is None:  # the backstop: the server kills it (not reaped yet, so still this pid)
                self._send({"kill": True})
                stopped = True
                ended = self._receive(time.monotonic() + REPLY_SECONDS)
            end = ended.get("ended") if ended else None
            if not (isinstance(end, dict) and type(end.get("status")) is int
                    and type(end.get("cpu")) in (int, float) and 0 <= end["cpu"] < 1e9):
                raise ServerLost(f"no end reported: {ended}")
            self._baseline(ended)  # type: ignore[arg-type]
            return end["status"], float(end["cpu"]), stopped
        except BaseException:
            self.close()
            raise

    def stop(self) -> None:
        """At exit: the socket closed (the server ends on EOF), SIGKILL if it has not after STOP_SECONDS."""
        self.close(grace=STOP_SECONDS, expected=True)

    def close(self, grace: float = 0.0, expected: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sock is not None:
            self.sock.close()
        process = self.process
        if process is not None:
            if grace:
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                process.kill()  # not reaped yet: still this process; its child gets its PDEATHSIG
            process.wait()
            if not expected and process.returncode not in (None, -signal.SIGKILL) and self._stderr is not None:
                self._stderr.seek(0, os.SEEK_END)
                self._stderr.seek(max(0, self._stderr.tell() - LOG_TAIL))
                log.warning("the evaluation server ended (status %s); its stderr ends with:\n%s",
                            process.returncode, self._stderr.read().decode("utf-8", errors="replace"))
        if self._stderr is not None:
            self._stderr.close()

    def _baseline(self, message: dict[str, Any]) -> None:
        value = message.get("rss_anon_kb")
        if type(value) is not int or not 0 <= value < 1 << 40:
            raise ServerLost(f"no memory figure in {message}")
        self.rss_anon_kb = value

    def _send(self, message: dict[str, Any]) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall((json.dumps(message) + "\n").encode(), socket.MSG_NOSIGNAL)
        except OSError as error:
            raise ServerLost(f"the server is gone ({error})") from None

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None once `deadline` passed; ServerLost at EOF or anything malformed."""
        assert self.sock is not None
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE_BYTES:
                raise ServerLost("the server's answer is too long")
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            try:
                data = self.sock.recv(MAX_LINE_BYTES)
            except OSError as error:
                raise ServerLost(f"the server is gone ({error})") from None
            if not data:
                raise ServerLost("the server ended")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            raise ServerLost("the server's answer is not a JSON object")
        return message


class _Starter:
    """A thread that lives as long as the process and starts every server: PR_SET_PDEATHSIG fires
    when the thread that started a process ends, so a server started from a short-lived thread (a
    pool's) would die with it."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._work, name="evaluation-server-starter", daemon=True).start()

    def _work(self) -> None:
        while True:
            job, future = self.jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    future.set_exception(error)

    def call(self, job: Callable[[], Any]) -> Any:
        future: Future[Any] = Future()
        self.jobs.put((job, future))
        return future.result()


class _Registry:
    """This process's servers, one per thread setting (a forked copy of the process starts afresh)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.servers: dict[int, EvaluationServer] = {}
        self.failed_starts = 0
        self.disabled: str | None = None
        self._starter: _Starter | None = None
        self._hooked = False

    def starter(self) -> _Starter:
        with self.lock:
            if self._starter is None:
                self._starter = _Starter()
            return self._starter

    def own(self) -> None:
        """Called with the lock held: once per process, the exit and fork hooks."""
        if self.pid != os.getpid():  # os.fork without the hook (should not happen): forget the parent's
            self.forget()
        if not self._hooked:
            self._hooked = True
            atexit.register(stop_all)
            os.register_at_fork(after_in_child=self.forget)

    def forget(self) -> None:
        """In a forked copy of the grading process: the servers are the parent's (closing our copy of
        a socket leaves the parent's open), the starter thread does not exist here."""
        for server in self.servers.values():
            if server.sock is not None:
                server.sock.close()
        self.lock = threading.Lock()
        self.pid, self.servers, self._starter, self._hooked = os.getpid(), {}, None, False

    def reserve(self, threads: int) -> EvaluationServer | None:
        """A started server for `threads`, locked for the caller; None when servers are disabled
        here, when it is busy with another thread's evaluation, or when it could not start."""
        with self.lock:
            self.own()
            if self.disabled:
                return None
            server = self.servers.get(threads)
            if server is not None and not server.busy.acquire(blocking=False):
                return None
            if server is not None and server.process is not None and not server.alive():
                server.busy.release()
                server.close()
                log.warning("the evaluation server for %d thread(s) was found dead: starting another", threads)
                server = None
            if server is None:
                server = self.servers[threads] = EvaluationServer(threads)
                server.busy.acquire()
            fresh = server.process is None
        if not fresh:
            return server
        try:
            server.start()
        except BaseException as error:
            with self.lock:
                if self.servers.get(threads) is server:
                    del self.servers[threads]
                self.failed_starts += 1
                failures = self.failed_starts
            server.busy.release()
            if isinstance(error, ServerRefused):
                self.disable(f"the evaluation server refused to serve: {error}")
            elif isinstance(error, ServerLost):
                log.warning("the evaluation server did not start (%s)", error)
                if failures >= MAX_FAILED_STARTS:
                    self.disable(f"{failures} evaluation servers in a row did not start")
            else:
                raise
            return None
        with self.lock:
            self.failed_starts = 0
        return server

    def disable(self, reason: str) -> None:
        log.warning("%s: every evaluation of this process starts a fresh interpreter", reason)
        with self.lock:
            self.disabled = reason


_registry = _Registry()


@contextmanager
def reserved(threads: int) -> Iterator[EvaluationServer | None]:
    """The server to evaluate on, if any, held for the duration."""
    server = _registry.reserve(threads)
    try:
        yield server
    finally:
        if server is not None:
            server.busy.release()


def refused(reason: str) -> None:
    """The evaluation found the server refusing mid-way: no server for this process any more."""
    _registry.disable(f"the evaluation server refused to serve: {reason}")


def current(threads: int = evaluation.THREADS) -> EvaluationServer | None:
    """This process's server for `threads`, if one runs (for logs and tests)."""
    with _registry.lock:
        server = _registry.servers.get(threads) if _registry.pid == os.getpid() else None
    return server if server is not None and server.alive() else None


def stop_all() -> None:
    with _registry.lock:
        servers = list(_registry.servers.values()) if _registry.pid == os.getpid() else []
        _registry.servers = {}
    for server in servers:
        server.stop()


@contextmanager
def using(server: EvaluationServer) -> Iterator[EvaluationServer]:
    """Evaluations of this process on `server` (not started yet: the first one starts it) for the
    duration, then the previous state back. For tests: a server started with another boot."""
    with _registry.lock:
        _registry.own()
        saved = dict(_registry.servers), _registry.disabled, _registry.failed_starts
        previous = _registry.servers.get(server.threads)
        _registry.servers[server.threads] = server
        _registry.disabled, _registry.failed_starts = None, 0
    try:
        yield server
    finally:
        with _registry.lock:
            latest = _registry.servers.get(server.threads)  # `server`, or one started after it was lost
            _registry.servers, _registry.disabled, _registry.failed_starts = saved
        for stale in (server, latest):
            if stale is not None and stale is not previous:
                stale.stop()


# --- the server's side -----------------------------------------------------------------------------

def serve(argv: list[str]) -> NoReturn:
    """The server process: SERVER_BOOT's entry. Ends with os._exit (no slow interpreter teardown)."""
    fd, parent, _threads = (int(value) for value in argv)
    _die_with(parent)  # before the imports: a grader already gone costs nothing
    sock = socket.socket(fileno=fd)
    initial = _signal_state()  # a fresh interpreter's: what every child gets back
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a caller ignoring SIGCHLD would have children reaped unseen
    _prctl(PR_SET_DUMPABLE, 0)
    try:
        for name in PRELOADED:
            importlib.import_module(name)
        gc.collect()
        gc.freeze()  # the collector never touches what is here now: children copy fewer pages
        reason = unsafe_to_fork()
        if reason:
            _reply(sock, {"refused": reason})
            os._exit(1)
        _reply(sock, {"ready": True, "pid": os.getpid(), "rss_anon_kb": _status_kb("RssAnon")})
        _serve(sock, initial)
    except _GraderGone:
        os._exit(0)
    except BaseException:  # noqa: BLE001 - the server's own failure: for the grader's log
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


class _GraderGone(Exception):
    pass


def unsafe_to_fork() -> str | None:
    """Why a fork of this process could share something with its child, or None: another thread
    (it would be missing in the child, holding whatever lock it held) or a writable shared mapping."""
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:
        return f"{len(threads)} threads"
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) >= 2 and fields[1][1:2] == "w" and fields[1][3:4] == "s":
                return f"a writable shared mapping ({line.strip()})"
    return None


class _Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def fill(self) -> bool:
        """One read (the socket is readable); False at EOF."""
        data = self.sock.recv(MAX_LINE_BYTES)
        self.buffer += data
        if len(self.buffer) > 2 * MAX_LINE_BYTES:
            raise ValueError("a request too long")
        return bool(data)

    def take(self) -> dict[str, Any] | None:
        if b"\n" not in self.buffer:
            return None
        line, _, self.buffer = self.buffer.partition(b"\n")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("a request that is not a JSON object")
        return message


def _serve(sock: socket.socket, initial: tuple[dict[int, Any], set[int]]) -> None:
    lines = _Lines(sock)
    while True:
        message = lines.take()
        if message is None:
            if not lines.fill():
                raise _GraderGone
            continue
        request = message.get("run")
        if request is None:
            continue  # a kill or go for a child already reaped
        if not (isinstance(request, dict) and set(request) == {"control", "stderr", "folder"}
                and all(isinstance(value, str) for value in request.values())):
            raise ValueError(f"a malformed request: {message}")
        reason = unsafe_to_fork()
        if reason:
            _reply(sock, {"refused": reason})
            return
        rss_kb, me = _status_kb("VmRSS"), os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, sock, initial, rss_kb, me)
        _watch(sock, lines, pid)


def _watch(sock: socket.socket, lines: _Lines, pid: int) -> None:
    """The child's life: reported started, reaped once the grader said go, killed when it says so,
    and its status and CPU time reported. If the grader goes away, the child is killed and reaped."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # older kernels: polled
    reaped = False
    try:
        _reply(sock, {"started": pid})
        go = False
        while True:
            while (message := lines.take()) is not None:
                if message.get("kill"):
                    os.kill(pid, signal.SIGKILL)  # not reaped yet: still this child
                go = go or bool(message.get("go"))
            if go:
                done, status, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    reaped = True
                    if pidfd is not None:  # closed before the reply: the grader then sees the server as it idles
                        os.close(pidfd)
                        pidfd = None
                    _reply(sock, {"ended": {"status": status, "cpu": usage.ru_utime + usage.ru_stime},
                                  "rss_anon_kb": _status_kb("RssAnon")})
                    return
            waiting = [sock] + ([pidfd] if go and pidfd is not None else [])
            ready = select.select(waiting, [], [], evaluation.POLL_SECONDS if go and pidfd is None else None)[0]
            if sock in ready and not lines.fill():
                raise _GraderGone
    finally:
        if not reaped:  # the grader is gone, or the server fails: no child outlives its watch
            os.kill(pid, signal.SIGKILL)
            os.wait4(pid, 0)
        if pidfd is not None:
            os.close(pidfd)


def _child(request: dict[str, str], sock: socket.socket, initial: tuple[dict[int, Any], set[int]],
           rss_kb: int, parent: int) -> NoReturn:
    """The forked child: nothing of the server's kept, then the evaluation as in a fresh interpreter."""
    code = 1
    try:
        _die_with(parent)
        os.setpgid(0, 0)  # a signal to the child's group is not one to the server
        sock.close()
        _own_fds(request["stderr"])
        handlers, mask = initial
        for number, handler in handlers.items():
            try:
                signal.signal(number, handler)
            except (OSError, ValueError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _prctl(PR_SET_DUMPABLE, 1)  # as a fresh process: its own /proc files are its uid's
        os.chdir(request["folder"])
        evaluation._child(request["control"], rss_kb=rss_kb)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - as a fresh interpreter: the traceback on stderr, status 1
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001 - nothing more to tell
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _own_fds(stderr: str) -> None:
    """0 and 1 on /dev/null, 2 on the child's own stderr file, every other descriptor closed."""
    null = os.open(os.devnull, os.O_RDWR)
    error = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(error, 2)
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own descriptor, closed already


def _signal_state() -> tuple[dict[int, Any], set[int]]:
    handlers = {}
    for number in signal.valid_signals():
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            handler = signal.getsignal(number)
        except (OSError, ValueError):
            continue
        if handler is not None:  # None: a handler not set from Python, which Python cannot set back
            handlers[int(number)] = handler
    return handlers, set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4  # <linux/prctl.h>


def _prctl(option: int, value: int) -> None:
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value})")


def _die_with(parent: int) -> None:
    """SIGKILL when the parent ends; if it ended before the prctl took effect, end now."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return 0


def _reply(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.sendall((json.dumps(message) + "\n").encode(), socket.MSG_NOSIGNAL)
    except OSError:
        raise _GraderGone from None
