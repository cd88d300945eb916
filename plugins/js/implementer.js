// Implementation agent in JavaScript (componentized with componentize-js against the WIT
// world `basic-agent`): for implementation work it "writes" a code file and a test file
// named after the component, publishes an Implementation, and hands the work on to
// validation with a WorkDiscovery that carries it. Work whose description says "explode"
// throws, to show that a JavaScript exception reaches the host's log and fault message.
import { log } from 'murmur:plugin/log@0.1.0';

function slug(text) {
  return text.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean).join('_');
}

export const agentApi = {
  describe() {
    return {
      name: 'js-implementer', version: '0.1.0', apiVersion: '0.1.0', kind: 'agent',
      description: 'implements planned components (JavaScript)',
      subscriptions: [], publishes: ['Implementation', 'WorkDiscovery'], phases: [], capabilities: [],
    };
  },
  handle(invocation) {
    const input = invocation.inputs[0];
    const work = JSON.parse(input.payload);
    if (work.description.includes('explode')) throw new Error(`implementer exploded on purpose: ${work.description}`);
    const name = slug(work.description);
    if (!name) throw { tag: 'invalid-input', val: 'work description has no words to name files after' };
    log('info', `implementing ${work.description}`);
    const implementation = { code_files: [`src/${name}.js`], test_files: [`test/${name}.test.js`], summary: `Implemented ${work.description} in JavaScript` };
    const validate = {
      description: `Validate: ${work.description}`, phase: 'validation', priority: work.priority || 'medium',
      done_definition: 'Tests pass', discovered_by: invocation.agent, parent_work_id: input.id,
      metadata: { implementation },
    };
    return [
      { typeName: 'Implementation', payload: JSON.stringify(implementation), tags: [], visibility: undefined },
      { typeName: 'WorkDiscovery', payload: JSON.stringify(validate), tags: [], visibility: undefined },
    ];
  },
};
