"""{name}-feeder: a fixture for {name}'s tests. Publishes each Draft's payload as a Response, for
the validator to accept or reject."""
from murmur_plugin import plugin
from wit_world import exports
from wit_world.imports import types


@plugin
class AgentApi(exports.AgentApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}-feeder", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.AGENT,
            description="publishes drafts as responses",
            subscriptions=[types.Subscription(type_name="Draft", filter=None, from_producers=[], tags=[], allow_self=False)],
            publishes=["Response"], phases=[], capabilities=[])

    def handle(self, invocation: types.Invocation):
        return [types.Output(type_name="Response", payload=invocation.inputs[0].payload, tags=[], visibility=None)]
