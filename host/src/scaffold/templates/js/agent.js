// {name}: an agent in JavaScript. Answers every Request with a Response.
import { log } from 'murmur:plugin/log@0.1.0';
import { plugin, invalidInput } from './murmur.js';

export const agentApi = plugin({
  describe() {
    return {
      name: '{name}', version: '0.1.0', apiVersion: '0.1.0', kind: 'agent',
      description: 'answers requests',
      subscriptions: [{ typeName: 'Request', filter: undefined, fromProducers: [], tags: [], allowSelf: false }],
      // 'context': handed no context; `get()` from 'murmur:plugin/context@0.1.0'
      // asks the host for it when needed.
      publishes: ['Response'], phases: [], capabilities: ['context'],
    };
  },
  handle(invocation) {
    const input = invocation.inputs[0];
    if (!input) throw invalidInput('no input');
    const request = JSON.parse(input.payload);
    log('info', `{name} handles ${JSON.stringify(request)}`);
    return [{ typeName: 'Response', payload: JSON.stringify({ answer: request, by: invocation.agent }), tags: [], visibility: undefined }];
  },
});
