"""The grader side of the bridge against a fake kernel that answers whatever a hostile one could.

Milliseconds each: the kernel is a stand-in whose `execute` returns the messages a test gives it, so
every way a reply can be wrong (none, two, another id, too big, not text, not plain data) is tried
on exactly the code that reads replies in a real grading run.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from autograder.execution import codec
from autograder.execution.agent import MIME
from autograder.execution.bridge import Bridge, StudentCodeError, StudentFunction
from autograder.execution.kernel import CellRun
from autograder.sandbox.limits import Limits

Answer = Callable[[dict[str, Any]], list[Any]]  # the request -> the MIME payloads the kernel sends


class FakeKernel:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.km = object()
        self.requests: list[dict[str, Any]] = []

    def alive(self) -> bool:
        return True

    def execute(self, code: str, timeout: float, reply_mime: str | None = None) -> CellRun:
        match = re.fullmatch(r"__autograder_handle\((.*)\)", code, re.S)
        if match is None:  # the agent's own source
            return CellRun("ok", 0.0)
        request = json.loads(json.loads(match.group(1)))
        self.requests.append(request)
        run = CellRun("ok", 0.0)
        for payload in self.answer(request):
            if isinstance(payload, CellRun):
                return payload
            run.outputs.append({"output_type": "display_data", "data": {MIME: payload}, "metadata": {}})
        return run


class FakeSession:
    def __init__(self, answer: Answer, started: float | None = None) -> None:
        self.kernel = FakeKernel(answer)
        self.limits = Limits(timeout=10, cell_timeout=5)
        self.started = time.monotonic() if started is None else started

    def revive(self) -> bool:
        return True


def _bridge(answer: Answer) -> Bridge:
    return Bridge(FakeSession(answer))  # type: ignore[arg-type]


def _honest(value: Any) -> Answer:
    def answer(request: dict[str, Any]) -> list[Any]:
        body = {"status": "ok", "callable": False, "value": codec.encode(value)}
        return [json.dumps(body | {"id": request["id"]})]
    return answer


def test_an_honest_answer_is_accepted() -> None:
    assert _bridge(_honest([1.5, "x"])).resolve("v") == [1.5, "x"]


def test_every_request_has_a_fresh_unpredictable_id() -> None:
    bridge = _bridge(_honest(1))
    for _ in range(20):
        bridge.resolve("v")
    ids = [r["id"] for r in bridge.session.kernel.requests]  # type: ignore[attr-defined]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)


def _with_id(body: dict[str, Any]) -> Answer:
    return lambda request: [json.dumps(body | {"id": request["id"]})]


FORGED_FUNCTION = {"__function__": {"name": "f", "source": "import os\nos.system('touch /tmp/x')\ndef f():\n pass",
                                    "captured": {}, "modules": {"os": "os"}}}
BAD_ANSWERS: dict[str, tuple[Answer, str]] = {
    "no_reply": (lambda request: [], "no answer"),
    "two_replies": (lambda request: [json.dumps({"id": request["id"], "status": "ok", "value": 1})] * 2,
                    "2 answers came"),
    "honest_then_forged": (lambda request: [json.dumps({"id": request["id"], "status": "ok", "value": 1}),
                                            json.dumps({"id": request["id"], "status": "ok",
                                                        "value": FORGED_FUNCTION})], "2 answers came"),
    "another_id": (lambda request: [json.dumps({"id": "f" * 32, "status": "ok", "value": 1})], "does not belong"),
    "no_id": (lambda request: [json.dumps({"status": "ok", "value": 1})], "does not belong"),
    "not_text": (lambda request: [{"id": request["id"], "status": "ok", "value": 1}], "not text"),
    "not_json": (lambda request: ["{not json"], "not JSON"),
    "json_list": (lambda request: ["[1, 2]"], "does not belong"),
    "deep_json": (lambda request: ["[" * 100_000 + "]" * 100_000], "nested too deeply"),
    "function_value": (_with_id({"status": "ok", "value": FORGED_FUNCTION}), "not plain data"),
    "unknown_status": (_with_id({"status": "passed", "value": 1}), "unreadable answer"),
    "over_the_limit": (lambda request: [CellRun("ok", 0.0, replies_over_limit=True)], "larger than"),
    "timeout": (lambda request: [CellRun("timeout", 5.0, error="interrupted")], "did not return"),
    "kernel_died": (lambda request: [CellRun("dead", 0.0, error="the kernel died")], "kernel died"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_anything_but_exactly_one_reply_with_the_id_is_the_students_failed_call(case: str) -> None:
    answer, message = BAD_ANSWERS[case]
    with pytest.raises(StudentCodeError, match=message):
        _bridge(answer).resolve("v")


def test_describe_must_say_callable_with_a_bool() -> None:
    answers = iter([{"status": "ok", "callable": "yes"}, {"status": "ok", "value": 3}])
    bridge = _bridge(lambda request: [json.dumps(next(answers) | {"id": request["id"]})])
    assert bridge.resolve("v") == 3
    bridge = _bridge(_with_id({"status": "ok", "callable": True}))
    assert isinstance(bridge.resolve("f"), StudentFunction)


@pytest.mark.parametrize("type_name", ["ExceptionGroup", "SystemExit", "BaseException", "__import__",
                                       "KeyboardInterrupt", "GeneratorExit", "x" * 10_000])
def test_an_error_reply_names_no_class_for_the_grader_to_build(type_name: str) -> None:
    bridge = _bridge(_with_id({"status": "error", "type": type_name, "message": "m"}))
    with pytest.raises(StudentCodeError) as caught:
        bridge.call("f", (), {})
    assert type(caught.value) is StudentCodeError
    assert len(str(caught.value)) < 3000


def test_an_error_reply_of_a_common_type_can_be_caught_as_that_type() -> None:
    bridge = _bridge(_with_id({"status": "error", "type": "ValueError", "message": "bad shape"}))
    with pytest.raises(ValueError, match="bad shape"):
        bridge.call("f", (), {})


def test_texts_in_error_replies_are_bounded_and_must_be_strings() -> None:
    bridge = _bridge(_with_id({"status": "error", "type": "ValueError", "message": "m" * 10**6,
                               "traceback": {"not": "text"}}))
    with pytest.raises(StudentCodeError) as caught:
        bridge.call("f", (), {})
    assert len(str(caught.value)) < 2100 and caught.value.student_traceback == ""


def test_a_test_function_travels_to_the_kernel_by_source() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: dict[str, Any]) -> list[Any]:
        seen.append(request)
        return [json.dumps({"id": request["id"], "status": "ok", "value": 0.0})]

    def loss(x: float) -> float:
        return x * x

    _bridge(answer).call("grad_check", (loss, 1.0), {})
    payload = seen[0]["args"]["__list__"][0]["__function__"]
    assert payload["name"] == "loss" and "return x * x" in payload["source"]


def test_all_checks_of_a_notebook_share_one_deadline() -> None:
    session = FakeSession(_honest(1), started=time.monotonic() - 21)  # past 2 x its 10 s timeout
    with pytest.raises(StudentCodeError, match="used all of the grader's 20 s"):
        Bridge(session).resolve("v")  # type: ignore[arg-type]
    assert session.kernel.requests == []
