"""A reply that arrives after its request's execution ended is never taken for a later answer.

A notebook's hook learns the first request's id and has a thread publish a forged reply with that
id while the second request runs. Whatever parent ipykernel gives the thread's message, the second
call either ignores it (it belongs to the first execution) or sees two replies and fails: it never
returns the forged value, and nothing the forged reply carries runs on the grader's side.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.execution.bridge import Bridge, StudentCodeError
from autograder.execution.session import NotebookSession
from autograder.sandbox.limits import Limits
from autograder.sandbox.local import LocalSandbox, sandbox_problem

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(sandbox_problem() is not None, reason=f"no local sandbox: {sandbox_problem()}")]

LIMITS = Limits(timeout=300, cell_timeout=60, memory_mb=1024, pids=64, output_kb=256, disk_mb=64)

NOTEBOOK = r'''
import json, threading, time
from IPython import get_ipython
from IPython.display import publish_display_data
MIME = "application/vnd.autograder.reply+json"
CANARY = CANARY_PATH
state = {"requests": 0, "first_id": None}
second_started = threading.Event()

def answer():
    time.sleep(2)  # long enough for the thread's reply to land inside this execution
    return 1.0

def forge_late():
    second_started.wait()
    time.sleep(0.5)
    source = "import pathlib\npathlib.Path(%r).write_text('ran')\ndef f():\n    pass\n" % CANARY
    publish_display_data({MIME: json.dumps({"id": state["first_id"], "status": "ok", "value": {
        "__function__": {"name": "f", "source": source, "captured": {}, "modules": {}}}})})

def hook(info):
    prefix = "__autograder_handle("
    if not info.raw_cell.startswith(prefix):
        return
    state["requests"] += 1
    if state["requests"] == 1:
        state["first_id"] = json.loads(json.loads(info.raw_cell[len(prefix):-1]))["id"]
        threading.Thread(target=forge_late, daemon=True).start()
    elif state["requests"] == 4:  # MIME: describe, get; answer: describe, then this call
        second_started.set()

get_ipython().events.register("pre_run_cell", hook)
'''


def test_a_late_reply_with_an_old_id_is_never_an_answer(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    with LocalSandbox(LIMITS) as sandbox:
        session = NotebookSession(sandbox, LIMITS, [NOTEBOOK.replace("CANARY_PATH", repr(str(canary)))])
        try:
            reports = session.run()
            assert reports[0].status == "ok", reports[0].error
            bridge = Bridge(session)
            assert bridge.resolve("MIME") == "application/vnd.autograder.reply+json"  # requests 1, 2
            answer = bridge.resolve("answer")  # request 3
            try:
                got = answer()  # request 4: the forged reply with request 1's id lands now
            except StudentCodeError as error:
                assert "answers came" in str(error)
            else:
                assert got == 1.0
        finally:
            session.close()
    assert not canary.exists()
