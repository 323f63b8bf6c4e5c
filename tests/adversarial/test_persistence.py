"""Nothing one submission's kernel leaves behind reaches the next one, or outlives the sandbox.

Run 1 writes a marker into every store a kernel can reach: the kernel keyrings (session @s, user
@u, user-session @us, persistent, a named keyring linked into each, every keyring it can see in
/proc/keys), SysV shared memory, message queues and semaphores, a POSIX message queue, /dev/shm,
/tmp, /var/tmp, $HOME, every other writable folder it finds by walking /, and an abstract Unix
socket held by a background process that daemonizes. Run 2, in a new sandbox (under another slot's
uid while the first is still held, then under the first one's uid again), looks for all of them
and must find nothing; nor must the host afterwards (/proc/keys, /proc/sysvipc, POSIX queues,
/dev/shm, /tmp, /var/tmp, processes).

The grader's process gets a session keyring of its own first, as it has under a login session
(pam_keyinit): its kernels inherit it, and a possessed keyring grants possessor rights to any uid.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from autograder.sandbox.limits import Limits
from autograder.sandbox.local import FIRST_UID, SLOTS, LocalSandbox, sandbox_problem
from autograder.sandbox.plain import PlainSandbox
from autograder.sandbox.prologue import with_prologue
from tests.probe import run_cell_json

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the markers use x86_64 syscall numbers"),
    pytest.mark.skipif(sandbox_problem() is not None, reason=f"no local sandbox: {sandbox_problem()}"),
]

LIMITS = Limits(timeout=600, cell_timeout=240, memory_mb=1024, pids=64, output_kb=256, disk_mb=64)
SYSV_KEYS = {"shm": 0x41470001, "msg": 0x41470002, "sem": 0x41470003}
KEYCTL, ADD_KEY = 250, 248
KEYCTL_JOIN_SESSION_KEYRING = 1

COMMON = r'''
import ctypes, json, os, socket, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.shmat.restype = ctypes.c_void_p

def syscall(number, *args):
    args = [a if a is None or isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    result = libc.syscall(ctypes.c_long(number), *args)
    return result if result >= 0 else -ctypes.get_errno()

def keyctl(*args):
    return syscall(250, *args)

RINGS = {"@s": -3, "@u": -4, "@us": -5, "persistent": keyctl(22, -1, -3)}
QUEUE = ("/marker-" + TOKEN).encode()
SOCKET = "marker-" + TOKEN  # abstract: bound as NUL + name
SKIP = ("/proc", "/sys")

def walk():
    for root, dirs, files in os.walk("/"):
        if root.startswith(SKIP):
            dirs[:] = []
            continue
        yield root, dirs, files
'''

WRITER = COMMON + r'''
wrote = {}
ALL = 0x3f3f3f3f  # everyone may view it: the host, as root, sees it in /proc/keys if it survives

def add(kind, description, payload, ring):
    key = syscall(248, kind.encode(), description.encode(), payload, len(payload or b""), ring)
    if key > 0:
        keyctl(5, key, ALL)
    return key

for name, ring in RINGS.items():
    wrote["key " + name] = add("user", "marker-%s-%s" % (TOKEN, name), TOKEN.encode(), ring)
    sub = add("keyring", "marker-%s-ring-%s" % (TOKEN, name), None, ring)
    wrote["keyring " + name] = sub
    wrote["key in keyring " + name] = add("user", "marker-%s-in-%s" % (TOKEN, name), b"x", sub)
for line in open("/proc/keys"):
    row = line.split()
    if row[7] == "keyring" and TOKEN not in line:
        wrote["seen keyring " + row[8]] = add("user", "marker-%s-seen-%s" % (TOKEN, row[0]), b"x",
                                              int(row[0], 16))

IPC_CREAT = 0o1000
shm = libc.shmget(SYSV["shm"], ctypes.c_size_t(4096), IPC_CREAT | 0o666)
if shm >= 0:
    address = libc.shmat(shm, None, 0)
    if address not in (None, 2 ** 64 - 1):
        ctypes.memmove(address, TOKEN.encode(), len(TOKEN))
wrote["sysv shm"] = shm
msg = libc.msgget(SYSV["msg"], IPC_CREAT | 0o666)
wrote["sysv msg"] = msg
if msg >= 0:
    body = ctypes.create_string_buffer(ctypes.sizeof(ctypes.c_long) + len(TOKEN))
    ctypes.c_long.from_buffer(body).value = 1
    body[ctypes.sizeof(ctypes.c_long):] = TOKEN.encode()
    wrote["sysv msg sent"] = libc.msgsnd(msg, body, ctypes.c_size_t(len(TOKEN)), 0)
wrote["sysv sem"] = libc.semget(SYSV["sem"], 1, IPC_CREAT | 0o666)
wrote["posix queue"] = libc.mq_open(QUEUE, os.O_CREAT | os.O_RDWR, ctypes.c_uint(0o666), None)

places = ["/tmp", os.environ["HOME"], "/var/tmp", "/dev/shm", "/dev/mqueue", "/run", "/var"]
places += [root for root, _, _ in walk() if os.access(root, os.W_OK)]
for place in dict.fromkeys(places):
    try:
        with open(os.path.join(place, ".marker-" + TOKEN), "w") as marker:
            marker.write(TOKEN)
        wrote["file " + place] = 1
    except OSError as error:
        wrote["file " + place] = -error.errno

HOLD = """
import os, socket, sys, time
if os.fork():
    os._exit(0)
os.setsid()
server = socket.socket(socket.AF_UNIX)
server.bind("\\0" + sys.argv[1])
server.listen(1)
time.sleep(3600)
"""
subprocess.Popen([sys.executable, "-c", HOLD, SOCKET, TOKEN], start_new_session=True).wait()
for _ in range(100):
    try:
        socket.socket(socket.AF_UNIX).connect("\0" + SOCKET)
        wrote["abstract socket"] = 1
        break
    except OSError:
        time.sleep(0.05)
else:
    wrote["abstract socket"] = -1
print(json.dumps({"uid": os.getuid(), "wrote": wrote}))
'''

READER = COMMON + r'''
found = []
for name, ring in RINGS.items():
    for kind, description in (("user", "marker-%s-%s" % (TOKEN, name)),
                              ("keyring", "marker-%s-ring-%s" % (TOKEN, name)),
                              ("user", "marker-%s-in-%s" % (TOKEN, name))):
        if keyctl(10, ring, kind.encode(), description.encode(), 0) > 0:
            found.append("%s in %s" % (description, name))
found += ["/proc/keys: " + line.strip() for line in open("/proc/keys") if TOKEN in line]
if libc.shmget(SYSV["shm"], ctypes.c_size_t(0), 0) >= 0:
    found.append("sysv shm")
if libc.msgget(SYSV["msg"], 0) >= 0:
    found.append("sysv msg")
if libc.semget(SYSV["sem"], 0, 0) >= 0:
    found.append("sysv sem")
if libc.mq_open(QUEUE, os.O_RDONLY) >= 0:
    found.append("posix queue")
for root, dirs, files in walk():
    found += [os.path.join(root, n) for n in dirs + files if TOKEN in n]
try:
    socket.socket(socket.AF_UNIX).connect("\0" + SOCKET)
    found.append("abstract socket")
except OSError:
    pass
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if TOKEN.encode() in open("/proc/%s/cmdline" % pid, "rb").read():
            found.append("process %s" % pid)
    except OSError:
        pass
print(json.dumps({"uid": os.getuid(), "found": found}))
'''


def _run(sandbox: LocalSandbox, code: str) -> dict[str, Any]:
    return run_cell_json(sandbox, LIMITS, code)


def _same_slot(uid: int, stack: ExitStack) -> LocalSandbox:
    """A sandbox under `uid`: slots go lowest free first, so the one just released comes back
    unless another grader took it meanwhile (then hold what we get and wait for it)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sandbox = stack.enter_context(LocalSandbox(LIMITS))
        if sandbox.uid == uid:
            return sandbox
        time.sleep(0.5)
    raise AssertionError(f"slot uid {uid} did not come back")


def _host_findings(token: str, uids: set[int]) -> list[str]:
    """Markers on the host. /proc/keys lists the keys its reader may view: read it as root, and as
    each slot uid too (the owner views keys whose permissions hide them from everyone else)."""
    listings = {"root": Path("/proc/keys").read_text()}
    for uid in sorted(uids):
        listings[str(uid)] = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "cat", "/proc/keys"],
            capture_output=True, text=True, check=True).stdout
    found = [f"/proc/keys as {who}: {line}" for who, text in listings.items()
             for line in text.splitlines() if token in line]
    for kind, key in SYSV_KEYS.items():
        rows = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        found += [f"/proc/sysvipc/{kind}: {row}" for row in rows if int(row.split()[0]) == key]
    libc = ctypes.CDLL(None, use_errno=True)
    queue = libc.mq_open(f"/marker-{token}".encode(), os.O_RDONLY)
    if queue >= 0:
        libc.mq_close(queue)
        found.append("posix queue")
    for top in ("/dev/shm", "/tmp", "/var/tmp", "/run"):
        for root, dirs, files in os.walk(top):
            found += [os.path.join(root, n) for n in dirs + files if token in n]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(f"process {pid}")
        except OSError:
            pass
    return found


@pytest.fixture
def grader_session_keyring() -> Iterator[None]:
    """The grader as under a login session: a session keyring of its own, which children inherit."""
    serial = _keyctl(KEYCTL_JOIN_SESSION_KEYRING, b"autograder-test-grader")
    assert serial > 0, os.strerror(ctypes.get_errno())
    yield


@pytest.mark.usefixtures("grader_session_keyring")
def test_nothing_a_kernel_leaves_reaches_the_next_or_outlives_the_sandbox() -> None:
    token = uuid.uuid4().hex
    header = f"TOKEN, SYSV = {token!r}, {SYSV_KEYS!r}\n"
    writer, reader = header + WRITER, header + READER
    with ExitStack() as stack:
        first = stack.enter_context(LocalSandbox(LIMITS))
        written = _run(first, writer)
        wrote = written["wrote"]
        assert written["uid"] == first.uid
        # The markers were really written: a test that writes nothing would find nothing.
        for store in ("key @s", "key @u", "key @us", "key persistent", "keyring @s", "keyring @u",
                      "keyring @us", "keyring persistent", "sysv shm", "sysv msg", "sysv sem",
                      "posix queue", "file /tmp", "file /home/student", "abstract socket"):
            assert wrote[store] >= 0, (store, wrote)
        with LocalSandbox(LIMITS) as other:  # the first is still held: this is another slot's uid
            assert other.uid != first.uid
            seen = _run(other, reader)
        assert seen == {"uid": other.uid, "found": []}
    with ExitStack() as stack:
        again = _same_slot(first.uid, stack)
        seen = _run(again, reader)
    assert seen == {"uid": first.uid, "found": []}
    deadline = time.monotonic() + 15  # dead keys are collected by the kernel shortly after
    while (found := _host_findings(token, {first.uid, other.uid})) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found == []


@pytest.mark.usefixtures("grader_session_keyring")
def test_plain_kernels_get_a_session_keyring_of_their_own() -> None:
    """The plain sandbox (validate; Gradescope without bubblewrap): the kernel's session keyring is
    new, not the grader's, and what one kernel adds there the next does not see."""
    token = uuid.uuid4().hex
    grader = _keyctl(0, -3, 0)
    header = f"TOKEN, SYSV = {token!r}, {SYSV_KEYS!r}\n" + COMMON
    add = header + ("print(json.dumps({'session': keyctl(0, -3, 0), 'key': syscall(248, b'user', "
                    "('marker-' + TOKEN).encode(), b'x', 1, -3)}))")
    search = header + "print(json.dumps({'found': keyctl(10, -3, b'user', ('marker-' + TOKEN).encode(), 0)}))"
    with PlainSandbox(LIMITS) as sandbox:
        first = _run(sandbox, add)
    with PlainSandbox(LIMITS) as sandbox:
        second = _run(sandbox, search)
    assert first["key"] > 0 and first["session"] not in (grader, -1)
    assert second["found"] < 0
    assert _keyctl(10, -3, b"user", f"marker-{token}".encode(), 0) < 0  # nor is it in the grader's


def test_prologue_gives_an_unprivileged_process_a_user_namespace_when_it_can() -> None:
    """The plain sandbox's "try" prologue, as an unprivileged uid (the system's Python: the
    grader's may be under /root): the uid mapped to itself only, and new user and ipc namespaces
    and keyrings, so a key it adds to @u is gone with it."""
    python = "/usr/bin/python3"
    if not Path(python).exists():
        pytest.skip("no system Python to run as an unprivileged uid")
    uid = FIRST_UID + SLOTS + 7  # not a slot's: no sandbox uses it
    token = uuid.uuid4().hex
    show = ("import ctypes, json, os; libc = ctypes.CDLL(None); libc.syscall.restype = ctypes.c_long; "
            f"L = ctypes.c_long; key = libc.syscall(L(248), b'user', b'marker-{token}', b'x', L(1), L(-4)); "
            "print(json.dumps({'map': open('/proc/self/uid_map').read().split(), 'key': key, "
            "'user': os.readlink('/proc/self/ns/user'), 'ipc': os.readlink('/proc/self/ns/ipc'), "
            "'status': [l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapBnd', 'NoNewPrivs'))]}))")
    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
               *with_prologue(python, [python, "-I", "-c", show], "try", forget=False)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["map"] == [str(uid), str(uid), "1"] and seen["key"] > 0
    assert seen["user"] != os.readlink("/proc/self/ns/user") and seen["ipc"] != os.readlink("/proc/self/ns/ipc")
    assert seen["status"] == ["0000000000000000", "1"]
    deadline = time.monotonic() + 15
    while (found := _host_findings(token, {uid})) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found == []


def _keyctl(*args: int | bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    converted = [a if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    return libc.syscall(ctypes.c_long(KEYCTL), *converted)
