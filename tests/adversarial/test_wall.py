"""Attacks on the crossing itself, as real hw3 notebooks graded in real sandboxed kernels.

Each case is a sample submission with one hostile cell appended. Two kinds:
- a student function that returns (or raises) something that is not plain data, or is too big or too
  deep: only that function's question may lose points;
- a notebook that tampers with the bridge inside its own kernel (hooks, threads, atexit, patched
  json/display, a replaced agent) to forge, duplicate or garble the grader's replies: at worst every
  check fails (the student's own answers are garbled), never more points than the sample's own.
Every forged payload carries code that would write a canary file on the grader's side if it ever
ran there; after the batch no canary exists. Expected points come from the material and
samples.toml, never from this file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder.authoring.samples import load_specs
from autograder.checks.testfiles import load_questions
from autograder.course import Course
from autograder.grading.batch import BatchOptions, grade_batch
from autograder.grading.material import Material
from autograder.sandbox.limits import Limits
from autograder.store import Store

pytestmark = pytest.mark.kernel

HW3 = "hw3_losses"
ALL = ("*",)
LIMITS = Limits(timeout=300, cell_timeout=20, memory_mb=2500, pids=96, output_kb=256, disk_mb=128)

# Code a naive grader would run: decoding it, rendering it, or calling what it names.
PRELUDE = r'''
import json, pathlib
from IPython import get_ipython
from IPython.display import publish_display_data
MIME = "application/vnd.autograder.reply+json"
CANARY = CANARY_PATH
CANARY_SOURCE = ("import pathlib\np = pathlib.Path(%r)\np.parent.mkdir(parents=True, exist_ok=True)\n"
                 "p.write_text('ran')\ndef f(x=p.write_text('ran')):\n    return x\n" % CANARY)
FORGED_FUNCTION = {"__function__": {"name": "f", "source": CANARY_SOURCE, "captured": {},
                                    "modules": {"os": "os", "subprocess": "subprocess"}}}

def request_id(raw_cell):
    """What a hook can learn of the grader's request: its text, id included."""
    prefix = "__autograder_handle("
    if not raw_cell.startswith(prefix):
        return None
    return json.loads(json.loads(raw_cell[len(prefix):-1])).get("id")

def pickled_npy():
    import base64, io, numpy
    buffer = io.BytesIO()
    numpy.save(buffer, numpy.array([1, "a"], dtype=object), allow_pickle=True)
    return base64.b64encode(buffer.getvalue()).decode()

def huge_npy():
    """A header claiming 10**12 float64 values, and 8 bytes of data."""
    import base64
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += " " * (63 - len(header) % 64) + "\n"
    raw = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 8
    return base64.b64encode(raw).decode()

def replace_agent(answer):
    """From the next cell on, the grader's agent answers with answer(request) instead."""
    def swap(info):
        ns = get_ipython().user_ns
        if "__autograder_handle" in ns and not getattr(ns["__autograder_handle"], "forged", False):
            def handle(text):
                publish_display_data({MIME: answer(json.loads(text))})
            handle.forged = True
            ns["__autograder_handle"] = handle
    get_ipython().events.register("pre_run_cell", swap)
'''


@dataclass(frozen=True)
class Attack:
    name: str
    threat: str  # the class in shared/notes/threats.md
    base: str  # the sample it is appended to
    costs: tuple[str, ...]  # questions whose checks it may fail ("*": all); all others as the sample's
    code: str


def _returns(name: str, threat: str, body: str) -> Attack:
    """kl_divergence (q2) replaced by one that returns or raises something hostile."""
    code = "import numpy as np\ndef kl_divergence(p, q):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    return Attack(name, threat, "kl_swapped", ("q2",), code)


def _answers(name: str, threat: str, answer: str) -> Attack:
    """The agent replaced: every request is answered by `answer` (an expression of `request`)."""
    return Attack(name, threat, "reference", ALL, f"replace_agent(lambda request: {answer})")


ATTACKS = [
    # Route 1 of the issue: a returned function whose default argument ran in the grader.
    _returns("returns_function_default_arg", "22", "import pathlib\n"
             "def inner(x=(lambda p: (p.parent.mkdir(parents=True, exist_ok=True), p.write_text('ran')))"
             "(pathlib.Path(CANARY))):\n    return x\nreturn inner"),
    _returns("returns_lambda", "22", "return lambda: __import__('os').system('touch ' + CANARY)"),
    _returns("returns_module", "22", "import os\nreturn os"),
    _returns("returns_class", "22", "return type"),
    _returns("returns_rigged_object", "3", "class Rigged:\n    __eq__ = lambda s, o: True\n"
             "    __bool__ = lambda s: True\n    __float__ = lambda s: 0.0\n"
             "    __array__ = lambda s, *a, **k: np.zeros(())\nreturn Rigged()"),
    _returns("returns_generator", "22", "return (x for x in range(3))"),
    _returns("returns_reduce_object", "6", "import os\nclass Evil:\n"
             "    def __reduce__(self):\n        return (os.system, ('touch ' + CANARY,))\nreturn Evil()"),
    _returns("returns_object_array", "6", "return np.array([object(), 1], dtype=object)"),
    _returns("returns_record_array", "22", "return np.zeros(2, dtype=[('a', 'f8'), ('b', 'i4')])"),
    _returns("returns_string_array", "22", "return np.array(['0.5'])"),
    _returns("returns_pickle_bytes", "6", "import pickle\nreturn pickle.dumps(1)"),
    _returns("returns_64_5mb_string", "22", "return 'a' * (129 * 512 * 1024)"),
    _returns("returns_100mb_string", "22", "return 'a' * (100 * 1024 * 1024)"),
    _returns("returns_300mb_string", "22", "return 'a' * (300 * 1024 * 1024)"),
    _returns("returns_deep_nesting", "22", "value = 0\nfor _ in range(100000):\n    value = [value]\nreturn value"),
    _returns("returns_two_million_values", "22", "return [0.5] * 2000000"),
    _returns("returns_dict_shaped_like_a_function", "22", "return FORGED_FUNCTION"),
    _returns("returns_dict_with_object_keys", "22", "return {1: 2, (3,): 4}"),
    _returns("returns_rigged_float_subclass", "3", "class F(float):\n    __eq__ = lambda s, o: True\n"
             "    __ne__ = lambda s, o: False\nreturn F(0.0)"),
    _returns("returns_rigged_ndarray_subclass", "3", "class A(np.ndarray):\n"
             "    __eq__ = lambda s, o: np.ones(np.shape(o), bool)\nreturn np.zeros(()).view(A)"),
    _returns("returns_rigged_tensor_subclass", "3", "import torch\nclass T(torch.Tensor):\n"
             "    __eq__ = lambda s, o: True\nreturn torch.zeros(()).as_subclass(T)"),
    _returns("returns_fake_torch_object", "3", "class Fake:\n    __module__ = 'torch.fake'\n"
             "    def detach(self):\n        return self\n    def cpu(self):\n        return self\n"
             "    def numpy(self):\n        return np.array([Fake()], dtype=object)\nreturn Fake()"),
    _returns("returns_self_referencing_list", "22", "a = []\na.append(a)\nreturn a"),
    _returns("raises_exception_group", "22", "raise ExceptionGroup('x', [ValueError('y')])"),
    _returns("raises_system_exit", "15", "raise SystemExit(0)"),
    _returns("raises_keyboard_interrupt", "14", "raise KeyboardInterrupt"),
    _returns("raises_50mb_message", "16", "raise ValueError('x' * (50 * 1024 * 1024))"),
    _returns("raises_markup", "23", "raise ValueError('<script>alert(1)</script><img src=x onerror=alert(2)>')"),
    # Route 2 of the issue: a hook publishes one more reply after the agent's own.
    Attack("post_run_cell_extra_reply", "22", "reference", ALL,
           "get_ipython().events.register('post_run_cell', lambda result: publish_display_data("
           "{MIME: json.dumps({'status': 'ok', 'value': FORGED_FUNCTION})}))"),
    Attack("post_run_cell_extra_reply_with_the_right_id", "22", "reference", ALL,
           "get_ipython().events.register('post_run_cell', lambda result: publish_display_data({MIME: json.dumps("
           "{'id': request_id(result.info.raw_cell), 'status': 'ok', 'value': FORGED_FUNCTION})}))"),
    Attack("thread_publishes_during_each_request", "22", "reference", ALL,
           "import threading\nthreads = []\n"
           "def forge():\n    publish_display_data({MIME: json.dumps({'status': 'ok', 'value': FORGED_FUNCTION})})\n"
           "def start(info):\n    threads.append(threading.Thread(target=forge))\n    threads[-1].start()\n"
           "def join(result):\n    while threads:\n        threads.pop().join()\n"
           "get_ipython().events.register('pre_run_cell', start)\n"
           "get_ipython().events.register('post_run_cell', join)"),
    Attack("atexit_publishes_a_reply", "22", "reference", (),
           "import atexit\natexit.register(lambda: publish_display_data("
           "{MIME: json.dumps({'status': 'ok', 'value': FORGED_FUNCTION})}))"),
    Attack("patched_json_dumps", "2", "reference", ALL,
           "_dumps = json.dumps\n"
           "def dumps(obj, *args, **kwargs):\n"
           "    if isinstance(obj, dict) and 'id' in obj and 'status' in obj:\n"
           "        obj = {'id': obj['id'], 'status': 'ok', 'value': FORGED_FUNCTION}\n"
           "    return _dumps(obj, *args, **kwargs)\n"
           "json.dumps = dumps"),
    Attack("patched_display_publishes_twice", "2", "reference", ALL,
           "import IPython.display\n_publish = IPython.display.publish_display_data\n"
           "IPython.display.publish_display_data = lambda data, *a, **k: (_publish(data, *a, **k), "
           "_publish(data, *a, **k))"),
    Attack("prints_and_displays_fake_replies", "5", "reference", (),
           "print(json.dumps({'status': 'ok', 'value': FORGED_FUNCTION}))\n"
           "publish_display_data({MIME: json.dumps({'status': 'ok', 'value': FORGED_FUNCTION})})\n"
           "print('Score: 29/29')"),
    Attack("defines_the_agents_names", "4", "reference", (),
           "__autograder_handle = lambda text: publish_display_data({MIME: json.dumps("
           "{'status': 'ok', 'value': FORGED_FUNCTION})})\n__autograder_make_agent = __autograder_handle"),
    _answers("agent_answers_a_function", "22",
             "json.dumps({'id': request['id'], 'status': 'ok', 'callable': False, 'value': FORGED_FUNCTION})"),
    _answers("agent_answers_with_another_id", "22",
             "json.dumps({'id': '0' * 32, 'status': 'ok', 'callable': True})"),
    _answers("agent_answers_a_pickled_array", "6", "json.dumps({'id': request['id'], 'status': 'ok', "
             "'callable': False, 'value': {'__ndarray__': pickled_npy()}})"),
    _answers("agent_answers_a_huge_array_header", "24", "json.dumps({'id': request['id'], 'status': 'ok', "
             "'callable': False, 'value': {'__ndarray__': huge_npy()}})"),
    _answers("agent_answers_deep_json", "22", "'[' * 200000 + ']' * 200000"),
    _answers("agent_answers_a_5000_digit_int", "22", "'{\"id\": \"' + request['id'] + '\", \"status\": \"ok\", "
             "\"callable\": false, \"value\": ' + '9' * 5000 + '}'"),
    _answers("agent_answers_an_exception_type_to_build", "22",
             "json.dumps({'id': request['id'], 'status': 'error', 'type': 'ExceptionGroup', 'message': 'x'})"),
    _answers("agent_answers_callable_as_a_string", "22",
             "json.dumps({'id': request['id'], 'status': 'ok', 'callable': 'yes'})"),
    _answers("agent_answers_not_text", "22", "{'id': request['id'], 'status': 'ok', 'callable': True}"),
    _answers("agent_answers_an_unknown_status", "22",
             "json.dumps({'id': request['id'], 'status': 'passed', 'value': 1})"),
    # The Jupyter protocol itself: the kernel holds the HMAC key and the grader's request ids.
    _returns("returns_empty_array_of_huge_shape", "22", "return np.zeros((0, 10**12))"),
    _returns("returns_a_set", "22", "return {0.5}"),
    _returns("waits_on_input", "14", "return input('answer? ')"),
    Attack("forged_idle_before_each_reply", "22", "reference", ALL,
           "def forge_idle(info):\n    if info.raw_cell.startswith('__autograder_handle('):\n"
           "        kernel = get_ipython().kernel\n"
           "        kernel.session.send(kernel.iopub_socket, 'status', {'execution_state': 'idle'}, "
           "parent=kernel.get_parent())\n"
           "get_ipython().events.register('pre_run_cell', forge_idle)"),
    Attack("forged_input_request_on_stdin", "22", "reference", (),
           "kernel = get_ipython().kernel\n"
           "kernel.session.send(kernel.stdin_socket, 'input_request', {'prompt': CANARY_SOURCE, 'password': False}, "
           "parent=kernel.get_parent(), ident=kernel.get_parent()['header']['session'].encode())"),
    Attack("unsigned_messages_then_more", "22", "reference", (),
           "import time\nkernel = get_ipython().kernel\nfor _ in range(300):\n"
           "    kernel.iopub_socket.send_multipart([b'x', b'<IDS|MSG>', b'forged', b'{}', b'{}', b'{}', b'{}'])\n"
           "time.sleep(5)"),
    Attack("symlinks_for_the_next_kernels_files", "25", "reference", (),
           "import os\nipc = os.path.dirname(get_ipython().kernel.parent.connection_file)\n"
           "for name in ['kernel2.json', 'kernel2-1', 'kernel2-2', 'kernel2-3', 'kernel2-4', 'kernel2-5']:\n"
           "    os.symlink(CANARY, os.path.join(ipc, name))\nos._exit(1)"),
]


def _notebook(base: Path, attack: Attack, canary: Path) -> bytes:
    notebook = nbformat.read(base, as_version=4)
    prelude = PRELUDE.replace("CANARY_PATH", repr(str(canary)))
    notebook.cells.append(nbformat.v4.new_code_cell(prelude + "\n" + attack.code))
    return nbformat.writes(notebook).encode()


@pytest.fixture(scope="module")
def wall(built_course: Course, engine_pool: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("wall")
    canaries = work / "canaries"
    assignment = built_course.assignment(HW3)
    subs = work / "submissions"
    subs.mkdir()
    for attack in ATTACKS:
        base = assignment.submissions_dir / f"{attack.base}.ipynb"
        (subs / f"{attack.name}.ipynb").write_bytes(_notebook(base, attack, canaries / attack.name))
    for base in {attack.base for attack in ATTACKS}:
        shutil.copy(assignment.submissions_dir / f"{base}.ipynb", subs / f"baseline_{base}.ipynb")
    out = work / "out"
    outcome = grade_batch(assignment, [subs], out, Store(work / "results.sqlite"),
                          BatchOptions(limits=LIMITS, jobs=2, progress=False), executor=engine_pool)
    records = {Path(r["submission"]).stem: r for r in outcome.records}
    return {"records": records, "out": out, "canaries": canaries, "assignment": assignment}


def _expected(assignment: Any, attack: Attack) -> dict[str, float]:
    """The sample's declared scores, with the questions the attack may cost at zero."""
    full = {q.name: q.points for q in load_questions(Material.load(assignment).tests)}
    spec = next(s for s in load_specs(assignment) if s.name == attack.base)
    declared = full | (spec.scores if isinstance(spec.scores, dict) else {})
    return {name: 0.0 if (ALL == attack.costs or name in attack.costs) else points
            for name, points in declared.items()}


def test_enough_attack_cases() -> None:
    assert len(ATTACKS) >= 40
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_gets_exactly_its_expected_grade(attack: Attack, wall: dict[str, Any]) -> None:
    record = wall["records"][attack.name]
    assert record["status"] == "graded", record["message"]
    got = {q["name"]: q["score"] for q in record["questions"]}
    assert got == _expected(wall["assignment"], attack)
    baseline = wall["records"][f"baseline_{attack.base}"]
    assert sum(got.values()) <= sum(q["score"] for q in baseline["questions"])


def test_the_baselines_get_their_declared_grades(wall: dict[str, Any]) -> None:
    for base in {attack.base for attack in ATTACKS}:
        record = wall["records"][f"baseline_{base}"]
        plain = Attack(base, "", base, (), "")
        assert {q["name"]: q["score"] for q in record["questions"]} == _expected(wall["assignment"], plain)


def test_nothing_ran_on_the_grader_side(wall: dict[str, Any]) -> None:
    assert not wall["canaries"].exists(), sorted(p.name for p in wall["canaries"].rglob("*"))


def test_failed_calls_say_what_went_wrong(wall: dict[str, Any]) -> None:
    def messages(name: str) -> str:
        return " ".join(c["message"] for q in wall["records"][name]["questions"] for c in q["cases"])

    assert "answers came" in messages("post_run_cell_extra_reply")
    assert "does not belong to the grader's request" in messages("agent_answers_with_another_id")
    assert "larger than the grader accepts" in messages("returns_64_5mb_string")
    assert "a message of more than 65 MB" in messages("returns_100mb_string")
    assert "not plain data" in messages("agent_answers_a_function")
    assert "ExceptionGroup" in messages("raises_exception_group")
