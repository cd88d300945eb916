"""{name}: an agent in Python. Answers every Request with a Response."""
import json

from murmur_plugin import invalid_input, plugin
from wit_world import exports
from wit_world.imports import log, types


@plugin
class AgentApi(exports.AgentApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.AGENT,
            description="answers requests",
            subscriptions=[types.Subscription(type_name="Request", filter=None, from_producers=[], tags=[], allow_self=False)],
            # "context": handed no context; wit_world.imports.context.get() asks the host
            # for it when needed.
            publishes=["Response"], phases=[], capabilities=["context"])

    def handle(self, invocation: types.Invocation):
        if not invocation.inputs:
            raise invalid_input("no input")
        request = json.loads(invocation.inputs[0].payload)
        log.log(types.Level.INFO, "{name} handles " + json.dumps(request))
        answer = {"answer": request, "by": invocation.agent}
        return [types.Output(type_name="Response", payload=json.dumps(answer), tags=[], visibility=None)]
