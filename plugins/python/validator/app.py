"""Validation agent in Python: checks that the implementation carried by a validation
WorkDiscovery lists code and test files, publishes a ValidationResult and, when the
work mentions JWT, discovers the caching optimisation and sends it to analysis."""
import json
from wit_world import exports
from wit_world.imports import types, log


class AgentApi(exports.AgentApi):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="py-validator", version="0.1.0", api_version="0.1.0",
            kind=types.PluginKind.AGENT, description="validates implementations (Python)",
            subscriptions=[], publishes=["ValidationResult", "WorkDiscovery"], phases=[], capabilities=[])

    def handle(self, invocation: types.Invocation):
        source = invocation.inputs[0]
        work = json.loads(source.payload)
        if "explode" in work["description"]:
            raise RuntimeError("validator exploded on purpose: " + work["description"])
        implementation = work.get("metadata", {}).get("implementation", {})
        issues = [f"implementation lists no {k}" for k in ("code_files", "test_files") if not implementation.get(k)]
        discovered = []
        if "jwt" in work["description"].lower():
            discovered.append({
                "description": "Caching pattern could optimize all API routes",
                "phase": "analysis", "priority": "high",
                "done_definition": "Analysis complete with implementation plan",
                "discovered_by": invocation.agent, "parent_work_id": source.id,
            })
        log.log(types.Level.INFO, f"validated {work['description']}: {len(issues)} issue(s)")
        result = {"passed": not issues, "issues": issues, "optimizations_discovered": discovered}
        outputs = [types.Output(type_name="ValidationResult", payload=json.dumps(result), tags=[], visibility=None)]
        outputs += [types.Output(type_name="WorkDiscovery", payload=json.dumps(d), tags=[], visibility=None) for d in discovered]
        return outputs
