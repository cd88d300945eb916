// murmur-world: http-basic-agent
// An agent in JavaScript that uses the platform's own `fetch` (componentize-js over
// wasi:http): for each input it fetches `config.url` and publishes a Note with the status
// and the body. The host decides where `fetch` may go (the manifest's `http` list) and
// adds the destination's secret headers; an `async` export is awaited by the runtime.
import { log } from 'murmur:plugin/log@0.1.0';

export const agentApi = {
  describe() {
    return {
      name: 'js-fetcher', version: '0.1.0', apiVersion: '0.1.0', kind: 'agent',
      description: 'fetches config.url with fetch() (JavaScript)',
      subscriptions: [], publishes: ['Note'], phases: [], capabilities: [],
    };
  },
  async handle(invocation) {
    const config = JSON.parse(invocation.config);
    const response = await fetch(config.url, { headers: { accept: 'text/plain' } });
    const body = await response.text();
    log('info', `fetched ${config.url}: ${response.status}`);
    return [{
      typeName: 'Note',
      payload: JSON.stringify({ status: response.status, body, authorization: response.headers.get('x-seen-authorization') }),
      tags: [], visibility: undefined,
    }];
  },
};
