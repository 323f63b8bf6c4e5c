"""The grader side of the bridge: proxies that stand for the student's functions and variables.

A hidden test runs in the grader's process and receives, for each name it asks for, either the
value (copied out of the kernel as plain data) or a proxy function. Calling the proxy sends the
arguments into the kernel, runs the student's function there, and brings back plain data. The test
then compares in the grader's process, with the grader's numpy, which student code cannot patch.
"""

from __future__ import annotations

import builtins
import json
from typing import Any

from autograder.execution import codec
from autograder.execution.agent import MIME, agent_source
from autograder.execution.session import NotebookSession


class StudentCodeError(Exception):
    """The student's function raised, hung, died, or returned something the grader cannot read."""

    def __init__(self, message: str, type_name: str = "Error", traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.student_traceback = traceback


def _raise_student_error(reply: dict[str, Any], name: str) -> None:
    """Raise a StudentCodeError that is also the builtin exception type the student raised, so a
    test may say `except ValueError`."""
    type_name = str(reply.get("type", "Error"))
    builtin = getattr(builtins, type_name, None)
    bases: tuple[type, ...] = (StudentCodeError,)
    if isinstance(builtin, type) and issubclass(builtin, Exception) and builtin is not Exception:
        bases = (StudentCodeError, builtin)
    error_type = type(type_name, bases, {"__init__": StudentCodeError.__init__})
    message = f"{name} raised {type_name}: {reply.get('message', '')}"
    raise error_type(message, type_name, str(reply.get("traceback", "")))


class Bridge:
    """Requests into a notebook session's kernel; a kernel that a call killed is revived (the good
    cells replayed) before the next request, so one fatal function costs only its own checks."""

    def __init__(self, session: NotebookSession) -> None:
        self.session = session
        self.call_timeout = session.limits.cell_timeout
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
        self._ensure_agent()
        self.calls += 1
        code = f"__autograder_handle({json.dumps(json.dumps(request, allow_nan=True))})"
        run = self.session.kernel.execute(code, timeout=self.call_timeout, reply_mime=MIME)
        if run.status == "timeout":
            raise StudentCodeError(f"{name} did not return within {self.call_timeout:g} s", "TimeoutError")
        if run.kernel_lost:
            raise StudentCodeError(f"the kernel died while running {name} ({run.error})", "KernelDied")
        replies = [out["data"][MIME] for out in run.outputs
                   if out.get("output_type") == "display_data" and MIME in out.get("data", {})]
        if not replies:
            detail = f": {run.error}" if run.error else ""
            raise StudentCodeError(f"no answer from the notebook for {name}{detail}", "NoAnswer")
        try:
            reply = json.loads(replies[-1])
        except (json.JSONDecodeError, TypeError) as error:
            raise StudentCodeError(f"unreadable answer for {name}", "BadAnswer") from error
        if not isinstance(reply, dict):
            raise StudentCodeError(f"unreadable answer for {name}", "BadAnswer")
        return reply

    def _value(self, reply: dict[str, Any], name: str) -> Any:
        status = reply.get("status")
        if status == "missing":
            raise StudentCodeError(f"the notebook does not define `{name}`", "NameError")
        if status == "not_plain":
            raise StudentCodeError(f"{name} gave {reply.get('message')}", "TypeError")
        if status == "error":
            _raise_student_error(reply, name)
        try:
            return codec.decode(reply.get("value"), tensors=_to_tensor)
        except (ValueError, TypeError, KeyError) as error:
            raise StudentCodeError(f"unreadable answer for {name}: {error}", "BadAnswer") from error

    def resolve(self, name: str) -> Any:
        """What a test gets for the notebook name `name`: a proxy function or a copied value."""
        reply = self._request({"op": "describe", "name": name}, name)
        if reply.get("status") == "ok" and reply.get("callable"):
            return StudentFunction(self, name)
        return self._value(self._request({"op": "get", "name": name}, name), name)

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            payload = {"op": "call", "name": name, "args": codec.encode(list(args)),
                       "kwargs": codec.encode(dict(kwargs))}
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
