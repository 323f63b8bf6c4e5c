"""The grader side of the bridge: proxies that stand for the student's functions and variables.

A hidden test runs in the grader's process and receives, for each name it asks for, either the
value (copied out of the kernel as plain data) or a proxy function. Calling the proxy sends the
arguments into the kernel, runs the student's function there, and brings back plain data. The test
then compares in the grader's process, with the grader's numpy, which student code cannot patch.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from autograder.execution import codec
from autograder.execution.agent import MIME, agent_source
from autograder.execution.outbound import encode_request
from autograder.execution.session import NotebookSession


class StudentCodeError(Exception):
    """The student's function raised, hung, died, or returned something the grader cannot read."""

    def __init__(self, message: str, type_name: str = "Error", traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.student_traceback = traceback


# What a test may catch when the student's code raised it (`except ValueError`). A fixed table: the
# type named in a reply is looked up here, never in builtins, so a reply cannot pick a class to build.
_CATCHABLE = (ArithmeticError, AssertionError, AttributeError, FloatingPointError, IndexError, KeyError,
              LookupError, MemoryError, NameError, NotImplementedError, OverflowError, RecursionError,
              RuntimeError, TypeError, ValueError, ZeroDivisionError)
_ERROR_TYPES: dict[str, type[StudentCodeError]] = {
    base.__name__: type(base.__name__, (StudentCodeError, base), {"__init__": StudentCodeError.__init__})
    for base in _CATCHABLE
}


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _raise_student_error(reply: dict[str, Any], name: str) -> None:
    type_name = _text(reply.get("type"), 100) or "Error"
    error_type = _ERROR_TYPES.get(type_name, StudentCodeError)
    message = f"{name} raised {type_name}: {_text(reply.get('message'), 2000)}"
    raise error_type(message, type_name, _text(reply.get("traceback"), 6000))


class Bridge:
    """Requests into a notebook session's kernel; a kernel that a call killed is revived (the good
    cells replayed) before the next request, so one fatal function costs only its own checks.

    Each request carries a fresh id, and exactly one reply with that id, from that execution, is an
    answer; anything else (none, two, another id, not plain data) is the student's failed call."""

    def __init__(self, session: NotebookSession) -> None:
        self.session = session
        self.call_timeout = session.limits.cell_timeout
        # All checks of a notebook share one deadline (as revivals do): a notebook whose every
        # function answers just before its call timeout cannot hold a worker for hours.
        self.deadline = session.started + 2 * session.limits.timeout
        self.calls = 0
        self._agent_in: object = None  # the kernel the agent was sent into

    def _ensure_agent(self) -> None:
        if self._agent_in is self.session.kernel.km and self.session.kernel.alive():
            return
        if not self.session.revive():
            raise StudentCodeError("the notebook's kernel died and could not be restarted", "KernelDied")
        run = self.session.kernel.execute(agent_source(), timeout=60)
        if run.status != "ok":
            raise StudentCodeError(f"the grader could not talk to the notebook's kernel ({run.error})",
                                   "NoAnswer")
        self._agent_in = self.session.kernel.km

    def _request(self, request: dict[str, Any], name: str) -> dict[str, Any]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise StudentCodeError(f"{name} was not called: the notebook's checks used all of the grader's "
                                   f"{2 * self.session.limits.timeout:g} s", "TimeoutError")
        self._ensure_agent()
        self.calls += 1
        request_id = secrets.token_hex(16)
        text = json.dumps(request | {"id": request_id}, allow_nan=True)
        timeout = min(self.call_timeout, remaining)
        run = self.session.kernel.execute(f"__autograder_handle({json.dumps(text)})", timeout=timeout,
                                          reply_mime=MIME)
        if run.status == "timeout":
            raise StudentCodeError(f"{name} did not return within {timeout:g} s", "TimeoutError")
        if run.kernel_lost:
            raise StudentCodeError(f"the kernel died while running {name} ({run.error})", "KernelDied")
        if run.replies_over_limit:
            raise StudentCodeError(f"the answer for {name} is larger than the grader accepts "
                                   f"({codec.MAX_TEXT_BYTES // 1024 // 1024} MB)", "BadAnswer")
        replies = [out["data"][MIME] for out in run.outputs
                   if out.get("output_type") == "display_data" and MIME in out.get("data", {})]
        if not replies:
            detail = f": {run.error}" if run.error else ""
            raise StudentCodeError(f"no answer from the notebook for {name}{detail}", "NoAnswer")
        if len(replies) > 1:
            raise StudentCodeError(f"{len(replies)} answers came for {name} where the grader accepts one "
                                   "(the notebook publishes messages of the grader's own type)", "BadAnswer")
        try:
            reply = codec.parse(replies[0])
        except ValueError as error:
            raise StudentCodeError(f"unreadable answer for {name}: {error}", "BadAnswer") from None
        if not isinstance(reply, dict) or reply.get("id") != request_id:
            raise StudentCodeError(f"the answer for {name} does not belong to the grader's request", "BadAnswer")
        return reply

    def _value(self, reply: dict[str, Any], name: str) -> Any:
        status = reply.get("status")
        if status == "missing":
            raise StudentCodeError(f"the notebook does not define `{name}`", "NameError")
        if status == "not_plain":
            raise StudentCodeError(f"{name} gave {_text(reply.get('message'), 500)}", "TypeError")
        if status == "error":
            _raise_student_error(reply, name)
        if status != "ok":
            raise StudentCodeError(f"unreadable answer for {name}", "BadAnswer")
        try:
            return codec.decode(reply.get("value"), tensors=_to_tensor)
        except ValueError as error:
            raise StudentCodeError(f"unreadable answer for {name}: {error}", "BadAnswer") from None

    def resolve(self, name: str) -> Any:
        """What a test gets for the notebook name `name`: a proxy function or a copied value."""
        reply = self._request({"op": "describe", "name": name}, name)
        if reply.get("status") == "ok" and reply.get("callable") is True:
            return StudentFunction(self, name)
        return self._value(self._request({"op": "get", "name": name}, name), name)

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            payload = {"op": "call", "name": name, "args": encode_request(list(args)),
                       "kwargs": encode_request(dict(kwargs))}
        except codec.NotPlainData as error:
            raise TypeError(f"a test passed {error} to {name}: tests pass plain data") from error
        return self._value(self._request(payload, f"{name}()"), f"{name}()")


class StudentFunction:
    """Stands for a function defined in the student's notebook."""

    def __init__(self, bridge: Bridge, name: str) -> None:
        self._bridge = bridge
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._bridge.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<student function {self.__name__}>"


def _to_tensor(array: Any) -> Any:
    import torch

    return torch.from_numpy(array.copy())
