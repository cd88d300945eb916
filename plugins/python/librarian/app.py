"""A test agent in Python that uses the WASI filesystem: it reads `config.path` from the
read-only directories its manifest grants (`read_dirs`), and reports whether writing
there, or reading anything outside them, was refused — as it must be."""
import json
from wit_world import exports
from wit_world.imports import types


def attempt(action):
    try:
        action()
        return False
    except OSError:
        return True


class AgentApi(exports.AgentApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="py-librarian", version="0.1.0", api_version="0.1.0",
            kind=types.PluginKind.AGENT, description="reads files it was granted (Python)",
            subscriptions=[], publishes=["Note"], phases=[], capabilities=[])

    def handle(self, invocation: types.Invocation):
        config = json.loads(invocation.config or "{}")
        path = config["path"]
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            text = None
            error = str(e)
        else:
            error = None
        directory = path.rsplit("/", 1)[0] or "/"
        note = {
            "text": text,
            "error": error,
            "write_refused": attempt(lambda: open(directory + "/written-by-guest.txt", "w").write("x")),
            "outside_refused": attempt(lambda: open("/etc/hostname").read()),
        }
        return [types.Output(type_name="Note", payload=json.dumps(note), tags=[], visibility=None)]
