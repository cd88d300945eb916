// {name}: a validator in JavaScript. Rejects outputs whose payload mentions TODO.
import { plugin } from './murmur.js';

export const validatorApi = plugin({
  describe() {
    return { name: '{name}', version: '0.1.0', apiVersion: '0.1.0', kind: 'validator',
             description: 'rejects unfinished work', subscriptions: [], publishes: [], phases: [], capabilities: [] };
  },
  validate(invocation, outputs) {
    const reasons = outputs
      .map((o, i) => (o.payload.includes('TODO') ? `output #${i} (${o.typeName}) mentions TODO` : null))
      .filter((r) => r !== null);
    return { accepted: reasons.length === 0, reasons };
  },
});
