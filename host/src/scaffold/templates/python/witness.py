"""{name}-witness: a fixture for {name}'s tests. Reports the Notes of its context, in the order it
was handed them."""
import json

from murmur_plugin import plugin
from wit_world import exports
from wit_world.imports import types


@plugin
class AgentApi(exports.AgentApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}-witness", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.AGENT,
            description="reports its context",
            subscriptions=[types.Subscription(type_name="Trigger", filter=None, from_producers=[], tags=[], allow_self=False)],
            publishes=["Seen"], phases=[], capabilities=[])

    def handle(self, invocation: types.Invocation):
        notes = [json.loads(a.payload)["n"] for a in invocation.context if a.type_name == "Note"]
        return [types.Output(type_name="Seen", payload=json.dumps({"context": notes}), tags=[], visibility=None)]
