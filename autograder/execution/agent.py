"""The kernel side of the bridge: sent as source into the student's kernel after the notebook ran.

It answers one request per execution (describe / get / call a name of the notebook) with a single
display message of its own MIME type, carrying the request's id. Student code can tamper with it;
that only garbles the student's own answers, which the grader then rejects. It cannot reach the
grader's comparison, and nothing it sends is ever executed on the grader's side.

`rebuild_function` below is the only code that turns data into a function; it exists only in this
text, which runs in the kernel, for functions a test hands to the student's code (outbound.py).
"""

from pathlib import Path

MIME = "application/vnd.autograder.reply+json"

AGENT_TEMPLATE = r'''
def __autograder_make_agent():
    import importlib, json, traceback
    from IPython import get_ipython
    from IPython.display import publish_display_data
    {codec}
    MIME = "{mime}"
    namespace = get_ipython().user_ns

    def to_tensor(array):
        import torch  # only once the grader sends a tensor: a notebook without torch never pays for it
        return torch.from_numpy(array)

    def rebuild_function(payload):
        scope = {{name: importlib.import_module(module) for name, module in payload["modules"].items()}}
        scope.update({{name: decode_request(value) for name, value in payload["captured"].items()}})
        exec(compile(payload["source"], "<grader function>", "exec"), scope)
        return scope[payload["name"]]

    def decode_request(data):
        if isinstance(data, dict) and len(data) == 1:
            (kind, inner), = data.items()
            if kind == "__function__":
                return rebuild_function(inner)
            if kind in ("__list__", "__tuple__"):
                items = [decode_request(item) for item in inner]
                return items if kind == "__list__" else tuple(items)
            if kind == "__dict__":
                return {{key: decode_request(value) for key, value in inner.items()}}
        return decode(data, tensors=to_tensor)

    def handle(request_text):
        request = json.loads(request_text)

        def reply(payload):
            payload["id"] = request["id"]
            publish_display_data({{MIME: json.dumps(payload, allow_nan=True)}})

        name = request["name"]
        if name not in namespace:
            return reply({{"status": "missing"}})
        target = namespace[name]
        try:
            if request["op"] == "describe":
                return reply({{"status": "ok", "callable": callable(target)}})
            if request["op"] == "call":
                target = target(*decode_request(request["args"]), **decode_request(request["kwargs"]))
            return reply({{"status": "ok", "value": encode(target)}})
        except NotPlainData as error:
            return reply({{"status": "not_plain", "message": str(error)}})
        except BaseException as error:
            frames = traceback.format_exception(type(error), error, error.__traceback__)
            return reply({{"status": "error", "type": type(error).__name__,
                          "message": str(error)[:2000], "traceback": "".join(frames[-6:])[-6000:]}})

    return handle

__autograder_handle = __autograder_make_agent()
del __autograder_make_agent
'''


def agent_source() -> str:
    codec = (Path(__file__).with_name("codec.py")).read_text(encoding="utf-8")
    body = "\n    ".join(codec.split("\n"))
    return AGENT_TEMPLATE.format(codec=body, mime=MIME)
