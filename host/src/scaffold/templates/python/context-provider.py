"""{name}: a context provider in Python. Puts the candidates tagged `pinned` first; the
rest keep the host's order."""
from murmur_plugin import plugin
from wit_world import exports
from wit_world.imports import types


@plugin
class ContextProviderApi(exports.ContextProviderApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.CONTEXT_PROVIDER,
            description="pinned context first", subscriptions=[], publishes=[], phases=[], capabilities=[])

    def provide(self, invocation: types.Invocation, candidates):
        # A stable sort: pinned first, the host's order kept otherwise.
        return sorted(candidates, key=lambda a: "pinned" not in a.tags)
