// {name}-feeder: a fixture for {name}'s tests. Publishes each Draft's payload as a Response, for
// the validator to accept or reject.
import { plugin } from '../murmur.js';

export const agentApi = plugin({
  describe() {
    return { name: '{name}-feeder', version: '0.1.0', apiVersion: '0.1.0', kind: 'agent',
             description: 'publishes drafts as responses',
             subscriptions: [{ typeName: 'Draft', filter: undefined, fromProducers: [], tags: [], allowSelf: false }],
             publishes: ['Response'], phases: [], capabilities: [] };
  },
  handle(invocation) {
    return [{ typeName: 'Response', payload: invocation.inputs[0].payload, tags: [], visibility: undefined }];
  },
});
