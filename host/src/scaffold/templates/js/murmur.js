// murmur.js: Murmuration's helper for JavaScript plugins (murmur:plugin@0.1.0), written
// by `murmur new`. `murmur build` bundles it with the plugin; it is yours to keep.
//
// Wrap the object your world exports with `plugin(...)`:
//
//   export const agentApi = plugin({ describe() { … }, handle(invocation) { … } });
//
// Then an exception your code lets escape answers the call as the `failed` plugin error,
// with its message and the stack in your files (without the wrapper: a trap, and a stack
// in generated code). To say which error it is, throw:
//
//   invalidInput('…')  the input is not something this plugin handles (never retried)
//   retryable('…')     a transient failure (the host retries with backoff)
//   failed('…')        the work failed
//
// A host call that fails throws; `hostError(e)` gives its `{ tag, val }` (`denied`,
// `rate-limited`, `timeout`, …) so you can handle it. Let escape, a refusal (`denied`: no
// grant, no model provider) is classified `denied` with the host's reason; a model's rate
// limit or timeout is `retryable`; any other host error is `failed`.

const KINDS = new Set(['invalid-input', 'failed', 'retryable']);

export const invalidInput = (message) => ({ tag: 'invalid-input', val: String(message) });
export const failed = (message) => ({ tag: 'failed', val: String(message) });
export const retryable = (message) => ({ tag: 'retryable', val: String(message) });

/** The `{ tag, val }` of an error a host call threw, or null for any other exception. */
export function hostError(e) {
  const p = e !== null && typeof e === 'object' && 'payload' in e ? e.payload : null;
  return p !== null && typeof p === 'object' && typeof p.tag === 'string' && !KINDS.has(p.tag) ? p : null;
}

/** The frames of `e`'s stack that are in the plugin's own files. */
function stackOf(e) {
  const frames = String((e && e.stack) || '')
    .split('\n')
    .filter((f) => f && !f.includes('initializer.js') && !f.includes('murmur.js:'));
  return frames.length ? '\n' + frames.map((f) => '    at ' + f).join('\n') : '';
}

function asPluginError(e) {
  if (e !== null && typeof e === 'object' && KINDS.has(e.tag) && typeof e.val === 'string') return e;
  const host = hostError(e);
  if (host) {
    // Rethrown: the host knows why it refused, and classifies the call `denied`.
    if (host.tag === 'denied') throw e;
    const said = `${host.tag}: ${host.val}`;
    return host.tag === 'rate-limited' || host.tag === 'timeout' ? retryable(said) : failed(said);
  }
  if (e instanceof Error) return failed(`${e.name}: ${e.message}${stackOf(e)}`);
  let shown;
  try {
    shown = JSON.stringify(e);
  } catch {
    shown = String(e);
  }
  return failed(`uncaught ${shown}`);
}

/** The world's exports, each call answering an escaped exception as a plugin error. */
export function plugin(api) {
  const wrapped = {};
  for (const [name, f] of Object.entries(api)) {
    wrapped[name] =
      typeof f !== 'function' || name === 'describe'
        ? f
        : function (...args) {
            try {
              return f.apply(api, args);
            } catch (e) {
              throw asPluginError(e);
            }
          };
  }
  return wrapped;
}
