"""The kernel side of the bridge: sent as source into the student's kernel after the notebook ran.

It answers one request per execution (describe / get / call a name of the notebook) with a single
display message of its own MIME type. Student code can tamper with it; that only garbles the
student's own answers, which the grader then rejects. It cannot reach the grader's comparison.
"""

AGENT_TEMPLATE = r'''
def __autograder_make_agent():
    import json, traceback
    from IPython import get_ipython
    from IPython.display import publish_display_data
    {codec}
    MIME = "application/vnd.autograder.reply+json"
    namespace = get_ipython().user_ns
    to_tensor = None
    try:
        import torch
        to_tensor = torch.from_numpy
    except ImportError:
        pass

    def reply(payload):
        publish_display_data({{MIME: json.dumps(payload, allow_nan=True)}})

    def handle(request_text):
        request = json.loads(request_text)
        name = request["name"]
        if name not in namespace:
            return reply({{"status": "missing"}})
        target = namespace[name]
        try:
            if request["op"] == "describe":
                return reply({{"status": "ok", "callable": callable(target)}})
            if request["op"] == "call":
                target = target(*decode(request["args"], tensors=to_tensor),
                                **decode(request["kwargs"], tensors=to_tensor))
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
MIME = "application/vnd.autograder.reply+json"


def agent_source() -> str:
    from pathlib import Path

    codec = (Path(__file__).with_name("codec.py")).read_text(encoding="utf-8")
    body = "\n    ".join(codec.split("\n"))
    return AGENT_TEMPLATE.format(codec=body)
