"""The first thing every sandboxed kernel runs: a user namespace and a session keyring of its own.

Kernel keyrings are not covered by the mount, pid, ipc or network namespaces. The per-uid keyrings
(user @u, user-session @us, persistent) live in the user namespace, and the session keyring @s is
inherited from the grader (whoever possesses a keyring has the possessor's permissions on it,
whatever their uid), so without this, keys one submission adds are there for the next. The prologue
runs inside the sandbox, as the kernel's own unprivileged uid, right before the kernel:

1. (`forget`, for uids that belong to the sandbox) it invalidates every key that uid owns in the
   host's user namespace: the host's @u, @us and persistent keyrings of that uid, and any other key
   of it listed in /proc/keys. A process in a user namespace of its own still reaches host keys by
   serial number when their owner is its uid, so none may be left (an older grader, or anything
   else run as that uid, would otherwise leave a channel open).
2. it makes a user namespace of its own, mapping its uid and gid to themselves and nothing else
   (never to root: made by an unprivileged process it cannot be), and drops its capabilities'
   bounding set there: per-uid keyrings, and anything else kept per uid in a user namespace, are
   then new and die with the kernel;
3. it joins a new anonymous session keyring (KEYCTL_JOIN_SESSION_KEYRING with no name), so the
   grader's session keyring is no longer possessed;
4. it execs the kernel's command line.

The code is inline (`python -I -S -c`): the autograder package is not importable in the sandbox.
A failure stops the command (exit status 126) before any student code runs, except that where the
keyctl system call does not exist or is refused (seccomp), there is no keyring to isolate.
"""

from __future__ import annotations

from typing import Literal

UserNamespace = Literal["require", "try", "skip"]

# The isolation itself, as functions: the prologue runs it before exec'ing the kernel, a kernel
# template (`autograder.sandbox.template`) in the forked kernel.
ISOLATION = r"""
import ctypes, errno, os, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "loongarch64": 219, "ppc64le": 271,
          "ppc64": 271, "s390x": 280, "armv7l": 311, "armv6l": 311, "i686": 288, "i386": 288}
NUMBER = KEYCTL.get(os.uname().machine)
JOIN_SESSION, GET_ID, CLEAR, INVALIDATE, GET_PERSISTENT = 1, 0, 7, 21, 22
SESSION, USER, USER_SESSION = -3, -4, -5
CLONE_NEWUSER, CLONE_NEWIPC, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 0x10000000, 0x08000000, 24, 38


def fail(what, code=None):
    code = ctypes.get_errno() if code is None else code
    sys.stderr.write("sandbox prologue: %s: %s\n" % (what, os.strerror(code) if code else "failed"))
    sys.stderr.flush()
    os._exit(126)


def keyctl(*args):
    if NUMBER is None:
        ctypes.set_errno(errno.ENOSYS)
        return -1
    return libc.syscall(ctypes.c_long(NUMBER), *(ctypes.c_long(a) for a in args))


def keyrings_refused():
    return ctypes.get_errno() in (errno.ENOSYS, errno.EPERM)


def new_session_keyring():
    if keyctl(JOIN_SESSION, 0) < 0 and not keyrings_refused():
        fail("cannot join a new session keyring")


def forget_host_keys():
    new_session_keyring()  # the grader's session keyring is not ours to touch
    uid = str(os.geteuid())
    keys = [keyctl(GET_ID, USER, 1), keyctl(GET_ID, USER_SESSION, 1), keyctl(GET_PERSISTENT, -1, SESSION)]
    try:
        with open("/proc/keys") as listing:
            rows = [line.split() for line in listing]
    except OSError:
        rows = []
    keys += [int(row[0], 16) for row in rows if len(row) > 6 and row[5] == uid]
    for key in keys:
        if key > 0:
            keyctl(CLEAR, key)  # what a keyring holds is unreachable at once, not after garbage collection
            keyctl(INVALIDATE, key)


def prctl(*args):
    return libc.prctl(*(ctypes.c_ulong(a) for a in args))


def own_user_namespace(flags=0):
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        return False
    for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
                       ("gid_map", "%d %d 1" % (gid, gid))):
        with open("/proc/self/" + name, "w") as target:
            target.write(text)
    if flags:
        libc.unshare(flags)  # best effort
    cap = 0
    while prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    if prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail("cannot set no_new_privs")
    return True


def isolate(mode, forget):
    if forget:
        forget_host_keys()
    if mode == "require":
        try:
            if not own_user_namespace():
                fail("cannot make a user namespace")
        except OSError as error:
            fail("cannot map the uid in a user namespace", error.errno)
    elif mode == "try":
        probe = os.fork()
        if probe == 0:
            try:
                os._exit(0 if own_user_namespace() else 1)
            except BaseException:
                os._exit(1)
        if os.waitpid(probe, 0)[1] == 0:
            try:
                own_user_namespace(CLONE_NEWIPC)
            except OSError as error:
                fail("cannot map the uid in a user namespace", error.errno)
    new_session_keyring()
"""

PROLOGUE = r"""
import os, sys

mode, forget, argv = sys.argv[1], sys.argv[2] == "forget", sys.argv[4:]
if not sys.platform.startswith("linux") and mode != "require":  # no keyrings, no user namespaces
    os.execv(argv[0], argv)
""" + ISOLATION + r"""
isolate(mode, forget)
try:
    os.execv(argv[0], argv)
except OSError as error:
    fail("cannot execute " + argv[0], error.errno)
"""


def with_prologue(python: str, argv: list[str], user_namespace: UserNamespace, forget: bool) -> list[str]:
    """`argv` run through the prologue by the interpreter `python`. `user_namespace`: "require"
    (stop if none can be made), "try" (one if the system allows it, and then a private SysV IPC
    namespace in it too), or "skip"; `forget`: first invalidate the uid's keys in the host's user
    namespace (only for a uid of the sandbox's own: never the grader's or a person's)."""
    return [python, "-I", "-S", "-c", PROLOGUE, user_namespace, "forget" if forget else "keep", "--", *argv]
