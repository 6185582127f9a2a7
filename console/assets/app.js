// The fleetconf console: one page over /api/v1 (docs/console.md). Every value that came from the network
// (host names, client ids, push messages) reaches the page through textContent, never as markup.
'use strict';

const state = { csrf: null, views: {}, series: {}, view: 'fleet', source: null, leaseQuery: '', leaseTimer: null };
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'style') Object.assign(e.style, v);  // CSSOM: allowed by the page's Content-Security-Policy
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function toast(text) {
  const t = $('#toast');
  t.textContent = text;
  t.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('shown'), 4000);
}

async function api(path, body) {
  const opts = { credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.method = 'POST';
    opts.headers['Content-Type'] = 'application/json';
    if (state.csrf) opts.headers['X-CSRF-Token'] = state.csrf;
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let j = {};
  try { j = await r.json(); } catch (e) { j = {}; }
  if (!r.ok) {
    if (r.status === 401 && path !== '/api/v1/login') showLogin();
    throw new Error(j.error || r.status + ' ' + r.statusText);
  }
  return j;
}

// An action: confirmed by the operator, posted with the CSRF token, its result shown.
async function act(name, args, question) {
  if (!window.confirm(question)) return null;
  try {
    const r = await api('/api/v1/actions/' + name, Object.assign({ confirm: true }, args));
    toast(r.message || 'done');
    return r;
  } catch (e) {
    toast('refused: ' + e.message);
    return null;
  }
}

function ago(t, now) {
  if (!t) return '—';
  const s = Math.max(0, now - t);
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 16);
}
function left(t, now) {
  const s = t - now;
  if (s <= 0) return 'expired';
  if (s < 120) return s + ' s left';
  if (s < 7200) return Math.floor(s / 60) + ' min left';
  return Math.floor(s / 3600) + ' h left';
}
function nowS() { return Math.floor(Date.now() / 1000); }
function bytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1048576).toFixed(1) + ' MiB';
}

// ---- views ----

function renderFleet() {
  const f = state.views.fleet;
  if (!f) return;
  const now = nowS();
  const body = $('#fleet-table tbody');
  const rows = f.unikernels.map((u) => {
    const lease = u.lease
      ? el('span', {}, u.lease.state, ' ', el('span', { class: 'muted' }, u.lease.state === 'bound' ? left(u.lease.expires, now) : ''))
      : el('span', { class: 'muted' }, u.dhcp ? 'none' : 'static');
    const push = u.push
      ? el('span', { class: u.push.result === 'accepted' ? 'accepted' : 'refused', title: u.push.reason || '' },
        u.push.result, ' by ', u.push.credential, ' ', el('span', { class: 'muted' }, ago(u.push.time, now)),
        u.push.reason ? el('div', { class: 'muted' }, u.push.reason) : null)
      : '—';
    const fetch = u.fetch ? el('span', {}, ago(u.fetch.time, now), ' ', el('span', { class: 'muted' }, u.fetch.transport)) : '—';
    const note = u.notification ? el('span', { class: u.notification.ok ? 'accepted' : 'refused' }, u.notification.result, ' ',
      el('span', { class: 'muted' }, ago(u.notification.time, now))) : '—';
    const routes = u.routes.map((r) => el('div', { class: r.ok ? '' : 'refused' }, r.host, ' → ', r.actual || 'none',
      r.ok ? '' : ' (lease: ' + (r.expected || 'none') + ')'));
    const buttons = [];
    if (u.git) buttons.push(el('button', { class: 'small', 'data-action': 'token-rotate', onclick: () => rotate(u.name) }, 'Rotate token'));
    if (u.lease && u.lease.state === 'bound')
      buttons.push(el('button', { class: 'small', 'data-action': 'lease-release',
        onclick: () => act('lease-release', { address: u.address }, 'Release the lease of ' + u.name + ' (' + u.address + ')?') }, 'Release lease'));
    return el('tr', { 'data-name': u.name, class: u.routes_match ? '' : 'mismatch' },
      el('td', {}, el('span', { class: 'mark ' + u.health, title: u.health_detail })),
      el('td', { class: 'name' }, u.name, u.routes_match ? '' : el('div', { class: 'badge' }, 'routes do not match the lease')),
      el('td', { class: 'mac' }, u.mac, u.mac_derived ? el('span', { class: 'badge', title: 'derived as Albatross does' }, 'derived') : ''),
      el('td', { class: 'address' }, u.address || '—'),
      el('td', { class: 'lease' }, lease),
      el('td', {}, u.last_dhcp ? ago(u.last_dhcp, now) : '—'),
      el('td', { class: 'fetch' }, fetch),
      el('td', { class: 'push' }, push),
      el('td', {}, note),
      el('td', { class: 'routes' }, routes),
      el('td', {}, buttons));
  });
  body.replaceChildren(...rows);
  const bad = f.unikernels.filter((u) => u.health !== 'ok').length;
  $('#fleet-summary').textContent = f.unikernels.length + ' unikernels, ' + bad + ' need attention';
}

async function rotate(name) {
  const r = await act('token-rotate', { unikernel: name }, 'Rotate the git token of ' + name + '? The old one stays valid for an hour.');
  if (!r) return;
  $('#secret-text').textContent = 'New git token of ' + name + ' (user ' + name + '):';
  $('#secret-value').textContent = r.token;
  $('#secret-dialog').showModal();
}

function renderNetworks() {
  const n = state.views.networks;
  if (!n) return;
  const blocks = [];
  for (const net of n.networks) {
    blocks.push(el('h3', {}, net.name, ' ', el('span', { class: 'muted' }, net.subnet)));
    for (const p of net.pools) {
      const pct = (x) => (p.size ? (100 * x) / p.size : 0) + '%';
      blocks.push(el('div', { class: 'pool', 'data-pool': p.first + '-' + p.last },
        el('div', {}, p.first, '–', p.last, ' ', el('span', { class: 'muted' },
          p.bound + ' bound, ' + p.offered + ' offered, ' + p.declined + ' declined, ' + p.free + ' free of ' + p.size)),
        el('div', { class: 'bar' },
          el('span', { class: 'bound', style: { width: pct(p.bound) } }),
          el('span', { class: 'offered', style: { width: pct(p.offered) } }),
          el('span', { class: 'declined', style: { width: pct(p.declined) } }),
          el('span', { class: 'free', style: { width: pct(p.free) } }))));
    }
  }
  $('#pools').replaceChildren(...blocks);
  loadLeases();
}

async function loadLeases() {
  if (state.view !== 'networks') return;
  let r;
  try {
    r = await api('/api/v1/leases?limit=500&q=' + encodeURIComponent(state.leaseQuery));
  } catch (e) { return; }
  const now = r.now;
  const rows = r.leases.map((l) => {
    const release = l.state === 'bound' || l.state === 'offered'
      ? el('button', { class: 'small', onclick: () => act('lease-release', { address: l.address }, 'Release the lease of ' + l.address + '?') }, 'Release')
      : '';
    return el('tr', { 'data-address': l.address },
      el('td', {}, l.address), el('td', {}, l.mac), el('td', {}, l.client_id), el('td', { class: 'hostname' }, l.hostname),
      el('td', {}, l.state), el('td', {}, left(l.expires, now)), el('td', {}, l.network), el('td', {}, release));
  });
  $('#lease-table tbody').replaceChildren(...rows);
}

function renderRepositories() {
  const r = state.views.repositories;
  if (!r) return;
  const now = nowS();
  const rows = r.repositories.map((x) => el('tr', { 'data-name': x.name },
    el('td', {}, x.name), el('td', {}, x.branch), el('td', { class: 'head' }, x.head ? x.head.slice(0, 12) : '—'),
    el('td', {}, bytes(x.size_bytes)), el('td', {}, x.fetches, x.last_fetch ? ' (last ' + ago(x.last_fetch, now) + ')' : ''),
    el('td', {}, x.audit.map((a) => el('div', {}, ago(a.time, now), ' ', a.event || a.result, ' ',
      el('span', { class: 'muted' }, a.credential || a.by || '', ' ', a.detail || ''))))));
  $('#repo-table tbody').replaceChildren(...rows);
}

// One route form per device, made once and kept across re-renders: a change on the device (every route, every
// generation) redraws its view, and must not wipe what the operator is typing or take the focus away.
const routeForms = new Map();

function routeForm(device) {
  let form = routeForms.get(device);
  if (form) return form;
  const host = el('input', { placeholder: 'host name', required: true, maxlength: 253, class: 'route-host' });
  const addr = el('input', { placeholder: 'address', required: true, maxlength: 45, class: 'route-address' });
  const port = el('input', { placeholder: 'port', required: true, type: 'number', min: 1, max: 65535, class: 'route-port' });
  form = el('form', { class: 'route-add', onsubmit: async (e) => {
    e.preventDefault();
    const r = await act('route-add', { device, host: host.value, address: addr.value, port: Number(port.value) },
      'Route ' + host.value + ' to ' + addr.value + ':' + port.value + ' on ' + device + '?');
    if (r) form.reset();  // added: the form is ready for the next route (refused: kept, to correct)
  } }, host, addr, port, el('button', { type: 'submit' }, 'Add route'));
  routeForms.set(device, form);
  return form;
}

function renderDevices() {
  const d = state.views.devices;
  if (!d) return;
  const now = nowS();
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#devices form.route-add')
    ? document.activeElement : null;
  const blocks = d.devices.map((dev) => {
    const routes = el('table', { class: 'routes' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Host'), el('th', {}, 'Backend'), el('th', {}))),
      el('tbody', {}, dev.routes.map((r) => el('tr', { 'data-host': r.host }, el('td', {}, r.host), el('td', {}, r.address + ':' + r.port),
        el('td', {}, el('button', { class: 'small', onclick: () => act('route-remove', { device: dev.name, host: r.host },
          'Remove the route ' + r.host + ' from ' + dev.name + '?') }, 'Remove'))))));
    const form = routeForm(dev.name);
    const history = el('table', { class: 'history' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Generation'), el('th', {}, 'When'), el('th', {}, 'Who'), el('th', {}, 'Change'), el('th', {}))),
      el('tbody', {}, dev.history.map((h) => el('tr', {},
        el('td', {}, h.generation), el('td', {}, ago(h.time, now)), el('td', {}, h.by || '—'), el('td', {}, (h.what || []).join('; ')),
        el('td', {}, h.generation === dev.generation ? '' : el('button', { class: 'small', onclick: () => act('rollback',
          { device: dev.name, generation: h.generation }, 'Roll ' + dev.name + ' back to generation ' + h.generation + '?') }, 'Roll back'))))));
    return el('div', { class: 'device', 'data-device': dev.name },
      el('h3', {}, dev.name, ' ', el('span', { class: 'muted' }, 'generation ' + dev.generation + ', ' + ago(dev.time, now))),
      routes, form, el('h4', {}, 'History'), history);
  });
  $('#devices').replaceChildren(...blocks);
  if (focused && focused.isConnected) focused.focus();
}

const CHARTS = [['dhcp_acks', 'DHCP exchanges/s'], ['git_fetches', 'git fetches/s'], ['git_pushes', 'git pushes'], ['route_changes', 'route changes']];

function renderActivity() {
  const row = el('div', { class: 'charts-row' }, CHARTS.map(([key, title]) => {
    const v = state.series[key] || [];
    const w = 360, h = 80, max = Math.max(1, ...v);
    const pts = v.map((y, i) => ((i * w) / Math.max(1, v.length - 1)).toFixed(1) + ',' + (h - (y * h) / max).toFixed(1)).join(' ');
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('width', w); svg.setAttribute('height', h); svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', pts);
    svg.append(line);
    const sum = v.reduce((a, b) => a + b, 0);
    return el('div', { class: 'chart', 'data-series': key }, el('div', {}, title, ' ', el('span', { class: 'muted' },
      'now ' + (v.length ? v[v.length - 1] : 0) + ', peak ' + Math.max(0, ...v) + ', hour total ' + sum)), svg);
  }));
  $('#charts').replaceChildren(row);
}

function renderAudit() {
  const a = state.views.audit || [];
  const now = nowS();
  $('#audit-table tbody').replaceChildren(...a.slice().reverse().map((x) => el('tr', {},
    el('td', {}, ago(x.time, now)), el('td', {}, x.user), el('td', {}, x.action), el('td', {}, JSON.stringify(x.args)),
    el('td', { class: x.result === 'ok' ? 'accepted' : 'refused' }, x.result), el('td', {}, x.message))));
}

const RENDER = { fleet: renderFleet, networks: renderNetworks, repositories: renderRepositories, devices: renderDevices, audit: renderAudit };

// ---- live stream ----

function connect() {
  if (state.source) state.source.close();
  const es = new EventSource('/api/v1/events');
  state.source = es;
  for (const name of Object.keys(RENDER)) {
    es.addEventListener(name, (e) => {
      state.views[name] = JSON.parse(e.data);
      RENDER[name]();
    });
  }
  es.addEventListener('activity', (e) => {
    const s = JSON.parse(e.data);
    for (const [k, v] of Object.entries(s.values)) {
      const arr = state.series[k] || (state.series[k] = []);
      arr.push(v);
      if (arr.length > 3600) arr.shift();
    }
    if (state.view === 'activity') renderActivity();
  });
  es.onopen = () => { $('#live').textContent = 'live'; $('#live').className = 'badge live'; };
  es.onerror = async () => {
    $('#live').textContent = 'reconnecting'; $('#live').className = 'badge down';
    try {
      const s = await api('/api/v1/session');
      if (!s.authenticated) { es.close(); showLogin(); }
    } catch (e) { /* the server is away: EventSource retries */ }
  };
}

async function loadActivity() {
  try {
    const a = await api('/api/v1/activity');
    state.series = a.series;
  } catch (e) { /* shown when the stream brings samples */ }
}

function show(view) {
  state.view = view;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.view === view);
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== 'view-' + view;
  if (view === 'activity') renderActivity();
  if (view === 'networks') loadLeases();
}

function showLogin() {
  $('#login').hidden = false;
  for (const s of document.querySelectorAll('.view')) s.hidden = true;
  $('#tabs').hidden = true;
  $('#logout').hidden = true;
}

async function enter(session) {
  state.csrf = session.csrf;
  $('#login').hidden = true;
  $('#tabs').hidden = false;
  $('#user').textContent = session.user ? session.user : 'local (no login)';
  $('#logout').hidden = !session.user;
  show(state.view);
  await loadActivity();
  connect();
}

async function start() {
  for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => show(b.dataset.view));
  $('#lease-search').addEventListener('input', (e) => {
    state.leaseQuery = e.target.value;
    clearTimeout(state.leaseTimer);
    state.leaseTimer = setTimeout(loadLeases, 250);
  });
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('#login-error').textContent = '';
    try {
      const r = await api('/api/v1/login', { user: $('#login-user').value, password: $('#login-password').value });
      $('#login-password').value = '';
      await enter({ csrf: r.csrf, user: r.user });
    } catch (err) {
      $('#login-error').textContent = err.message;
    }
  });
  $('#logout').addEventListener('click', async () => {
    try { await api('/api/v1/logout', {}); } catch (e) { /* gone already */ }
    if (state.source) state.source.close();
    showLogin();
  });
  setInterval(() => { if (state.view === 'fleet') renderFleet(); }, 1000);  // time left, time ago
  const s = await api('/api/v1/session');
  if (s.authenticated) await enter(s);
  else showLogin();
}

document.addEventListener('DOMContentLoaded', start);
