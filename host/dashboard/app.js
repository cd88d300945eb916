// The murmur dashboard: watches and steers a server's runs through API v1 and each run's
// event stream. Plain JavaScript, no dependencies, served from inside the binary.
//
// Views (hash routes): `#/` the runs; `#/run/ID/TAB` a run (TAB: board, graph, agents,
// faults), with `/work/WID` or `/artifact/AID` after it for an inspector beside the view.
// A run's view is live: it follows the run's Server-Sent Events (read over fetch, so a
// token can go with them), resumes after a disconnect with Last-Event-ID, and refreshes
// what an event changes at most twice a second. The runs list, which has no stream,
// refreshes every few seconds while the page is visible.
'use strict';

// ---------------------------------------------------------------------------------------
// Small helpers

/** An element: `h('a', {href: '#/', class: 'x', onclick: f}, 'text', child, …)`. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v); // CSSOM: allowed by the page's CSP
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** `text` cut to `n` characters, with an ellipsis when cut. */
const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmtInt = (n) => (n ?? 0).toLocaleString('en');
const short = (id) => (id ? String(id).slice(0, 8) : '');

function fmtMs(ms) {
  if (ms === undefined || ms === null) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString() : '–';
}

function badge(status, kind = 'status') {
  return h('span', { class: 'badge', dataset: { [kind]: status } }, String(status).replace(/_/g, ' '));
}

/**
 * Calls `fn` at most once per `gap()` ms after its last call finished: events that come
 * meanwhile make one more call, never a queue of them.
 */
function throttle(fn, gap) {
  let timer = null;
  let pending = false;
  return () => {
    pending = true;
    if (timer) return;
    timer = setTimeout(function fire() {
      if (!pending) { timer = null; return; }
      pending = false;
      Promise.resolve(fn()).finally(() => { timer = setTimeout(fire, gap()); });
    }, 0);
  };
}

// ---------------------------------------------------------------------------------------
// The API

const TOKEN_KEY = 'murmur.token';
const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, message, pointer, problems) {
    super(message);
    this.status = status;
    this.pointer = pointer;
    this.problems = problems || [];
  }
}

function authHeaders(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const init = { method, headers: authHeaders({ Accept: 'application/json', ...headers }) };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `the server did not answer (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    if (res.status === 401) askToken();
    throw new ApiError(res.status, e.message || `${res.status} ${res.statusText}`, e.pointer, e.problems);
  }
  return data;
}

/** Every page of a paged listing (`items` + `next`). */
async function allPages(path) {
  const items = [];
  let cursor = null;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api(`${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...page.items);
    if (!page.next) return items;
    cursor = page.next;
  }
}

function notify(message, ok = false) {
  const box = document.getElementById('notices');
  const close = h('button', { type: 'button', 'aria-label': 'Dismiss' }, '×');
  const n = h('div', { class: ok ? 'notice ok' : 'notice' }, h('p', {}, message), close);
  close.addEventListener('click', () => n.remove());
  box.append(n);
  setTimeout(() => n.remove(), ok ? 4000 : 12000);
}

function failed(what) {
  return (e) => notify(`${what}: ${e.message}`);
}

// ---------------------------------------------------------------------------------------
// Dialogs

const dialog = () => document.getElementById('dialog');

/** Opens the dialog with `title` and `body`; `onsubmit(form)` returns true to close. */
function openDialog(title, body, { submit = 'OK', danger = false, onsubmit }) {
  const d = dialog();
  const form = h('form', { method: 'dialog' },
    h('h2', { id: 'dialog-title' }, title),
    body,
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', value: 'cancel', onclick: () => d.close() }, 'Cancel'),
      h('button', { type: 'submit', class: danger ? 'danger' : 'primary' }, submit)));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      if (await onsubmit(form)) d.close();
    } finally {
      button.disabled = false;
    }
  });
  d.replaceChildren(form);
  d.showModal();
  const first = form.querySelector('input, select, textarea');
  (first || form.querySelector('button[type="submit"]')).focus();
}

let asking = false;
function askToken() {
  if (asking) return;
  asking = true;
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true });
  openDialog('This server needs a token', [
    h('p', {}, 'Paste a token this server accepts. It is kept for this tab only.'),
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'Token'), input),
  ], {
    submit: 'Use token',
    onsubmit: () => {
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      asking = false;
      // Everything read without the token failed: read it all again, stream included.
      closeRun();
      render();
      return true;
    },
  });
  dialog().addEventListener('close', () => { asking = false; }, { once: true });
}

// ---------------------------------------------------------------------------------------
// The event stream of one run

/**
 * Follows `/v1/workflows/ID/events`: calls `onEvent(kind, data)` for each, resumes after
 * a disconnect from the last id seen, and reports `live` / `reconnecting` / `ended`.
 */
class EventStream {
  constructor(runId, onEvent, onState) {
    this.runId = runId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.last = null;
    this.closed = false;
    this.abort = new AbortController();
    this.loop();
  }

  close() {
    this.closed = true;
    this.abort.abort();
  }

  async loop() {
    let backoff = 1000;
    while (!this.closed) {
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (this.last) headers['Last-Event-ID'] = this.last;
        const res = await fetch(`/v1/workflows/${encodeURIComponent(this.runId)}/events`, {
          headers, signal: this.abort.signal, cache: 'no-store',
        });
        if (res.status === 401) { askToken(); return; }
        if (!res.ok) throw new Error(`${res.status}`);
        this.onState('live');
        backoff = 1000;
        await this.read(res.body.pipeThrough(new TextDecoderStream()).getReader());
      } catch (e) {
        if (this.closed) return;
      }
      if (this.closed) return;
      this.onState('reconnecting');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 30000);
    }
  }

  async read(reader) {
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let kind = 'message';
        let data = '';
        let id = null;
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') kind = val;
          else if (field === 'data') data += (data ? '\n' : '') + val;
          else if (field === 'id') id = val;
        }
        if (id !== null) this.last = id;
        if (!data) continue;
        let parsed = null;
        try { parsed = JSON.parse(data); } catch { parsed = { text: data }; }
        this.onEvent(kind, parsed);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Routing and the page's state

/** What is on screen: the route's parts, and the run view when one is open. */
const page = { route: null, run: null, runsTimer: null };

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'run' && parts[1]) {
    return {
      view: 'run',
      id: parts[1],
      tab: ['board', 'graph', 'agents', 'faults'].includes(parts[2]) ? parts[2] : 'board',
      inspect: parts[3] === 'work' || parts[3] === 'artifact' ? { kind: parts[3], id: parts[4] } : null,
    };
  }
  return { view: 'runs' };
}

function runHref(id, tab = 'board', inspect = null) {
  return `#/run/${encodeURIComponent(id)}/${tab}${inspect ? `/${inspect.kind}/${encodeURIComponent(inspect.id)}` : ''}`;
}

function setConnection(state) {
  const el = document.getElementById('connection');
  el.dataset.state = state || '';
  el.textContent = { live: 'live', reconnecting: 'reconnecting…', '': '' }[state || ''] ?? state;
}

function setCrumbs(...items) {
  document.getElementById('crumbs').replaceChildren(...items.flatMap((c, i) => (i ? [' / ', c] : [c])));
}

function render() {
  const route = parseRoute();
  const previous = page.route;
  page.route = route;
  if (route.view === 'runs') {
    closeRun();
    renderRuns();
  } else if (page.run && page.run.id === route.id) {
    page.run.show(route, previous);
  } else {
    closeRun();
    page.run = new RunView(route.id);
    page.run.show(route, null);
  }
}

function closeRun() {
  if (page.run) page.run.close();
  page.run = null;
  setConnection('');
}

// ---------------------------------------------------------------------------------------
// The runs

async function renderRuns() {
  clearTimeout(page.runsTimer);
  setCrumbs(h('span', {}, 'Runs'));
  const main = document.getElementById('main');
  try {
    const listing = await api('/v1/workflows');
    if (parseRoute().view !== 'runs') return;
    const rows = listing.workflows.map((r) => {
      const c = r.counts || {};
      const elapsed = (r.finished_at_ms || Date.now()) - r.started_at_ms;
      return h('tr', { dataset: { run: r.workflow_id } },
        h('td', {}, h('a', { href: runHref(r.workflow_id) }, r.name), h('div', { class: 'muted' }, short(r.workflow_id))),
        h('td', {}, badge(r.status), r.live ? h('span', { class: 'muted' }, ' live') : null),
        h('td', { class: 'num' }, c.artifacts === undefined ? '–' : fmtInt(c.artifacts)),
        h('td', { class: 'num hide-narrow' }, c.invocations === undefined ? '–' : fmtInt(c.invocations)),
        h('td', { class: 'num' }, c.open_work === undefined ? '–' : fmtInt(c.open_work)),
        h('td', { class: 'num' }, c.awaiting_approval === undefined ? '–' : fmtInt(c.awaiting_approval)),
        h('td', { class: 'num hide-narrow' }, c.faults === undefined ? '–' : fmtInt(c.faults)),
        h('td', { class: 'num' }, fmtMs(elapsed)),
        h('td', { class: 'hide-narrow' }, fmtTime(r.started_at_ms)));
    });
    const table = h('div', { class: 'table-wrap' }, h('table', { id: 'runs' },
      h('caption', { class: 'muted caption' }, `${listing.workflows.length} runs, newest first`),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Workflow'), h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col', class: 'num' }, 'Artifacts'), h('th', { scope: 'col', class: 'num hide-narrow' }, 'Invocations'),
        h('th', { scope: 'col', class: 'num' }, 'Open work'), h('th', { scope: 'col', class: 'num' }, 'Awaiting approval'),
        h('th', { scope: 'col', class: 'num hide-narrow' }, 'Faults'), h('th', { scope: 'col', class: 'num' }, 'Elapsed'),
        h('th', { scope: 'col', class: 'hide-narrow' }, 'Started'))),
      h('tbody', {}, rows)));
    main.replaceChildren(
      h('div', { class: 'runhead' }, h('h1', {}, 'Runs'),
        h('button', { type: 'button', id: 'start-run', onclick: startDialog }, 'Start a run…')),
      listing.workflows.length ? table : h('p', { class: 'muted' }, 'No runs yet.'));
  } catch (e) {
    main.replaceChildren(h('h1', {}, 'Runs'), h('p', { class: 'error' }, `Could not list the runs: ${e.message}`));
  }
  // The listing has no stream: read it again every few seconds while it is looked at.
  page.runsTimer = setTimeout(() => {
    if (parseRoute().view === 'runs' && !document.hidden && !dialog().open) renderRuns();
    else if (parseRoute().view === 'runs') page.runsTimer = setTimeout(renderRuns, 3000);
  }, 3000);
}

function startDialog() {
  const path = h('input', { type: 'text', id: 'manifest-path', name: 'manifest_path', placeholder: '/path/to/workflow.toml' });
  const text = h('textarea', { id: 'manifest-text', name: 'manifest', rows: 8 });
  const base = h('input', { type: 'text', id: 'base-dir', name: 'base_dir' });
  openDialog('Start a run', [
    h('div', { class: 'field' }, h('label', { for: 'manifest-path' }, 'Manifest path (on the server)'), path),
    h('div', { class: 'field' }, h('label', { for: 'manifest-text' }, 'or manifest text (TOML)'), text),
    h('div', { class: 'field' }, h('label', { for: 'base-dir' }, 'Base directory for relative paths in the text'), base),
  ], {
    submit: 'Start',
    onsubmit: async () => {
      const body = path.value.trim()
        ? { manifest_path: path.value.trim() }
        : { manifest: text.value, ...(base.value.trim() ? { base_dir: base.value.trim() } : {}) };
      try {
        const started = await api('/v1/workflows', { method: 'POST', body });
        location.hash = runHref(started.workflow_id);
        return true;
      } catch (e) {
        notify(`Start: ${e.message}`);
        return false;
      }
    },
  });
}

// ---------------------------------------------------------------------------------------
// One run

const WORK_ORDER = ['awaiting_approval', 'blocked', 'active', 'pending', 'failed', 'expired', 'done', 'duplicate', 'cancelled'];
const PRIORITY_ORDER = { critical: 0, high: 1, medium: 2, low: 3 };
const CARDS_SHOWN = 40;

class RunView {
  constructor(id) {
    this.id = id;
    this.summary = null;
    this.work = null;
    this.workById = new Map();
    this.graph = null;
    this.faults = null;
    this.types = null;
    this.route = null;
    this.expanded = new Set();
    this.closed = false;
    // Twice a second at most, and less often for a run large enough that reading it
    // takes a while: the page never spends more than a fifth of its time refreshing.
    this.lastReloadMs = 0;
    this.refresh = throttle(() => this.reload(), () => Math.max(500, this.lastReloadMs * 4));
    this.stream = new EventStream(id, (kind, data) => this.onEvent(kind, data), setConnection);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  close() {
    this.closed = true;
    this.stream.close();
    clearInterval(this.ticker);
    if (this.graphView) this.graphView.destroy();
  }

  base() { return `/v1/workflows/${encodeURIComponent(this.id)}`; }

  async show(route, previous) {
    this.route = route;
    const main = document.getElementById('main');
    if (!this.shell) {
      this.shell = h('div', {});
      main.replaceChildren(this.shell);
      await this.reload();
      if (this.closed) return;
    } else if (!main.contains(this.shell)) {
      main.replaceChildren(this.shell);
    }
    const tabChanged = !previous || previous.tab !== route.tab || previous.id !== route.id;
    this.draw(tabChanged);
    if (tabChanged && previous) document.getElementById(`tab-${route.tab}`)?.focus();
  }

  /** Reads again what the views show. */
  async reload() {
    if (this.closed) return;
    const began = performance.now();
    try {
      const [summary, work] = await Promise.all([
        api(this.base()),
        allPages(`${this.base()}/work`),
      ]);
      this.summary = summary;
      this.work = work;
      this.workById = new Map(work.map((w) => [w.id, w]));
      this.stale = true;
      if (this.route && this.route.tab === 'faults') await this.loadFaults();
      if (this.route && this.route.tab === 'graph' && !this.graph) await this.loadGraph();
      if (this.shell && this.shell.isConnected) this.draw(false);
      this.lastReloadMs = performance.now() - began;
    } catch (e) {
      if (!this.summary && this.shell) {
        this.shell.replaceChildren(h('h1', {}, 'Run'), h('p', {}, `Could not read run ${this.id}: ${e.message}`));
      } else {
        failed('Refreshing the run')(e);
      }
    }
  }

  async loadGraph() {
    this.graph = await api(`${this.base()}/graph?format=json`);
  }

  async loadFaults() {
    this.faults = await allPages(`${this.base()}/invocations?troubled=true`);
  }

  onEvent(kind, data) {
    if (kind === 'published' && this.graph) {
      const w = data.work_item ? this.workById.get(data.work_item) : null;
      this.graph.nodes.push({
        id: data.id, type: data.type, producer: data.producer, phase: w ? w.phase : '',
        label: data.type, work_item: data.work_item || undefined,
      });
      for (const p of data.parent_ids || []) this.graph.edges.push({ from: p, to: data.id });
      if (this.graphView) this.graphView.changed();
    }
    if (kind === 'run_ended' && this.graph && this.graphView) {
      // Labels and phases as the store has them.
      this.loadGraph().then(() => this.graphView && this.graphView.setGraph(this.graph)).catch(failed('The graph'));
    }
    this.refresh();
  }

  tick() {
    const el = document.getElementById('elapsed');
    if (el && this.summary && this.summary.status === 'running' && this.startedAt) {
      el.textContent = fmtMs(Date.now() - this.startedAt);
    }
  }

  draw(tabChanged) {
    const s = this.summary;
    if (!s) return;
    const route = this.route;
    setCrumbs(h('a', { href: '#/' }, 'Runs'), h('span', {}, `${s.workflow} ${short(s.workflow_id)}`));
    if (!this.startedAt) {
      this.startedAt = Date.now() - (s.elapsed_ms || 0);
    }
    const open = Object.values(s.phases || {}).reduce((n, p) => n + (p.pending || 0) + (p.active || 0) + (p.blocked || 0) + (p.awaiting_approval || 0), 0);
    const awaiting = Object.values(s.phases || {}).reduce((n, p) => n + (p.awaiting_approval || 0), 0);
    const faults = Object.values(s.faults || {}).reduce((a, b) => a + b, 0);
    const running = s.status === 'running';
    const canResume = ['paused', 'running', 'waiting', 'stalled', 'budget_exhausted', 'failed'].includes(s.status) && !running;
    const head = h('div', {},
      h('div', { class: 'runhead' },
        h('h1', {}, s.workflow, ' ', h('span', { class: 'muted' }, short(s.workflow_id))),
        h('span', { id: 'run-status' }, badge(s.status)),
        h('div', { class: 'actions' },
          h('button', { type: 'button', id: 'pause', disabled: !running, onclick: () => this.act('pause') }, 'Pause'),
          h('button', { type: 'button', id: 'resume', disabled: !canResume, onclick: () => this.act('resume') }, 'Resume'),
          h('button', { type: 'button', id: 'cancel', class: 'danger', disabled: ['cancelled', 'complete'].includes(s.status), onclick: () => this.confirmCancel() }, 'Cancel'),
          h('button', { type: 'button', id: 'publish', disabled: ['cancelled', 'paused'].includes(s.status), onclick: () => this.publishDialog() }, 'Publish…'))),
      h('div', { class: 'stats', id: 'stats' },
        stat('Artifacts', fmtInt(s.artifacts), 'artifacts'),
        stat('Invocations', fmtInt(s.invocations), 'invocations'),
        stat('Open work', fmtInt(open), 'open'),
        stat('Awaiting approval', fmtInt(awaiting), 'awaiting'),
        stat('Faults', fmtInt(faults), 'faults'),
        stat('Duplicates', fmtInt(s.work?.duplicates ?? 0), 'duplicates'),
        h('div', { class: 'stat' }, h('b', { id: 'elapsed' }, fmtMs(running ? Date.now() - this.startedAt : s.elapsed_ms)), h('span', {}, 'Elapsed'))));
    const tabs = ['board', 'graph', 'agents', 'faults'];
    const names = { board: 'Phase board', graph: 'Cascade graph', agents: 'Agents', faults: 'Faults' };
    const tablist = h('div', { role: 'tablist', 'aria-label': 'Run views' }, tabs.map((t) => h('button', {
      type: 'button', role: 'tab', id: `tab-${t}`, 'aria-selected': String(t === route.tab),
      'aria-controls': 'panel', tabindex: t === route.tab ? '0' : '-1',
      onclick: () => { location.hash = runHref(this.id, t, route.inspect); },
      onkeydown: (ev) => {
        const i = tabs.indexOf(t);
        const next = ev.key === 'ArrowRight' ? tabs[(i + 1) % tabs.length] : ev.key === 'ArrowLeft' ? tabs[(i + tabs.length - 1) % tabs.length] : null;
        if (next) { ev.preventDefault(); location.hash = runHref(this.id, next, route.inspect); }
      },
    }, names[t])));
    let panel = this.panel;
    if (!panel || tabChanged || this.panelTab !== route.tab) {
      if (this.graphView) { this.graphView.destroy(); this.graphView = null; }
      panel = h('section', { id: 'panel', role: 'tabpanel', 'aria-labelledby': `tab-${route.tab}`, tabindex: '-1' });
      this.panel = panel;
      this.panelTab = route.tab;
    }
    this.fillPanel(panel);
    // The inspector stays while it shows the same thing; a reload refreshes its content.
    const key = route.inspect ? `${route.tab}/${route.inspect.kind}/${route.inspect.id}` : null;
    if (key !== this.inspectorKey) {
      this.inspectorEl = key ? this.inspector(route.inspect) : null;
      this.inspectorKey = key;
    } else if (key && this.stale) {
      this.fillInspector(this.inspectorEl, route.inspect);
    }
    this.stale = false;
    if (!this.layoutEl) this.layoutEl = h('div', {});
    this.layoutEl.className = key ? 'layout with-inspector' : 'layout';
    const want = key ? [panel, this.inspectorEl] : [panel];
    if (want.length !== this.layoutEl.children.length || want.some((el, i) => this.layoutEl.children[i] !== el)) {
      this.layoutEl.replaceChildren(...want);
    }
    // A redraw replaces only what changed (a click never lands on an element that a
    // refresh swapped out for an identical one), and keeps the keyboard where it was.
    const active = document.activeElement;
    const focused = active && active.id && this.shell.contains(active) ? active.id : null;
    const oldElapsed = this.shell.querySelector('#elapsed');
    const newElapsed = head.querySelector('#elapsed');
    if (oldElapsed && newElapsed) newElapsed.textContent = oldElapsed.textContent;
    [head, tablist, this.layoutEl].forEach((next, i) => {
      const old = this.shell.children[i];
      if (!old) this.shell.append(next);
      else if (old !== next && (next === this.layoutEl || old.outerHTML !== next.outerHTML)) old.replaceWith(next);
    });
    if (focused && document.activeElement !== document.getElementById(focused)) document.getElementById(focused)?.focus();
    if (this.graphView) this.graphView.resize();
  }

  fillPanel(panel) {
    const tab = this.route.tab;
    if (tab === 'board') replaceIfChanged(panel, this.board());
    else if (tab === 'agents') replaceIfChanged(panel, this.agents());
    else if (tab === 'faults') {
      if (!this.faults) { panel.replaceChildren(h('p', { class: 'muted' }, 'Loading…')); this.loadFaults().then(() => this.draw(false)).catch(failed('Faults')); }
      else replaceIfChanged(panel, this.faultsView());
    } else if (tab === 'graph') {
      if (!this.graph) {
        panel.replaceChildren(h('p', { class: 'muted' }, 'Loading the graph…'));
        this.loadGraph().then(() => this.draw(true)).catch(failed('The graph'));
      } else if (!this.graphView) {
        this.graphView = new GraphView(this.graph, this.workById, (kind, id) => { location.hash = runHref(this.id, 'graph', { kind, id }); });
        panel.replaceChildren(this.graphView.element);
      } else {
        this.graphView.phases(this.workById);
      }
    }
  }

  // -- the phase board

  board() {
    const phases = Object.keys(this.summary.phases || {});
    for (const w of this.work) if (!phases.includes(w.phase)) phases.push(w.phase);
    if (!phases.length) return h('p', { class: 'muted' }, 'No work items yet.');
    const byPhase = new Map(phases.map((p) => [p, new Map()]));
    for (const w of this.work) {
      const col = byPhase.get(w.phase);
      if (!col.has(w.status)) col.set(w.status, []);
      col.get(w.status).push(w);
    }
    return h('div', { class: 'board', id: 'board' }, phases.map((phase) => {
      const col = byPhase.get(phase);
      const counts = (this.summary.phases || {})[phase] || {};
      const statuses = WORK_ORDER.filter((st) => (counts[st] || 0) > 0 || col.has(st));
      return h('section', { class: 'column', dataset: { phase }, 'aria-label': `Phase ${phase}` },
        h('h2', {}, phase),
        h('div', { class: 'counts' }, statuses.map((st) => h('span', { class: 'badge', dataset: { status: st, count: st } },
          st.replace(/_/g, ' '), ' ', h('b', { class: 'count' }, fmtInt(counts[st] ?? (col.get(st) || []).length))))),
        statuses.filter((st) => col.has(st)).map((st) => {
          const items = col.get(st).slice().sort((a, b) => (PRIORITY_ORDER[a.priority] ?? 9) - (PRIORITY_ORDER[b.priority] ?? 9));
          const key = `${phase}/${st}`;
          const shown = this.expanded.has(key) ? items : items.slice(0, CARDS_SHOWN);
          return h('div', { class: 'section', dataset: { status: st } },
            h('h3', {}, `${st.replace(/_/g, ' ')} (${items.length})`),
            shown.map((w) => this.card(w)),
            items.length > shown.length ? h('button', { type: 'button', class: 'more', onclick: () => { this.expanded.add(key); this.draw(false); } }, `Show ${items.length - shown.length} more`) : null);
        }));
    }));
  }

  card(w) {
    const inspect = { kind: 'work', id: w.id };
    return h('article', { class: 'card', dataset: { work: w.id, status: w.status } },
      h('a', { class: 'title', id: `card-${w.id}`, href: runHref(this.id, this.route.tab, inspect) }, w.description || short(w.id)),
      h('div', { class: 'meta' }, badge(w.priority, 'priority'), w.status === 'blocked' ? h('span', { class: 'muted' }, `waits for ${(w.blocked_by || []).length}`) : null,
        w.duplicate_of ? h('span', { class: 'muted' }, 'duplicate') : null,
        w.reason && w.status !== 'awaiting_approval' ? h('span', { class: 'muted reason' }, w.reason.length > 120 ? `${w.reason.slice(0, 119)}…` : w.reason) : null),
      w.status === 'awaiting_approval' ? this.decisionButtons(w, 'card') : null);
  }

  /** Approve and Reject for `w`; ids start with `where`, so focus survives a redraw. */
  decisionButtons(w, where) {
    return h('div', { class: 'actions' },
      h('button', { type: 'button', id: `${where}-approve-${w.id}`, class: 'primary approve', 'aria-label': `Approve: ${w.description}`, onclick: () => this.approve(w) }, 'Approve'),
      h('button', { type: 'button', id: `${where}-reject-${w.id}`, class: 'danger reject', 'aria-label': `Reject: ${w.description}`, onclick: () => this.rejectDialog(w) }, 'Reject…'));
  }

  // -- agents and faults

  agents() {
    const s = this.summary;
    const tokens = (s.llm && s.llm.by_agent) || {};
    const rows = Object.entries(s.agents || {}).map(([name, a]) => h('tr', { dataset: { agent: name } },
      h('th', { scope: 'row' }, name),
      h('td', { class: 'num' }, fmtInt(a.invocations)),
      h('td', { class: 'num' }, fmtInt(a.failed)),
      h('td', { class: 'num' }, fmtMs(a.time?.p50_ms)),
      h('td', { class: 'num' }, fmtMs(a.time?.p95_ms)),
      h('td', { class: 'num hide-narrow' }, fmtMs(a.time?.max_ms)),
      h('td', { class: 'num hide-narrow' }, fmtMs(a.time?.model_ms)),
      h('td', { class: 'num' }, tokens[name] === undefined ? '–' : fmtInt(tokens[name])),
      h('td', { class: 'hide-narrow' }, Object.entries(a.published || {}).map(([t, n]) => `${t} ${fmtInt(n)}`).join(', '))));
    if (!rows.length) return h('p', { class: 'muted' }, 'No invocations yet.');
    return h('div', { class: 'table-wrap' }, h('table', { id: 'agents' },
      h('thead', {}, h('tr', {}, ['Agent', 'Invocations', 'Failed', 'p50', 'p95', 'Max', 'Model time', 'Model tokens', 'Published'].map((t, i) => h('th', { scope: 'col', class: [i >= 1 && i <= 7 ? 'num' : '', [5, 6, 8].includes(i) ? 'hide-narrow' : ''].join(' ').trim() || undefined }, t)))),
      h('tbody', {}, rows)));
  }

  faultsView() {
    const s = this.summary;
    const classes = Object.entries(s.faults || {});
    const rows = this.faults.map((r) => h('tr', { dataset: { invocation: r.id } },
      h('td', {}, r.fault ? badge(r.fault) : r.status === 'failed' ? badge('error', 'kind') : r.rejections ? badge('rejected', 'kind') : badge('retried', 'kind')),
      h('td', {}, r.agent),
      h('td', {}, r.error || (r.feedback || []).join('; ') || h('span', { class: 'muted' }, '–')),
      h('td', {}, r.work_item ? h('a', { href: runHref(this.id, 'faults', { kind: 'work', id: r.work_item }) }, this.workById.get(r.work_item)?.description || short(r.work_item)) : '–'),
      h('td', { class: 'num' }, fmtInt(r.attempts)),
      h('td', {}, badge(r.status))));
    return h('div', {},
      h('div', { class: 'counts' }, classes.map(([c, n]) => h('span', { class: 'badge', dataset: { fault: c } }, c.replace(/_/g, ' '), ' ', h('b', {}, fmtInt(n))))),
      rows.length
        ? h('div', { class: 'table-wrap' }, h('table', { id: 'faults' },
          h('thead', {}, h('tr', {}, ['Class', 'Plugin', 'Message', 'Work item', 'Attempts', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, rows)))
        : h('p', { class: 'muted' }, 'No faults, failures, retries or rejections.'));
  }

  // -- inspectors

  inspector(what) {
    const aside = h('aside', { class: 'inspector', 'aria-label': what.kind === 'work' ? 'Work item' : 'Artifact', id: 'inspector' },
      h('div', { class: 'runhead' },
        h('h2', {}, what.kind === 'work' ? 'Work item' : 'Artifact'),
        h('a', { class: 'button', href: runHref(this.id, this.route.tab), 'aria-label': 'Close the inspector' }, 'Close')),
      h('div', { class: 'inspector-body' }, h('p', { class: 'muted' }, 'Loading…')));
    this.fillInspector(aside, what);
    return aside;
  }

  /** Reads what the inspector shows and puts it in, where it changed. */
  fillInspector(aside, what) {
    const fill = what.kind === 'work' ? this.workInspector(what.id) : this.artifactInspector(what.id);
    const put = (parts) => {
      const body = aside.querySelector('.inspector-body');
      const next = h('div', { class: 'inspector-body' }, ...parts);
      if (body && body.outerHTML !== next.outerHTML) body.replaceWith(next);
    };
    fill.then(put).catch((e) => put([h('p', {}, `Could not read it: ${e.message}`)]));
  }

  workLink(id) {
    const w = this.workById.get(id);
    return h('a', { href: runHref(this.id, this.route.tab, { kind: 'work', id }) }, w ? w.description : short(id));
  }

  artifactLink(id, label) {
    return h('a', { href: runHref(this.id, this.route.tab, { kind: 'artifact', id }) }, label || short(id));
  }

  async workInspector(id) {
    const [story, artifacts] = await Promise.all([
      api(`${this.base()}/work/${encodeURIComponent(id)}`),
      api(`${this.base()}/artifacts?work_item=${encodeURIComponent(id)}&limit=1000`),
    ]);
    const w = story.work;
    const list = (ids, link) => (ids && ids.length ? h('ul', {}, ids.map((x) => h('li', {}, link(x)))) : h('span', { class: 'muted' }, 'none'));
    const approval = w.approval;
    const routed = w.routed;
    return [
      h('h3', {}, w.description),
      h('dl', {},
        h('dt', {}, 'Status'), h('dd', {}, badge(w.status)),
        h('dt', {}, 'Phase'), h('dd', {}, w.phase),
        h('dt', {}, 'Priority'), h('dd', {}, badge(w.priority, 'priority')),
        h('dt', {}, 'Discovery'), h('dd', {}, this.artifactLink(w.id)),
        h('dt', {}, 'Routed'), h('dd', {}, routed ? `asked for '${routed.requested}', sent to ${w.phase} by ${routed.by}: ${routed.reason}` : `to its named phase, ${w.phase}`),
        w.reason ? [h('dt', {}, 'Reason'), h('dd', {}, w.reason)] : null,
        h('dt', {}, 'Discovered by'), h('dd', {}, w.parent_work ? this.workLink(w.parent_work) : 'an input of the run'),
        w.duplicate_of ? [h('dt', {}, 'Duplicates'), h('dd', {}, this.workLink(w.duplicate_of))] : null,
        h('dt', {}, 'Its duplicates'), h('dd', {}, list(story.duplicates, (x) => this.workLink(x))),
        h('dt', {}, 'Blocked by'), h('dd', {}, w.blocked_by && w.blocked_by.length ? list(w.blocked_by, (x) => this.workLink(x)) : (w.was_blocked ? 'was blocked, released' : 'nothing')),
        w.recovery_of ? [h('dt', {}, 'Recovers'), h('dd', {}, this.workLink(w.recovery_of))] : null,
        h('dt', {}, 'Approval'), h('dd', {}, approval
          ? [`asked ${fmtTime(approval.requested_at_ms)}`, approval.expires_at_ms ? `, expires ${fmtTime(approval.expires_at_ms)}` : '',
            approval.decision ? `; ${approval.decision.approved ? 'approved' : 'rejected'}${approval.decision.reason ? `: ${approval.decision.reason}` : ''}` : '; undecided']
          : 'not needed')),
      w.status === 'awaiting_approval' ? this.decisionButtons(w, 'inspector') : null,
      h('h3', {}, `Attempts (${story.invocations.length})`),
      story.invocations.length ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Agent', 'Status', 'Tries', 'What went wrong'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, story.invocations.map((r) => h('tr', {},
          h('td', {}, r.agent), h('td', {}, badge(r.status)),
          h('td', { class: 'num' }, `${r.attempts}${r.retries ? ` (${r.retries} retried)` : ''}`),
          h('td', {}, [r.fault ? `${r.fault}: ` : '', r.error || '', r.rejections ? ` ${r.rejections} rejected` : '',
            (r.feedback || []).length ? h('ul', {}, r.feedback.map((f) => h('li', {}, f))) : null])))))) : h('p', { class: 'muted' }, 'None yet.'),
      h('h3', {}, `Artifacts (${artifacts.artifacts.length})`),
      list(artifacts.artifacts.map((a) => a.id), (x) => this.artifactLink(x, `${artifacts.artifacts.find((a) => a.id === x).type} ${short(x)}`)),
      h('h3', {}, `Work it discovered (${story.discovered.length})`),
      list(story.discovered, (x) => this.workLink(x)),
    ];
  }

  async artifactInspector(id) {
    const a = await api(`${this.base()}/artifacts/${encodeURIComponent(id)}`);
    if (!this.graph) await this.loadGraph();
    const children = this.graph.edges.filter((e) => e.from === id).map((e) => e.to);
    const types = new Map(this.graph.nodes.map((n) => [n.id, n.type]));
    const link = (x) => this.artifactLink(x, `${types.get(x) || 'artifact'} ${short(x)}`);
    const v = a.visibility || { kind: 'public' };
    const visibility = v.kind === 'public' ? 'public' : `${v.kind}: ${Array.isArray(v.value) ? v.value.join(', ') : v.value}`;
    return [
      h('h3', {}, `${a.type} ${short(a.id)}`),
      h('dl', {},
        h('dt', {}, 'Id'), h('dd', {}, a.id),
        h('dt', {}, 'Producer'), h('dd', {}, a.producer),
        h('dt', {}, 'Created'), h('dd', {}, fmtTime(a.created_at_ms)),
        h('dt', {}, 'Depth'), h('dd', {}, String(a.depth)),
        h('dt', {}, 'Work item'), h('dd', {}, a.work_item ? this.workLink(a.work_item) : 'none'),
        h('dt', {}, 'Visibility'), h('dd', { id: 'visibility' }, visibility),
        h('dt', {}, 'Tags'), h('dd', {}, (a.tags || []).join(', ') || 'none')),
      h('h3', {}, 'Payload'),
      h('pre', { class: 'json', tabindex: '0', 'aria-label': 'Payload as JSON' }, JSON.stringify(a.payload, null, 2)),
      h('h3', {}, `Parents (${a.parent_ids.length})`),
      a.parent_ids.length ? h('ul', {}, a.parent_ids.map((p) => h('li', {}, link(p)))) : h('p', { class: 'muted' }, 'none'),
      h('h3', {}, `Children (${children.length})`),
      children.length ? h('ul', {}, children.map((c) => h('li', {}, link(c)))) : h('p', { class: 'muted' }, 'none'),
    ];
  }

  // -- actions

  async act(what) {
    try {
      const r = await api(`${this.base()}/${what}`, { method: 'POST' });
      notify(`Run ${r.status}.`, true);
    } catch (e) {
      notify(`${what}: ${e.message}`);
    }
    this.refresh();
  }

  confirmCancel() {
    openDialog('Cancel the run?', h('p', {}, 'A cancelled run stops for good: it is never resumed.'), {
      submit: 'Cancel the run', danger: true,
      onsubmit: async () => { await this.act('cancel'); return true; },
    });
  }

  async approve(w) {
    try {
      const r = await api(`${this.base()}/work/${encodeURIComponent(w.id)}/approve`, { method: 'POST' });
      notify(`Approved: ${w.description} (${r.status}).`, true);
    } catch (e) {
      notify(`Approve: ${e.message}`);
    }
    this.refresh();
  }

  rejectDialog(w) {
    const reason = h('textarea', { id: 'reject-reason', name: 'reason', required: true, rows: 3 });
    openDialog(`Reject: ${w.description}`, [
      h('p', {}, 'The work item fails with your reason; recovery follows as for any failure.'),
      h('div', { class: 'field' }, h('label', { for: 'reject-reason' }, 'Reason'), reason),
    ], {
      submit: 'Reject', danger: true,
      onsubmit: async () => {
        try {
          await api(`${this.base()}/work/${encodeURIComponent(w.id)}/reject`, { method: 'POST', body: { reason: reason.value } });
          notify(`Rejected: ${w.description}.`, true);
          this.refresh();
          return true;
        } catch (e) {
          notify(`Reject: ${e.message}`);
          return false;
        }
      },
    });
  }

  async publishDialog() {
    try {
      if (!this.types) this.types = (await api(`${this.base()}/types`)).types;
    } catch (e) {
      notify(`The run's types: ${e.message}`);
      return;
    }
    const select = h('select', { id: 'publish-type', name: 'type' }, this.types.map((t) => h('option', { value: t.name, selected: t.name === 'WorkDiscovery' }, t.name)));
    const fields = h('div', {});
    const tags = h('input', { type: 'text', id: 'publish-tags', name: 'tags', placeholder: 'comma-separated' });
    const error = h('p', { class: 'error', id: 'publish-error', role: 'alert' });
    let form = null;
    const build = () => {
      const type = this.types.find((t) => t.name === select.value);
      form = new SchemaForm(type.schema);
      fields.replaceChildren(form.element);
      error.textContent = '';
    };
    select.addEventListener('change', build);
    build();
    openDialog('Publish an artifact', [
      h('div', { class: 'field' }, h('label', { for: 'publish-type' }, 'Type'), select),
      fields,
      h('div', { class: 'field' }, h('label', { for: 'publish-tags' }, 'Tags'), tags),
      error,
    ], {
      submit: 'Publish',
      onsubmit: async () => {
        error.textContent = '';
        let payload;
        try { payload = form.value(); } catch (e) { error.textContent = e.message; return false; }
        const body = { type: select.value, payload };
        const t = tags.value.split(',').map((x) => x.trim()).filter(Boolean);
        if (t.length) body.tags = t;
        try {
          const r = await api(`${this.base()}/artifacts`, { method: 'POST', body, headers: { 'Idempotency-Key': newKey() } });
          notify(`Published ${select.value} ${short(r.id)}.`, true);
          this.refresh();
          return true;
        } catch (e) {
          const shown = form.showError(e.pointer, e.message);
          error.textContent = shown ? 'The server refused the payload: see the field marked.' : e.message;
          if (e.problems && e.problems.length) error.textContent += ` (${e.problems.join('; ')})`;
          return false;
        }
      },
    });
  }
}

/** Puts `next` in `parent` unless what is there already looks exactly the same. */
function replaceIfChanged(parent, next) {
  const old = parent.firstElementChild;
  if (old && parent.childElementCount === 1 && old.outerHTML === next.outerHTML) return;
  parent.replaceChildren(next);
}

function stat(label, value, key) {
  return h('div', { class: 'stat', dataset: { stat: key } }, h('b', {}, value), h('span', {}, label));
}

/** A key for one press of Publish: sent again (a retry), the artifact is published once. */
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------------------
// A form generated from a JSON Schema

/**
 * Fields for an object schema's properties: text, number, checkbox or a choice by the
 * property's type and `enum`; arrays of strings one per line; anything else as JSON. A
 * schema that is not an object with properties is edited as JSON. The server checks the
 * payload against the schema; its JSON pointer marks the field at fault.
 */
class SchemaForm {
  constructor(schema) {
    this.schema = schema || {};
    this.controls = new Map();
    const props = this.schema.properties;
    if (this.schema.type === 'object' && props && Object.keys(props).length) {
      const required = new Set(this.schema.required || []);
      this.element = h('div', {}, Object.entries(props).map(([name, s]) => this.field(name, s || {}, required.has(name))));
    } else {
      this.raw = h('textarea', { id: 'field-payload', name: 'payload', rows: 6 }, '{}');
      this.element = h('div', { class: 'field' }, h('label', { for: 'field-payload' }, 'Payload (JSON)'), this.raw, h('p', { class: 'error', id: 'error-payload' }));
    }
  }

  field(name, s, required) {
    const id = `field-${name}`;
    const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
    let control;
    let kind;
    if (Array.isArray(s.enum)) {
      kind = 'enum';
      control = h('select', { id, name }, required ? null : h('option', { value: '' }, '(none)'),
        s.enum.map((v) => h('option', { value: JSON.stringify(v), selected: s.default !== undefined && v === s.default }, String(v))));
    } else if (type === 'boolean') {
      kind = 'boolean';
      control = h('input', { type: 'checkbox', id, name, checked: s.default === true });
    } else if (type === 'integer' || type === 'number') {
      kind = type;
      control = h('input', { type: 'number', id, name, step: type === 'integer' ? '1' : 'any', min: s.minimum, max: s.maximum, value: s.default });
    } else if (type === 'string') {
      kind = 'string';
      const long = (s.maxLength || 0) > 200 || /description|text|body|definition|plan|summary/.test(name);
      control = long ? h('textarea', { id, name, rows: 3 }, s.default ?? '') : h('input', { type: 'text', id, name, value: s.default });
    } else if (type === 'array' && s.items && (s.items.type === 'string' || Array.isArray(s.items.enum))) {
      kind = 'lines';
      control = h('textarea', { id, name, rows: 3 });
    } else {
      kind = 'json';
      control = h('textarea', { id, name, rows: 3, placeholder: 'JSON' });
    }
    if (required && kind !== 'boolean') control.setAttribute('aria-required', 'true');
    const help = [s.description, kind === 'lines' ? 'one per line' : null, kind === 'json' ? 'as JSON' : null].filter(Boolean).join(' · ');
    const helpId = `${id}-help`;
    const errorId = `${id}-error`;
    control.setAttribute('aria-describedby', `${helpId} ${errorId}`);
    this.controls.set(name, { control, kind, required, errorId });
    return h('div', { class: 'field' },
      h('label', { for: id }, s.title || name, required ? ' *' : ''),
      control,
      h('p', { class: 'help', id: helpId }, help),
      h('p', { class: 'error', id: errorId }));
  }

  value() {
    if (this.raw) {
      try { return JSON.parse(this.raw.value); } catch (e) { throw new Error(`Payload: not JSON (${e.message})`); }
    }
    const out = {};
    for (const [name, { control, kind, required }] of this.controls) {
      const v = control.value;
      if (kind === 'boolean') { if (control.checked || required) out[name] = control.checked; continue; }
      if (v === '' || v === undefined) { continue; }
      if (kind === 'enum') out[name] = JSON.parse(v);
      else if (kind === 'integer' || kind === 'number') out[name] = Number(v);
      else if (kind === 'lines') out[name] = v.split('\n').map((x) => x.trim()).filter(Boolean);
      else if (kind === 'json') {
        try { out[name] = JSON.parse(v); } catch (e) { throw new Error(`${name}: not JSON (${e.message})`); }
      } else out[name] = v;
    }
    return out;
  }

  /** Marks the field a JSON pointer (`/payload/NAME/…`) names; whether one was found. */
  showError(pointer, message) {
    for (const { control, errorId } of this.controls.values()) {
      control.removeAttribute('aria-invalid');
      document.getElementById(errorId).textContent = '';
    }
    if (!pointer || !pointer.startsWith('/payload')) return false;
    if (this.raw) {
      document.getElementById('error-payload').textContent = `${pointer}: ${message}`;
      return true;
    }
    const name = pointer.split('/')[2]?.replace(/~1/g, '/').replace(/~0/g, '~');
    const entry = name !== undefined ? this.controls.get(name) : null;
    if (!entry) return false;
    entry.control.setAttribute('aria-invalid', 'true');
    document.getElementById(entry.errorId).textContent = message;
    entry.control.focus();
    return true;
  }
}

// ---------------------------------------------------------------------------------------
// The cascade graph

/** Past this many artifacts the graph draws groups (depth × phase × type), not artifacts. */
const DETAIL_LIMIT = 1500;
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

/**
 * The cascade on a canvas: artifacts in columns by depth (a child one column right of its
 * deepest parent), coloured by the phase of the work they served. Hovering an artifact
 * highlights its branch: its ancestors, its descendants and its work item's artifacts.
 * Past DETAIL_LIMIT artifacts it draws one box per (depth, phase, type) group with its
 * count, and edges between groups: a 10,000-artifact cascade is a few dozen boxes, drawn
 * in a millisecond, while the counts stay exact. Layout is incremental: an artifact
 * published while the page is open is placed without laying out the rest again.
 */
class GraphView {
  constructor(graph, workById, open) {
    this.open = open;
    this.canvas = h('canvas', { tabindex: '0', role: 'img', id: 'graph-canvas' });
    this.tip = h('div', { class: 'graph-tip', hidden: true });
    this.legend = h('div', { class: 'legend', id: 'graph-legend' });
    this.note = h('p', { class: 'muted', id: 'graph-note' });
    this.element = h('div', {}, this.legend, this.note, h('div', { class: 'graph-wrap' }, this.canvas, this.tip),
      h('p', { class: 'muted' }, 'Drag to pan, wheel or + / − to zoom, arrow keys to move between artifacts, Enter to inspect.'));
    this.view = { x: 20, y: 20, k: 1 };
    this.dpr = window.devicePixelRatio || 1;
    this.hover = null;
    this.selected = -1;
    this.colors = new Map();
    this.workById = workById;
    this.setGraph(graph);
    this.bind();
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(this.canvas);
  }

  destroy() {
    clearTimeout(this.pending);
    this.resizeObserver.disconnect();
    cancelAnimationFrame(this.frame);
  }

  phases(workById) {
    this.workById = workById;
    let changed = false;
    for (const n of this.graph.nodes) {
      if (!n.phase && n.work_item && workById.get(n.work_item)) { n.phase = workById.get(n.work_item).phase; changed = true; }
    }
    if (changed) this.setGraph(this.graph);
  }

  setGraph(graph) {
    this.graph = graph;
    this.index = new Map();
    this.nodes = [];
    this.children = [];
    this.parents = [];
    this.columns = [];
    this.placed = 0;
    this.laidEdges = 0;
    this.groups = null;
    clearTimeout(this.pending);
    this.pending = null;
    this.layout();
  }

  color(phase) {
    if (!this.colors.has(phase)) this.colors.set(phase, phase ? PALETTE[this.colors.size % PALETTE.length] : '#8a8f98');
    return this.colors.get(phase);
  }

  /**
   * New artifacts arrived: lay them out at most five times a second, so a live run's
   * stream of `published` events costs one layout per batch, not one per artifact.
   */
  changed() {
    if (this.pending) return;
    this.pending = setTimeout(() => { this.pending = null; this.layout(); }, 200);
  }

  /** Places artifacts and edges that arrived since the last layout. */
  layout() {
    const began = performance.now();
    const g = this.graph;
    for (let i = this.nodes.length; i < g.nodes.length; i++) {
      const n = g.nodes[i];
      this.index.set(n.id, i);
      this.nodes.push({ n, depth: 0, row: 0, x: 0, y: 0 });
      this.children.push([]);
      this.parents.push([]);
    }
    for (let e = this.laidEdges; e < g.edges.length; e++) {
      const from = this.index.get(g.edges[e].from);
      const to = this.index.get(g.edges[e].to);
      if (from === undefined || to === undefined) continue;
      this.children[from].push(to);
      this.parents[to].push(from);
    }
    this.laidEdges = g.edges.length;
    // Depth and row for those not placed yet (parents come before children).
    for (let i = this.placed || 0; i < this.nodes.length; i++) {
      const p = this.nodes[i];
      p.depth = this.parents[i].reduce((d, j) => Math.max(d, this.nodes[j].depth + 1), 0);
      if (!this.columns[p.depth]) this.columns[p.depth] = 0;
      p.row = this.columns[p.depth]++;
      p.x = p.depth * 180;
      p.y = p.row * 26;
    }
    this.placed = this.nodes.length;
    this.aggregate = this.nodes.length > DETAIL_LIMIT;
    if (this.aggregate) this.group();
    this.describe();
    this.canvas.dataset.layoutMs = (performance.now() - began).toFixed(2);
    this.draw();
  }

  group() {
    const groups = new Map();
    this.nodes.forEach((p, i) => {
      const key = `${p.depth}|${p.n.phase}|${p.n.type}`;
      let g = groups.get(key);
      if (!g) { g = { key, depth: p.depth, phase: p.n.phase, type: p.n.type, count: 0, members: [], out: new Map(), in: new Set() }; groups.set(key, g); }
      g.count++;
      if (g.members.length < 200) g.members.push(i);
      p.group = g;
    });
    const list = [...groups.values()];
    const rows = [];
    for (const g of list.sort((a, b) => a.depth - b.depth || a.phase.localeCompare(b.phase) || a.type.localeCompare(b.type))) {
      rows[g.depth] = rows[g.depth] || 0;
      g.x = g.depth * 220;
      g.y = rows[g.depth] * 64;
      rows[g.depth]++;
    }
    this.nodes.forEach((p, i) => {
      for (const c of this.children[i]) {
        const to = this.nodes[c].group;
        p.group.out.set(to, (p.group.out.get(to) || 0) + 1);
        to.in.add(p.group);
      }
    });
    this.groups = list;
  }

  describe() {
    const phases = new Map();
    for (const p of this.nodes) phases.set(p.n.phase, (phases.get(p.n.phase) || 0) + 1);
    this.legend.replaceChildren(...[...phases].map(([ph, n]) => h('span', {}, h('span', { class: 'swatch', style: { background: this.color(ph) } }), `${ph || 'no phase'} (${fmtInt(n)})`)));
    this.note.textContent = this.aggregate
      ? `${fmtInt(this.nodes.length)} artifacts in ${this.groups.length} groups (artifacts of one depth, phase and type together, past ${fmtInt(DETAIL_LIMIT)} artifacts). Hover a group for its branch; click it to inspect one of its artifacts.`
      : `${fmtInt(this.nodes.length)} artifacts, ${fmtInt(this.graph.edges.length)} links.`;
    this.canvas.setAttribute('aria-label', `Cascade graph: ${this.note.textContent}`);
    this.canvas.dataset.nodes = String(this.nodes.length);
    this.canvas.dataset.drawn = String(this.aggregate ? this.groups.length : this.nodes.length);
  }

  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.round(r.width * dpr));
    this.canvas.height = Math.max(1, Math.round(r.height * dpr));
    this.dpr = dpr;
    this.draw();
  }

  draw() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.paint());
  }

  /** The set highlighted for the hovered item: its ancestors, descendants and work item. */
  branch(i) {
    const seen = new Set([i]);
    const walk = (start, next) => {
      const stack = [start];
      while (stack.length) {
        const j = stack.pop();
        for (const k of next[j]) if (!seen.has(k)) { seen.add(k); stack.push(k); }
      }
    };
    walk(i, this.parents);
    walk(i, this.children);
    const w = this.nodes[i].n.work_item;
    if (w) this.nodes.forEach((p, j) => { if (p.n.work_item === w) seen.add(j); });
    return seen;
  }

  groupBranch(g) {
    const seen = new Set([g]);
    const walk = (next) => {
      const stack = [g];
      while (stack.length) {
        const x = stack.pop();
        for (const y of next(x)) if (!seen.has(y)) { seen.add(y); stack.push(y); }
      }
    };
    walk((x) => x.out.keys());
    walk((x) => x.in);
    return seen;
  }

  paint() {
    const began = performance.now();
    this.paintItems();
    // How long the last frame took, for whoever measures the page (the browser test).
    this.canvas.dataset.paintMs = (performance.now() - began).toFixed(2);
  }

  paintItems() {
    const ctx = this.canvas.getContext('2d');
    const { x, y, k } = this.view;
    const style = getComputedStyle(document.documentElement);
    const fg = style.getPropertyValue('--fg').trim() || '#000';
    const line = style.getPropertyValue('--line').trim() || '#ccc';
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.translate(x, y);
    ctx.scale(k, k);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    if (this.aggregate) {
      const lit = this.hover !== null ? this.groupBranch(this.hover) : null;
      for (const g of this.groups) {
        for (const [to, n] of g.out) {
          ctx.strokeStyle = lit && lit.has(g) && lit.has(to) ? fg : line;
          ctx.lineWidth = Math.min(6, 1 + Math.log10(n));
          ctx.beginPath(); ctx.moveTo(g.x + 180, g.y + 22); ctx.lineTo(to.x, to.y + 22); ctx.stroke();
        }
      }
      for (const g of this.groups) {
        ctx.globalAlpha = lit && !lit.has(g) ? 0.25 : 1;
        ctx.fillStyle = this.color(g.phase);
        ctx.fillRect(g.x, g.y, 180, 44);
        ctx.fillStyle = '#fff';
        ctx.fillText(clip(`${g.type} ×${fmtInt(g.count)}`, 28), g.x + 6, g.y + 14);
        ctx.fillText(clip(g.phase || 'no phase', 28), g.x + 6, g.y + 31);
      }
      ctx.globalAlpha = 1;
      return;
    }
    const lit = this.hover !== null ? this.branch(this.hover) : null;
    ctx.lineWidth = 1;
    for (let i = 0; i < this.nodes.length; i++) {
      const a = this.nodes[i];
      for (const c of this.children[i]) {
        const b = this.nodes[c];
        ctx.strokeStyle = lit && lit.has(i) && lit.has(c) ? fg : line;
        ctx.beginPath(); ctx.moveTo(a.x + 150, a.y + 10); ctx.lineTo(b.x, b.y + 10); ctx.stroke();
      }
    }
    for (let i = 0; i < this.nodes.length; i++) {
      const p = this.nodes[i];
      ctx.globalAlpha = lit && !lit.has(i) ? 0.2 : 1;
      ctx.fillStyle = this.color(p.n.phase);
      ctx.fillRect(p.x, p.y, 150, 20);
      if (i === this.selected) { ctx.strokeStyle = fg; ctx.lineWidth = 2; ctx.strokeRect(p.x - 1, p.y - 1, 152, 22); ctx.lineWidth = 1; }
      ctx.fillStyle = '#fff';
      ctx.fillText(clip(p.n.label || p.n.type, 24), p.x + 4, p.y + 10);
    }
    ctx.globalAlpha = 1;
  }

  /** What is under canvas point (cx, cy): a node index, a group, or null. */
  hit(cx, cy) {
    const { x, y, k } = this.view;
    const gx = (cx - x) / k;
    const gy = (cy - y) / k;
    if (this.aggregate) return this.groups.find((g) => gx >= g.x && gx <= g.x + 180 && gy >= g.y && gy <= g.y + 44) || null;
    const depth = Math.floor(gx / 180);
    if (gx - depth * 180 > 150) return null;
    for (let i = 0; i < this.nodes.length; i++) {
      const p = this.nodes[i];
      if (p.depth === depth && gy >= p.y && gy <= p.y + 20) return i;
    }
    return null;
  }

  showTip(item, cx, cy) {
    if (item === null) { this.tip.hidden = true; return; }
    const text = this.aggregate ? `${item.type} ×${item.count} · ${item.phase || 'no phase'} · depth ${item.depth}` : `${this.nodes[item].n.label} · ${this.nodes[item].n.producer} · ${this.nodes[item].n.phase || 'no phase'}`;
    this.tip.textContent = text;
    this.tip.hidden = false;
    this.tip.style.left = `${Math.min(cx + 12, this.canvas.clientWidth - 200)}px`;
    this.tip.style.top = `${cy + 12}px`;
  }

  openItem(item) {
    if (item === null) return;
    const i = this.aggregate ? item.members[0] : item;
    this.open('artifact', this.nodes[i].n.id);
  }

  bind() {
    let drag = null;
    const pos = (ev) => { const r = this.canvas.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; };
    this.canvas.addEventListener('pointerdown', (ev) => { drag = { x: ev.clientX, y: ev.clientY, moved: false }; this.canvas.setPointerCapture(ev.pointerId); });
    this.canvas.addEventListener('pointermove', (ev) => {
      if (drag) {
        const dx = ev.clientX - drag.x; const dy = ev.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        this.view.x += dx; this.view.y += dy; drag.x = ev.clientX; drag.y = ev.clientY;
        this.draw();
        return;
      }
      const [cx, cy] = pos(ev);
      const item = this.hit(cx, cy);
      if (item !== this.hover) { this.hover = item; this.draw(); }
      this.showTip(item, cx, cy);
    });
    this.canvas.addEventListener('pointerup', (ev) => {
      const wasDrag = drag && drag.moved;
      drag = null;
      if (!wasDrag) { const [cx, cy] = pos(ev); this.openItem(this.hit(cx, cy)); }
    });
    this.canvas.addEventListener('pointerleave', () => { this.hover = null; this.tip.hidden = true; this.draw(); });
    this.canvas.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      const [cx, cy] = pos(ev);
      this.zoom(ev.deltaY < 0 ? 1.15 : 1 / 1.15, cx, cy);
    }, { passive: false });
    this.canvas.addEventListener('keydown', (ev) => {
      const step = 40;
      const keys = {
        '+': () => this.zoom(1.2), '=': () => this.zoom(1.2), '-': () => this.zoom(1 / 1.2),
        ArrowDown: () => this.select(1), ArrowUp: () => this.select(-1),
        ArrowRight: () => this.select(this.aggregate ? 1 : 0, 1), ArrowLeft: () => this.select(this.aggregate ? -1 : 0, -1),
        Enter: () => this.openItem(this.aggregate ? this.groups[this.selected] ?? null : (this.selected >= 0 ? this.selected : null)),
        h: () => { this.view.x += step; this.draw(); }, l: () => { this.view.x -= step; this.draw(); },
      };
      if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
    });
  }

  zoom(f, cx = this.canvas.clientWidth / 2, cy = this.canvas.clientHeight / 2) {
    const v = this.view;
    const k = Math.min(4, Math.max(0.05, v.k * f));
    v.x = cx - ((cx - v.x) * k) / v.k;
    v.y = cy - ((cy - v.y) * k) / v.k;
    v.k = k;
    this.draw();
  }

  /** Keyboard selection: the next artifact in publish order, or one column over. */
  select(by, columns = 0) {
    const count = this.aggregate ? this.groups.length : this.nodes.length;
    if (!count) return;
    if (columns && !this.aggregate) {
      const cur = this.nodes[Math.max(0, this.selected)];
      const target = cur.depth + columns;
      const i = this.nodes.findIndex((p) => p.depth === target);
      if (i >= 0) this.selected = i;
    } else {
      this.selected = (Math.max(-1, this.selected) + by + count) % count;
    }
    const item = this.aggregate ? this.groups[this.selected] : this.selected;
    this.hover = item;
    const p = this.aggregate ? item : this.nodes[item];
    const { k } = this.view;
    this.view.x = this.canvas.clientWidth / 2 - (p.x + 75) * k;
    this.view.y = this.canvas.clientHeight / 2 - (p.y + 10) * k;
    this.showTip(item, this.canvas.clientWidth / 2, this.canvas.clientHeight / 2);
    this.draw();
  }
}

// ---------------------------------------------------------------------------------------

window.addEventListener('hashchange', render);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && parseRoute().view === 'runs') renderRuns();
});
render();
