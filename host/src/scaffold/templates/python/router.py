"""{name}: a router in Python. Sends a discovery to the first phase its description names."""
import json

from murmur_plugin import invalid_input, plugin
from wit_world import exports
from wit_world.imports import types


def words(artifact):
    text = json.loads(artifact.payload).get("description", "").lower()
    return set("".join(c if c.isalnum() else " " for c in text).split())


@plugin
class RouterApi(exports.RouterApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.ROUTER,
            description="routes by phase name", subscriptions=[], publishes=[], phases=[], capabilities=[])

    def route(self, discovery: types.Artifact, phases) -> types.RouteDecision:
        text = json.loads(discovery.payload).get("description", "").lower()
        for phase in phases:
            if phase.name in text:
                return types.RouteDecision(phase=phase.name, reason=f"the description names '{phase.name}'")
        # The host's built-in router decides what this one cannot.
        raise invalid_input("no phase is named")

    # Used for deduplication when `[dedup] plugin` names this router.
    def similarity(self, discovery: types.Artifact, candidates):
        a = words(discovery)
        scores = []
        for c in candidates:
            b = words(c)
            union = len(a | b)
            scores.append(1.0 if union == 0 else len(a & b) / union)
        return scores
