"""An agent in Python that sends HTTP requests through wasi:http (componentize-py's
generated bindings, nothing else): for each input it GETs `config.url` and publishes a
Note with the status and the body. The host decides where it may go (the manifest's
`http` list) and adds the destination's secret headers on the way out.

murmur-world: http-basic-agent
"""
import json
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, outgoing_handler, streams
from wit_world.imports import murmur_plugin_types as types
from wit_world.imports import wasi_http_types as http


def get(url: str):
    """GET `url`: (status, headers as a dict of lower-case names, body bytes)."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    request = http.OutgoingRequest(http.Fields.from_list([("accept", b"text/plain")]))
    request.set_method(http.Method_Get())
    request.set_scheme(http.Scheme_Https() if scheme == "https" else http.Scheme_Http())
    request.set_authority(authority)
    request.set_path_with_query(slash + path if slash else "/")
    body = request.body()
    future = outgoing_handler.handle(request, None)
    http.OutgoingBody.finish(body, None)
    while (answer := future.get()) is None:
        future.subscribe().block()
    # Ok(Ok(incoming-response)), or an Err at either level: raise it (a denied request
    # faults the call `denied` whatever the plugin does).
    if isinstance(answer, Err):
        raise answer
    if isinstance(answer.value, Err):
        raise RuntimeError(f"GET {url}: {answer.value.value}")
    response = answer.value.value
    status = response.status()
    with response.headers() as fields:
        headers = {name.lower(): value.decode() for name, value in fields.entries()}
    received = bytearray()
    with response.consume() as incoming:
        with incoming.stream() as stream:
            while True:
                try:
                    received += stream.blocking_read(65536)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise
    return status, headers, bytes(received)


class AgentApi(exports.AgentApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="py-fetcher", version="0.1.0", api_version="0.1.0",
            kind=types.PluginKind.AGENT, description="GETs config.url through wasi:http (Python)",
            subscriptions=[], publishes=["Note"], phases=[], capabilities=[])

    def handle(self, invocation: types.Invocation):
        config = json.loads(invocation.config)
        status, headers, body = get(config["url"])
        log.log(types.Level.INFO, f"fetched {config['url']}: {status}")
        note = {"status": status, "body": body.decode(errors="replace"),
                "authorization": headers.get("x-seen-authorization")}
        return [types.Output(type_name="Note", payload=json.dumps(note), tags=[], visibility=None)]
