// {name}-witness: a fixture for {name}'s tests. Reports the Notes of its context, in the order
// it was handed them.
import { plugin } from '../murmur.js';

export const agentApi = plugin({
  describe() {
    return { name: '{name}-witness', version: '0.1.0', apiVersion: '0.1.0', kind: 'agent',
             description: 'reports its context',
             subscriptions: [{ typeName: 'Trigger', filter: undefined, fromProducers: [], tags: [], allowSelf: false }],
             publishes: ['Seen'], phases: [], capabilities: [] };
  },
  handle(invocation) {
    const context = invocation.context.filter((a) => a.typeName === 'Note').map((a) => JSON.parse(a.payload).n);
    return [{ typeName: 'Seen', payload: JSON.stringify({ context }), tags: [], visibility: undefined }];
  },
});
