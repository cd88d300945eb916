"""{name}: a validator in Python. Rejects outputs whose payload mentions TODO."""
from murmur_plugin import plugin
from wit_world import exports
from wit_world.imports import types


@plugin
class ValidatorApi(exports.ValidatorApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{name}", version="0.1.0", api_version="0.1.0", kind=types.PluginKind.VALIDATOR,
            description="rejects unfinished work", subscriptions=[], publishes=[], phases=[], capabilities=[])

    def validate(self, invocation: types.Invocation, outputs) -> types.Verdict:
        reasons = [f"output #{i} ({o.type_name}) mentions TODO" for i, o in enumerate(outputs) if "TODO" in o.payload]
        return types.Verdict(accepted=not reasons, reasons=reasons)
