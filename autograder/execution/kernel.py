"""A real IPython kernel inside a sandbox, driven cell by cell with timeouts and output limits.

The kernel talks over Unix sockets (ZMQ ipc transport), which cross the sandbox's network namespace
through one bound folder; interrupts go as messages (a signal would reach the sandbox wrapper, not
the kernel). Whatever the student code does, `execute` returns: a hang is interrupted and then
killed, a dead kernel is reported, an output flood is cut and then killed.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import nbformat
import zmq
import zmq.utils.monitor
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

from autograder.execution.codec import MAX_ITEMS, MAX_TEXT_BYTES
from autograder.sandbox.limits import Limits

INTERRUPT_GRACE = 5.0  # seconds a kernel gets to come back after an interrupt
CPU_CHECK_SECONDS = 0.5  # how often a cell with a CPU limit reads the sandbox's CPU time
MAX_GARBLED = 100  # unreadable messages tolerated from one cell before the kernel is stopped
FLOOD_FACTOR = 64  # a cell printing this many times its output allowance gets its kernel killed
# Bridge answers have an allowance of their own (a model's weights exceed a cell's output limit):
# one answer at most MAX_TEXT_BYTES; a call that sends more than that in all fails.
REPLY_LIMIT = MAX_TEXT_BYTES + 64 * 1024
# What the kernel's messages can cost the grader's memory, bounded before jupyter_client parses
# them: zmq drops (with the connection) a message over the size limit of its channel, and holds at
# most QUEUED_MESSAGES unread ones per channel. Only iopub carries answers; the others carry
# execute/kernel_info replies of a few kB. Worst case held: 4 x 65 MB + 3 x 4 x 1 MB per frame; zmq
# bounds frames, not multipart messages, so the grading worker's own memory cgroup is the backstop
# (grading/batch.py): a kernel that floods it costs only its worker, and its own submission.
MAX_MESSAGE_BYTES = MAX_TEXT_BYTES + 1024 * 1024
MAX_CONTROL_MESSAGE_BYTES = 1024 * 1024
QUEUED_MESSAGES = 4


class KernelDied(RuntimeError):
    pass


@dataclass
class CellRun:
    status: str  # ok | error | timeout | budget | dead | flood
    seconds: float
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # "Ename: message" of the student's exception
    traceback: str | None = None
    truncated: bool = False
    replies_over_limit: bool = False  # the bridge's answers came to more than REPLY_LIMIT

    @property
    def kernel_lost(self) -> bool:
        return self.status in ("dead", "flood") or (self.status in ("timeout", "budget") and self.error == "killed")


class _BoundedSockets:
    """Sockets that bound what an unread or oversized message can cost (see MAX_MESSAGE_BYTES)."""

    context: zmq.Context

    def _create_connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket:
        limit = MAX_MESSAGE_BYTES if channel == "iopub" else MAX_CONTROL_MESSAGE_BYTES
        self.context.setsockopt(zmq.MAXMSGSIZE, limit)
        self.context.setsockopt(zmq.RCVHWM, QUEUED_MESSAGES)
        return super()._create_connected_socket(channel, identity)  # type: ignore[misc]


def _bounded_unpack(frame: bytes | str) -> Any:
    """jupyter_client's JSON unpacking of a message frame, except of one that would build more
    values than any honest message holds: a 60 MB frame of `[[],[],...]` is 20 M objects, GBs."""
    text = frame.decode("utf8", "replace") if isinstance(frame, bytes) else frame
    if text.count("[") + text.count("{") + text.count(",") > 2 * MAX_ITEMS:
        raise ValueError("a message with too many values")
    return json.loads(text)


class _SandboxedKernelManager(_BoundedSockets, KernelManager):
    """A KernelManager whose command is the sandboxed one and whose interrupts are messages."""

    def __init__(self, sandbox_wrap, **kwargs: Any) -> None:  # noqa: ANN001
        super().__init__(**kwargs)
        self._sandbox_wrap = sandbox_wrap

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                          display_name="Python 3 (sandboxed)", language="python",
                          interrupt_mode="message")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file,
                "--HistoryManager.enabled=False", "--IPKernelApp.log_level=ERROR"]
        return self._sandbox_wrap(argv)


class _BoundedClient(_BoundedSockets, BlockingKernelClient):
    pass


class SandboxedKernel:
    def __init__(self, sandbox: Any, limits: Limits) -> None:
        self.sandbox = sandbox
        self.limits = limits
        self.km: _SandboxedKernelManager | None = None
        self.kc = None
        self.starts = 0
        self._context: zmq.Context | None = None
        self._monitor: zmq.Socket | None = None

    def start(self, timeout: float = 120.0) -> None:
        try:
            self._start(timeout)
        except KernelDied:
            # No student code runs before a kernel is ready: a template's kernel that did not
            # start is the template's fault, and a fresh kernel takes its place.
            if not self.sandbox.template_failed():
                raise
            self._start(timeout)

    def _start(self, timeout: float) -> None:
        try:
            self._launch(timeout)
        except OSError as error:  # the sandbox's folders, a kernel left in a state it cannot start in
            self.shutdown()
            raise KernelDied(f"the kernel did not start: {error}") from error

    def _launch(self, timeout: float) -> None:
        ipc = self.sandbox.ipc_dir
        self.starts += 1
        name = f"kernel{self.starts}-{secrets.token_hex(4)}"  # not a name an earlier kernel could foresee
        self._context = zmq.Context()
        km = _SandboxedKernelManager(self.sandbox.wrap, transport="ipc", ip=str(ipc / name),
                                     connection_file=str(ipc / f"{name}.json"), context=self._context)
        km.session.unpack = _bounded_unpack
        km.write_connection_file()
        if self.sandbox.uid != os.getuid():
            os.chown(km.connection_file, self.sandbox.uid, self.sandbox.uid)
        km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.km = km
        try:
            self.sandbox.started(timeout, km.is_alive)
        except Exception as error:  # noqa: BLE001 - a kernel that could not be put in did not start
            self.shutdown()
            raise KernelDied(f"the kernel did not start: {error}") from error
        self.kc = _BoundedClient(parent=km, context=self._context)
        self.kc.load_connection_info(km.get_connection_info())
        self.kc.session.unpack = _bounded_unpack
        # No stdin (the grader never answers input requests) and no heartbeat: sockets the grader
        # would not read are sockets a kernel could fill.
        self.kc.start_channels(stdin=False, hb=False)
        self._monitor = self.kc.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            self.kc.wait_for_ready(timeout=timeout)
        except RuntimeError as error:
            self.shutdown()
            raise KernelDied(f"the kernel did not start: {error}") from error

    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive() and self.sandbox.kernel_kept()

    def execute(self, code: str, timeout: float, reply_mime: str | None = None,
                cpu_limit: float | None = None, store_history: bool = True) -> CellRun:
        """Run `code`. Display messages of `reply_mime` (the bridge's answers, e.g. a model's weights)
        have an allowance of their own, REPLY_LIMIT, instead of the output limit of a cell.
        `cpu_limit`: stop the cell (status "budget") once the kernel's CPU time, as the sandbox
        counts it (threads and children included), passes this many seconds."""
        if not self.alive():
            return CellRun("dead", 0.0, error="the kernel is not running")
        started = time.monotonic()
        msg_id = self.kc.execute(code, store_history=store_history, allow_stdin=False, stop_on_error=False)
        run = CellRun("ok", 0.0)
        allowance = self.limits.output_kb * 1024
        received = kept = garbled = replies = 0
        deadline = started + timeout
        cpu_checked = started
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                self._stop_runaway(run, msg_id)
                break
            if cpu_limit is not None and now - cpu_checked >= CPU_CHECK_SECONDS:
                cpu_checked = now
                used = self.sandbox.cpu_seconds()
                if used is not None and used > cpu_limit:
                    self._stop_runaway(run, msg_id)
                    run.status = "budget" if run.status == "timeout" else run.status
                    break
            try:
                msg = self.kc.get_iopub_msg(timeout=min(0.5, remaining))
            except queue.Empty:
                if not self.alive():
                    run.status, run.error = "dead", "the kernel died (killed, crashed or exited)"
                    break
                if self._dropped_oversized():
                    time.sleep(0.2)  # a kernel that exited also drops its connection: look again
                    if not self.alive():
                        run.status, run.error = "dead", "the kernel died (killed, crashed or exited)"
                        break
                    self.kill()
                    run.status = "flood"
                    run.error = f"the kernel sent a message of more than {MAX_MESSAGE_BYTES // 2**20} MB: stopped"
                    break
                continue
            except Exception:  # noqa: BLE001 - a garbled or forged message (bad signature) is dropped
                garbled += 1
                if garbled > MAX_GARBLED:
                    self.kill()
                    run.status, run.error = "dead", "the kernel sent garbled messages and was stopped"
                    break
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                break
            if kind not in ("stream", "display_data", "execute_result", "error"):
                continue
            size = _size(content)
            if reply_mime and kind == "display_data" and reply_mime in content.get("data", {}):
                replies += size
                if replies <= REPLY_LIMIT:
                    run.outputs.append(nbformat.v4.output_from_msg(msg))
                else:
                    run.replies_over_limit = True
                continue
            received += size
            if kind == "error":
                run.status = "error"
                run.error = f"{content.get('ename')}: {content.get('evalue')}"[:2000]
                run.traceback = "\n".join(content.get("traceback", []))[-8000:]
            if kept + size <= allowance:
                run.outputs.append(nbformat.v4.output_from_msg(msg))
                kept += size
            else:
                run.truncated = True
            if received > FLOOD_FACTOR * allowance:
                self.kill()
                run.status = "flood"
                run.error = f"the cell printed more than {received // 1024 // 1024} MB: stopped"
                break
        run.seconds = time.monotonic() - started
        return run

    def _dropped_oversized(self) -> bool:
        """zmq drops a message over MAX_MESSAGE_BYTES together with its connection: a disconnect
        of the output channel is the only trace it leaves."""
        dropped = False
        while self._monitor is not None and self._monitor.poll(0):
            dropped |= zmq.utils.monitor.recv_monitor_message(self._monitor)["event"] == zmq.EVENT_DISCONNECTED
        return dropped

    def _stop_runaway(self, run: CellRun, msg_id: str) -> None:
        """Interrupt a cell past its time; kill the kernel if it does not come back."""
        run.status = "timeout"
        try:
            self.km.interrupt_kernel()
        except Exception:  # noqa: BLE001 - a broken kernel is handled as a dead one below
            pass
        deadline = time.monotonic() + INTERRUPT_GRACE
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except Exception:  # noqa: BLE001 - nothing yet, or a garbled message: keep waiting
                continue
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"].get("execution_state") == "idle"):
                run.error = "interrupted"
                return
        self.kill()
        run.error = "killed"

    def kill(self) -> None:
        self.sandbox.kill_all()

    def shutdown(self) -> None:
        self.sandbox.kill_all()
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - already dead is fine
                pass
            self.km.cleanup_resources()
        if self._monitor is not None:
            self._monitor.close(linger=0)
        if self._context is not None:
            self._context.destroy(linger=0)
        self.km = self.kc = self._context = self._monitor = None


def _size(content: dict[str, Any]) -> int:
    """Characters a message carries, counted without copying it (outputs can be megabytes)."""
    data = content.get("data")
    texts = [content.get("text"), *(data.values() if isinstance(data, dict) else [data])]
    found = sum(len(t) if isinstance(t, str) else len(str(t)) for t in texts if t is not None)
    return found + len(str({k: v for k, v in content.items() if k not in ("text", "data")}))
