// {name}: a context provider in JavaScript. Puts the candidates tagged `pinned` first;
// the rest keep the host's order.
import { plugin } from './murmur.js';

export const contextProviderApi = plugin({
  describe() {
    return { name: '{name}', version: '0.1.0', apiVersion: '0.1.0', kind: 'context-provider',
             description: 'pinned context first', subscriptions: [], publishes: [], phases: [], capabilities: [] };
  },
  provide(invocation, candidates) {
    const pinned = (a) => a.tags.includes('pinned');
    return [...candidates.filter(pinned), ...candidates.filter((a) => !pinned(a))];
  },
});
