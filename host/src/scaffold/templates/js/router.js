// {name}: a router in JavaScript. Sends a discovery to the first phase its description names.
import { plugin, invalidInput } from './murmur.js';

function words(artifact) {
  const d = JSON.parse(artifact.payload).description || '';
  return new Set(d.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean));
}

export const routerApi = plugin({
  describe() {
    return { name: '{name}', version: '0.1.0', apiVersion: '0.1.0', kind: 'router',
             description: 'routes by phase name', subscriptions: [], publishes: [], phases: [], capabilities: [] };
  },
  route(discovery, phases) {
    const text = (JSON.parse(discovery.payload).description || '').toLowerCase();
    const phase = phases.find((p) => text.includes(p.name));
    // The host's built-in router decides what this one cannot.
    if (!phase) throw invalidInput('no phase is named');
    return { phase: phase.name, reason: `the description names '${phase.name}'` };
  },
  // Used for deduplication when `[dedup] plugin` names this router.
  similarity(discovery, candidates) {
    const a = words(discovery);
    return candidates.map((c) => {
      const b = words(c);
      const common = [...a].filter((w) => b.has(w)).length;
      const union = a.size + b.size - common;
      return union === 0 ? 1 : common / union;
    });
  },
});
