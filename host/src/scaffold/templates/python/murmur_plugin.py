"""Murmuration's helper for Python plugins (murmur:plugin@0.1.0), written by `murmur new`.

`murmur build` builds it into the plugin; it is yours to keep. Decorate the class your
world exports with `@plugin`:

    @plugin
    class AgentApi(exports.AgentApi):
        ...

Then an exception your code lets escape answers the call as the `failed` plugin error,
with its type, message and the traceback's frames in your files (without the decorator:
a trap). To say which error it is, raise:

    raise invalid_input("…")   the input is not something this plugin handles (never retried)
    raise retryable("…")       a transient failure (the host retries with backoff)
    raise failed("…")          the work failed

A host call that fails raises `Err`; `host_error(e)` gives `(tag, message)` (`denied`,
`rate-limited`, `timeout`, …) so you can handle it. Let escape, a refusal (`denied`: no
grant, no model provider) is classified `denied` with the host's reason; a model's rate
limit or timeout is `retryable`; any other host error is `failed`.
"""
import functools
import re
import traceback

from componentize_py_types import Err
from wit_world.imports import types

_KINDS = (types.PluginError_InvalidInput, types.PluginError_Failed, types.PluginError_Retryable)


def invalid_input(message) -> Err:
    return Err(types.PluginError_InvalidInput(str(message)))


def failed(message) -> Err:
    return Err(types.PluginError_Failed(str(message)))


def retryable(message) -> Err:
    return Err(types.PluginError_Retryable(str(message)))


def host_error(e):
    """`(tag, message)` of an error a host call raised, or None for any other exception."""
    if not isinstance(e, Err) or isinstance(e.value, _KINDS):
        return None
    name = type(e.value).__name__.split("_")[-1]  # LlmError_RateLimited -> RateLimited
    tag = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
    return tag, str(getattr(e.value, "value", e.value))


def _frames(e: BaseException) -> str:
    frames = [
        f"    at {f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})"
        for f in traceback.extract_tb(e.__traceback__)
        if not f.filename.endswith(("murmur_plugin.py", "componentize_py_runtime.py"))
    ]
    return "\n" + "\n".join(frames) if frames else ""


def _guard(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Err as e:
            if isinstance(e.value, _KINDS):
                raise
            tag, message = host_error(e)
            if tag == "denied":
                raise  # the host knows why it refused, and classifies the call `denied`
            said = f"{tag}: {message}"
            raise (retryable(said) if tag in ("rate-limited", "timeout") else failed(said)) from None
        except Exception as e:
            raise failed(f"{type(e).__name__}: {e}{_frames(e)}") from None

    return call


def plugin(cls):
    """The world's exports, each call answering an escaped exception as a plugin error."""
    for name, value in list(vars(cls).items()):
        if callable(value) and name != "describe" and not name.startswith("_"):
            setattr(cls, name, _guard(value))
    return cls
