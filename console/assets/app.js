// Switchyard web console: a small client of the management API (docs/management-api.md).
// No framework, no build step. The page runs under CSP `default-src 'self'`, so the DOM is
// built with createElement/textContent only (server data is untrusted text) and every
// handler is attached from here.
'use strict';
(() => {
  const API = '/api/v1';
  const RANK = { viewer: 0, operator: 1, admin: 2 };
  const DASH = '–';
  const S = {
    me: null,          // {name, role} of the signed-in operator
    overview: null,    // the latest overview (live stream or GET /overview)
    source: null,      // the EventSource of /live
    live: 'off',       // live | connecting | reconnecting | off
    lastEvent: 0,      // when the stream last sent an overview
    polling: false,
    gen: 0,            // render generation: an answer for an older page must not paint
    view: null,        // {update(overview), poll} of the page on screen, for live updates
    keepNotice: false, // a navigation made by an action keeps the action's notice
    newToken: null,    // an added operator's token, shown once
    newSecret: null,   // an added service's secret, shown once
    draft: null,       // what an add form held when its call was refused, to fill it again
    newCredential: null, // a plugin's new secret, shown once on its page
    closeDialog: null, // closes the open dialog (a navigation does, so it cannot act on another page)
    wasDown: false,    // the live stream lost the server: when it is back, stale pages are read again
    lastTenant: '',    // the tenant of the last operation call, offered again
    navGen: 0,         // the generation of a new page not painted yet (its first paint closes dialogs)
  };
  const $ = (sel, root = document) => root.querySelector(sel);
  const main = $('#main');
  const enc = encodeURIComponent;

  // ---- DOM helpers -------------------------------------------------------------------------

  // h('a', {href, class, 'data-x', onclick}, ...children): strings become text nodes, never HTML.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    return add(el, kids);
  }
  function add(el, kids) {
    for (const k of [kids].flat(Infinity)) {
      if (k != null && k !== false) el.append(k instanceof Node ? k : String(k));
    }
    return el;
  }
  const list = (lines, cls) => (lines && lines.length ? h('ul', { class: cls }, lines.map((l) => h('li', null, l))) : null);
  const empty = (...kids) => h('div', { class: 'empty' }, kids);
  const section = (title, ...kids) => h('section', { class: 'card' }, h('h2', null, title), kids);
  const link = (href, ...kids) => h('a', { href }, kids);
  const btn = (label, attrs, onclick) => h('button', Object.assign({ type: 'button', onclick }, attrs), label);

  // Replace a cell's content only when it changed, so live updates keep focus and selection.
  function setCell(cell, kids) {
    const tmp = add(document.createElement('div'), kids);
    if (tmp.innerHTML === cell.innerHTML) return; // read-only comparison of our own nodes
    const focused = cell.contains(document.activeElement);
    cell.replaceChildren(...tmp.childNodes);
    if (focused) { const f = cell.querySelector('a,button,input'); if (f) f.focus(); }
  }

  // cols: [field, label, render(row), numeric?]. Tables stack into cards on phones (CSS uses data-label).
  function table(cols, rows, rowAttrs, cls = 'stack') {
    return h('div', { class: 'table-wrap' }, h('table', { class: cls },
      h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c[3] ? 'num' : null }, c[1])))),
      h('tbody', null, rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : null,
        cols.map((c) => h('td', { 'data-field': c[0], 'data-label': c[1], class: c[3] ? 'num' : null }, c[2](r))))))));
  }
  function dl(pairs) {
    return h('dl', { class: 'fields' }, pairs.filter(Boolean).map(([field, label, value]) =>
      h('div', { class: 'field' }, h('dt', null, label), h('dd', { 'data-field': field }, value))));
  }

  // ---- formatting --------------------------------------------------------------------------

  const num = (v) => (v == null ? DASH : String(v));
  const rate = (v, digits) => (v == null ? DASH : Number(v).toFixed(digits) + '/s');
  const human = (s) => String(s).replace(/_/g, ' ');
  function text(v) {
    if (v == null) return DASH;
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    if (typeof v !== 'object') return String(v);
    if (Array.isArray(v) && v.every((x) => x === null || typeof x !== 'object')) return v.join(', ');
    return JSON.stringify(v);
  }
  function when(iso) {
    if (!iso) return DASH;
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }
  const time = (iso) => (iso ? h('time', { datetime: iso, title: iso }, when(iso)) : DASH);
  function dur(secs) {
    if (secs == null) return DASH;
    const s = Math.max(0, Math.round(secs)), d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d ? `${d}d ${hr}h` : hr ? `${hr}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
  }
  const ago = (secs) => (secs == null ? DASH : dur(secs) + ' ago');

  const STATE_COLOR = { enabled: 'green', disabled: 'grey', pending_approval: 'amber', failed: 'red' };
  const CIRCUIT_COLOR = { closed: 'green', 'half-open': 'amber', open: 'red' };
  const badge = (color, label, attrs) => h('span', Object.assign({ class: 'badge ' + color }, attrs), label);
  const stateBadge = (state, title) => badge(STATE_COLOR[state] || 'grey', human(state || 'unknown'), { 'data-state': state, title });
  const circuitBadge = (c) => (c == null ? DASH : badge(CIRCUIT_COLOR[c] || 'grey', human(c), { 'data-circuit': c }));
  // pending_upgrade is the version waiting (or an object naming it): read both.
  const upgradeTo = (pu) => (pu == null ? null : typeof pu === 'object' ? pu.version || pu.to || JSON.stringify(pu) : String(pu));
  const tenants = (p) => (p.all_tenants || p.tenants == null ? 'all' : p.tenants.length ? p.tenants.join(', ') : 'none');
  const can = (role) => !!S.me && (RANK[S.me.role] ?? -1) >= RANK[role];

  // ---- API ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }
  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { 'X-Switchyard-Console': '1', Accept: 'application/json' } };
    // A File or Blob goes as it is (a package's bytes); anything else as JSON.
    if (body instanceof Blob) { init.headers['Content-Type'] = 'application/octet-stream'; init.body = body; }
    else if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
    let res;
    try { res = await fetch(API + path, init); } catch { throw new ApiError(0, 'network', 'Cannot reach the console server'); }
    const raw = await res.text().catch(() => '');
    let data = null;
    try { data = raw ? JSON.parse(raw) : null; } catch { /* not JSON: e.g. a proxy's error page */ }
    if (!res.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(res.status, e.code || 'http.' + res.status, e.message || `${res.status} ${res.statusText}`.trim());
    }
    return data;
  }

  // ---- errors and notices ------------------------------------------------------------------

  function clearError() { const box = $('#error'); box.hidden = true; box.replaceChildren(); delete box.dataset.network; }
  function showError(message, code, detail, retry) {
    const box = $('#error');
    delete box.dataset.network;
    box.replaceChildren(
      h('div', { class: 'msg' }, h('strong', { class: 'error-message' }, message), ' ',
        code ? h('code', { class: 'error-code' }, code) : null,
        detail && detail !== message ? h('div', { class: 'detail' }, detail) : null),
      h('div', { class: 'msg-buttons' },
        retry ? btn('Retry', { 'data-action': 'retry' }, () => { clearError(); retry(); }) : null,
        btn('×', { class: 'ghost', 'data-action': 'dismiss-error', 'aria-label': 'Dismiss error' }, clearError)));
    box.hidden = false;
  }
  // what: the verb phrase for a refusal ("approve plugins"); retry: offered when the server is unreachable.
  function fail(err, what, retry) {
    if (!(err instanceof ApiError)) { console.error(err); return showError(String((err && err.message) || err), 'console.bug'); }
    if (err.status === 401) return signedOut('Your session ended. Sign in again.', true);
    if (err.status === 403) return showError(`Your role (${S.me ? S.me.role : 'unknown'}) may not ${what}.`, err.code, err.message);
    if (err.status === 0) { showError('Cannot reach the console server.', null, 'Check that switchyard console is running, then retry.', retry || (() => route())); $('#error').dataset.network = '1'; return; }
    return showError(err.message, err.code);
  }
  function notice(kids) {
    const n = $('#notice');
    n.replaceChildren(h('div', { class: 'notice-body' }, kids),
      btn('×', { class: 'ghost', 'data-action': 'dismiss-notice', 'aria-label': 'Dismiss' }, () => n.replaceChildren()));
  }
  // An Outcome: message (lines kept: CSS pre-line), then what the plugin may now do, what else
  // was done, then warnings. Other answers: their fields.
  function outcome(o) {
    if (!o || typeof o !== 'object') return [h('p', null, 'Done.')];
    const msg = o.message || Object.entries(o).filter(([, v]) => v === null || typeof v !== 'object').map(([k, v]) => `${human(k)}: ${text(v)}`).join(', ') || 'Done.';
    return [h('p', { class: o.changed === false ? 'unchanged' : null }, msg), list(o.rights, 'rights'), list(o.also, 'also'), list(o.warnings, 'warnings')];
  }

  // ---- dialog ------------------------------------------------------------------------------

  // An in-page confirmation. Resolves undefined on cancel, else read(form) (true without read);
  // read may throw a message, shown in the dialog, to keep it open. With submit(answer), the
  // dialog stays open while it runs: it returns a message to stay open with (what was typed
  // kept), or nothing to close (resolving true).
  function ask({ title, body = [], confirm = 'Confirm', danger = false, read, submit }) {
    return new Promise((resolve) => {
      const dlg = $('#dialog'), page = $('#page'), before = document.activeElement;
      let busy = false, closed = false;
      const err = h('p', { class: 'dialog-error', role: 'alert' });
      const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', 'data-action': 'confirm' }, confirm);
      const cancel = btn('Cancel', { 'data-action': 'cancel' }, () => close(undefined));
      const form = h('form', { class: 'dialog-box', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'dialog-title', novalidate: true },
        h('h2', { id: 'dialog-title' }, title), h('div', { class: 'dialog-body' }, body), err,
        h('div', { class: 'dialog-buttons' }, cancel, ok));
      const onKey = (e) => { if (e.key === 'Escape') { e.preventDefault(); close(undefined); } };
      function close(value, done) {
        if (closed) return; // closed already (by a navigation): a late answer changes nothing
        if (busy && !done) return; // a call under way: its answer closes the dialog or keeps it
        closed = true;
        if (S.closeDialog === forced) S.closeDialog = null;
        document.removeEventListener('keydown', onKey, true);
        dlg.hidden = true; dlg.replaceChildren(); dlg.onclick = null; page.inert = false;
        if (before && before.isConnected && before.focus) before.focus();
        resolve(value);
      }
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        if (busy) return;
        let value;
        try { value = read ? read(form) : true; } catch (m) { err.textContent = String(m); return; }
        if (!submit) return close(value);
        busy = true; ok.disabled = true; cancel.disabled = true; err.textContent = '';
        let kept;
        try { kept = await submit(value); } catch (m) { kept = String((m && m.message) || m); }
        busy = false; ok.disabled = false; cancel.disabled = false;
        if (closed) return;
        if (kept == null) return close(true, true);
        err.textContent = String(kept);
        // '' keeps the dialog open without a complaint (it shows an answer in its body).
        if (kept === '') ok.focus({ preventScroll: true }); else (form.querySelector(FIRST_FIELD) || ok).focus();
      });
      // A navigation closes it: what it would do is for the page it was opened on.
      const forced = () => close(undefined, true);
      if (S.closeDialog) S.closeDialog();
      S.closeDialog = forced;
      dlg.onclick = (e) => { if (e.target === dlg) close(undefined); }; // a click on the backdrop cancels
      document.addEventListener('keydown', onKey, true);
      dlg.replaceChildren(form); dlg.hidden = false; page.inert = true; // inert: focus stays in the dialog
      (form.querySelector(FIRST_FIELD) || ok).focus();
    });
  }
  const FIRST_FIELD = 'select, input:not([type="file"]), textarea';

  // Run calls one after another ([method, path, body]); show their outcomes; then after() on
  // success or a refresh of the page's data on a refusal.
  async function mutate(what, calls, after = () => route(true)) {
    const done = [];
    let error = null;
    for (const [method, path, body] of calls) {
      try { done.push(await api(method, path, body)); } catch (e) { error = e; break; }
    }
    if (done.length) notice(done.map(outcome));
    if (!error) return after(done);
    fail(error, what);
    if (error.status && error.status !== 401) route(true);
  }

  // ---- session -----------------------------------------------------------------------------

  function showSignIn(message, isError) {
    S.gen++; S.view = null;
    for (const id of ['#nav', '#who', '#live']) $(id).hidden = true;
    const input = h('input', { id: 'token-input', name: 'token', type: 'password', autocomplete: 'current-password', spellcheck: 'false', required: true });
    const submit = h('button', { id: 'sign-in', type: 'submit', class: 'primary' }, 'Sign in');
    const form = h('form', { class: 'card signin', 'aria-labelledby': 'signin-title' },
      h('h1', { id: 'signin-title' }, 'Sign in to Switchyard'),
      message ? h('p', { class: isError ? 'signin-error' : 'signin-message', role: isError ? 'alert' : 'status' }, message) : null,
      h('label', { for: 'token-input' }, 'Operator token'), input,
      h('p', { class: 'hint' }, 'An admin gives you one with ', h('code', null, 'switchyard operators add <name>'), '.'),
      submit);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return input.focus();
      submit.disabled = true;
      signIn(token);
    });
    main.replaceChildren(form);
    input.focus();
  }
  async function signIn(token) {
    try { S.me = await api('POST', '/session', { token }); } catch (e) {
      if (e.status === 0) return showSignIn('Cannot reach the console server. Try again in a moment.', true);
      if (e.status === 401 || e.status === 400) return showSignIn(`That token was not accepted: ${e.message}`, true);
      return showSignIn(`${e.message} (${e.code})`, true);
    }
    signedIn();
  }
  function signedIn() {
    clearError();
    $('#who-name').textContent = S.me.name;
    $('#who-role').textContent = S.me.role;
    $('#who').hidden = false; $('#nav').hidden = false;
    $('#nav-operators').hidden = !can('admin');
    $('#nav-install').hidden = !can('operator');
    startLive();
    route();
  }
  function signedOut(message, isError) {
    S.me = null; S.overview = null; S.newToken = null; S.newSecret = null; S.newCredential = null;
    if (S.closeDialog) S.closeDialog();
    stopLive(); clearError(); $('#notice').replaceChildren();
    showSignIn(message, isError);
  }
  async function signOut() {
    try { await api('DELETE', '/session'); } catch (e) { if (e.status === 0) return fail(e, 'sign out', signOut); }
    signedOut('You signed out.');
  }
  // The token of a link (`#/plugins?token=…` or `#token=…`) is taken out of the address at once.
  function takeToken() {
    const { parts, params } = parseHash();
    const token = params.get('token');
    if (token === null) return null;
    params.delete('token');
    const rest = params.toString();
    const hash = '#/' + (parts.length ? parts.map(enc).join('/') : 'plugins') + (rest ? '?' + rest : '');
    history.replaceState(null, '', location.pathname + location.search + hash);
    return token;
  }
  async function boot() {
    const token = takeToken();
    if (token !== null) return signIn(token);
    try { S.me = await api('GET', '/whoami'); } catch (e) {
      if (e.status === 401) return showSignIn();
      return fail(e, 'use the console', boot);
    }
    signedIn();
  }

  // ---- live view ---------------------------------------------------------------------------

  function setLive(state) {
    if (state === 'reconnecting') S.wasDown = true;
    S.live = state;
    const el = $('#live');
    el.hidden = state === 'off';
    el.dataset.state = state;
    $('#live-text').textContent = state === 'live' ? 'live' : state === 'connecting' ? 'connecting…' : 'reconnecting…';
  }
  function stopLive() {
    if (S.source) S.source.close();
    S.source = null;
    clearTimeout(S.liveRetry);
    setLive('off');
  }
  // EventSource cannot send our header; it sends the same-origin session cookie.
  function startLive() {
    stopLive();
    if (!window.EventSource) return;
    const es = new EventSource(API + '/live');
    S.source = es;
    S.lastEvent = Date.now();
    setLive('connecting');
    es.addEventListener('overview', (e) => {
      let o;
      try { o = JSON.parse(e.data); } catch { return; }
      S.lastEvent = Date.now();
      setLive('live');
      gotOverview(o);
      if (S.wasDown) backAgain();
    });
    es.addEventListener('error', () => {
      if (S.source !== es) return;
      setLive('reconnecting');
      // A refusal (401, 5xx) closes the stream for good: check the session, then start again.
      if (es.readyState === EventSource.CLOSED) { S.liveRetry = setTimeout(recheckLive, 5000); }
    });
  }
  // The server answers again after it could not be reached: a page left saying it could not be
  // loaded (or an error saying the server is unreachable) is read again by itself.
  function backAgain() {
    S.wasDown = false;
    const network = $('#error').dataset.network === '1';
    if (main.dataset.failed === '1' || network) { clearError(); route(true); }
  }
  async function recheckLive() {
    if (!S.me) return;
    try { await api('GET', '/whoami'); } catch (e) { if (e.status === 401) return signedOut('Your session ended. Sign in again.', true); }
    if (S.me) startLive();
  }
  function gotOverview(o) {
    if (!o || typeof o !== 'object') return;
    S.overview = o;
    setBadge((o.approvals || []).length);
    if (S.view && S.view.update) S.view.update(o);
  }
  function setBadge(n) {
    const b = $('#approvals-badge');
    b.textContent = String(n);
    b.hidden = !n;
    b.setAttribute('aria-label', `${n} waiting`);
  }
  // While the stream is down, a live page polls the overview; a stream silent for long
  // (a proxy holding it open) is started again.
  setInterval(async () => {
    if (!S.me) return;
    const quiet = Date.now() - S.lastEvent;
    if (S.source && quiet > 15000) { S.lastEvent = Date.now(); startLive(); }
    if (S.live !== 'live' && S.view && S.view.poll && !S.polling) {
      S.polling = true;
      try { gotOverview(await api('GET', '/overview')); } catch (e) { if (e.status === 401) signedOut('Your session ended. Sign in again.', true); }
      S.polling = false;
    }
  }, 5000);

  // ---- routing -----------------------------------------------------------------------------

  function parseHash() {
    let raw = location.hash.replace(/^#/, '');
    const q = raw.indexOf('?');
    let query = q >= 0 ? raw.slice(q + 1) : '';
    if (q >= 0) raw = raw.slice(0, q);
    if (raw.includes('=') && !raw.startsWith('/')) { query = raw + (query ? '&' + query : ''); raw = ''; } // `#token=…`
    const parts = raw.split('/').filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
    return { parts, params: new URLSearchParams(query) };
  }
  // Go to a hash, or refresh when already there (no hashchange then).
  function go(hash, keepNotice) {
    if (location.hash === hash) return route(true);
    S.keepNotice = !!keepNotice;
    location.hash = hash;
  }
  const query = (obj) => { const q = new URLSearchParams(); for (const [k, v] of Object.entries(obj)) if (v) q.set(k, v); const s = q.toString(); return s ? '?' + s : ''; };
  const current = (gen) => gen === S.gen && !!S.me;
  // Paint a page; refuse when the user moved on meanwhile.
  function paint(gen, ...kids) {
    if (!current(gen)) return false;
    // The first paint of a new page: a dialog opened from the last page while this one loaded
    // (its buttons were still on screen) goes, so it cannot act on what is no longer shown.
    if (gen === S.navGen) { S.navGen = 0; if (S.closeDialog) S.closeDialog(); }
    main.replaceChildren(...kids.flat(Infinity).filter(Boolean));
    main.dataset.gen = String(gen); // painted: no "Loading…" over it
    delete main.dataset.failed;
    return true;
  }
  function loadFailed(gen, err) {
    if (!current(gen)) return;
    fail(err, 'view this page', () => route(true));
    if (paint(gen, empty(h('p', null, 'This page could not be loaded.'), btn('Try again', { 'data-action': 'reload' }, () => { clearError(); route(true); })))) main.dataset.failed = '1';
  }

  const ROUTES = {
    plugins: (g, arg) => (arg ? pluginPage(g, arg) : pluginsPage(g)),
    approvals: (g) => approvalsPage(g),
    'dead-letters': (g, arg, params) => (arg ? deadLetterPage(g, arg) : deadLettersPage(g, params)),
    audit: (g, arg, params) => auditPage(g, params),
    operators: (g) => operatorsPage(g),
    catalog: (g) => catalogPage(g),
    trust: (g, arg, params) => trustPage(g, params),
    services: (g) => servicesPage(g),
    install: (g) => installPage(g),
    streams: (g) => streamsPage(g),
    events: (g, arg, params) => eventsPage(g, arg, params),
  };
  // refresh: the same page's data again, keeping what is on screen until it arrives.
  function route(refresh) {
    if (!S.me) return;
    const { parts, params } = parseHash();
    const name = parts[0] || 'plugins';
    const gen = ++S.gen;
    S.view = null;
    const nav = $('#nav');
    for (const a of nav.querySelectorAll('a')) {
      if (a.dataset.nav !== name) { a.removeAttribute('aria-current'); continue; }
      a.setAttribute('aria-current', 'page');
      // On a phone the nav is one line that scrolls sideways: bring the page's entry into view.
      if (nav.scrollWidth > nav.clientWidth) nav.scrollLeft = Math.max(0, a.offsetLeft - nav.offsetLeft - (nav.clientWidth - a.offsetWidth) / 2);
    }
    if (!refresh) {
      // A new page: no dialog of the last one stays open, and its messages go (but for the
      // notice of an action that navigated here).
      if (S.closeDialog) S.closeDialog();
      S.navGen = gen;
      clearError();
      if (!S.keepNotice) $('#notice').replaceChildren();
      S.keepNotice = false;
      if (name !== 'operators') S.newToken = null;
      if (name !== 'services') S.newSecret = null;
      if (!(name === 'plugins' && S.newCredential && parts[1] === S.newCredential.plugin)) S.newCredential = null;
      S.draft = null;
      // A new page starts at its top, not where the last one was scrolled to.
      window.scrollTo(0, 0);
      main.focus({ preventScroll: true });
      setTimeout(() => { if (gen === S.gen && main.dataset.gen !== String(gen)) main.replaceChildren(h('p', { class: 'loading' }, 'Loading…')); }, 200);
    }
    const page = ROUTES[name];
    if (!page) return paint(gen, empty(h('p', null, 'There is no such page.'), link('#/plugins', 'Go to the plugins')));
    Promise.resolve(page(gen, parts[1], params)).catch((e) => { console.error(e); showError(String(e && e.message), 'console.bug'); });
  }
  window.addEventListener('hashchange', () => {
    const token = takeToken();
    if (token !== null) return signIn(token);
    if (!S.me) return;
    route(); // clears the last page's messages (and closes its dialog)
  });

  // ---- plugins -----------------------------------------------------------------------------

  const PLUGIN_FIELDS = {
    id: ['Plugin', (p) => h('a', { href: '#/plugins/' + enc(p.id), title: p.description || null }, p.id)],
    version: ['Version', (p) => p.version || DASH],
    state: ['State', (p) => [stateBadge(p.state, p.failure ? text(p.failure) : null),
      upgradeTo(p.pending_upgrade) ? badge('amber', `upgrade to ${upgradeTo(p.pending_upgrade)} pending`, { class: 'badge amber upgrade' }) : null]],
    tenants: ['Tenants', tenants],
    instances: ['Instances', (p) => num(p.instances), true],
    circuit: ['Circuit', (p) => circuitBadge(p.circuit)],
    backlog: ['Backlog', (p) => num(p.backlog), true],
    under_way: ['Under way', (p) => num(p.under_way), true],
    throughput: ['Throughput', (p) => rate(p.throughput, 1), true],
    failures: ['Failures', (p) => (p.failures > 0 ? h('span', { class: 'bad' }, rate(p.failures, 2)) : rate(p.failures, 2)), true],
    dead_letters: ['Dead letters', (p) => h('a', { href: '#/dead-letters' + query({ plugin: p.id }), class: p.dead_letters > 0 ? 'bad' : null }, num(p.dead_letters)), true],
  };

  function pluginsView() {
    const tile = (label, value, href) => h('div', { class: 'tile' }, h('div', { class: 'tile-label' }, label),
      href ? h('a', { class: 'tile-value', href }, value) : h('div', { class: 'tile-value' }, value));
    const v = { plugins: h('span', { id: 'tile-plugins' }), approvals: h('span', { id: 'tile-approvals' }), dead: h('span', { id: 'tile-dead-letters' }), disp: h('span', { id: 'tile-dispatchers' }) };
    const tiles = h('div', { class: 'tiles' }, tile('Plugins', v.plugins), tile('Approvals waiting', v.approvals, '#/approvals'),
      tile('Dead letters', v.dead, '#/dead-letters'), tile('Dispatchers', v.disp));
    const cols = Object.entries(PLUGIN_FIELDS);
    const tbody = h('tbody');
    const wrap = h('div', { class: 'table-wrap' }, h('table', { class: 'stack plugins', id: 'plugins-table' },
      h('thead', null, h('tr', null, cols.map(([, [label, , n]]) => h('th', { scope: 'col', class: n ? 'num' : null }, label)))), tbody));
    const none = empty(h('p', null, 'No plugins are registered yet.'), h('p', { class: 'hint' }, 'Install one with ', h('code', null, 'switchyard plugins install'), '.'));
    const root = [h('div', { class: 'page-head' }, h('h1', null, 'Plugins')), tiles, wrap, none];
    function update(o) {
      const plugins = (o.plugins || []).slice().sort((a, b) => String(a.id).localeCompare(String(b.id)));
      v.plugins.textContent = String(plugins.length);
      v.approvals.textContent = String((o.approvals || []).length);
      v.dead.textContent = num(o.dead_letters);
      v.disp.textContent = String((o.dispatchers || []).length);
      v.disp.title = (o.dispatchers || []).join(', ');
      wrap.hidden = !plugins.length; none.hidden = !!plugins.length;
      // Keyed rows: existing rows are updated in place, so scroll position and focus survive.
      const rows = new Map([...tbody.rows].map((r) => [r.dataset.plugin, r]));
      let prev = null;
      for (const p of plugins) {
        let tr = rows.get(p.id);
        if (tr) rows.delete(p.id);
        else tr = h('tr', { 'data-plugin': p.id }, cols.map(([f, [label, , n]]) => h('td', { 'data-field': f, 'data-label': label, class: n ? 'num' : null })));
        for (const td of tr.cells) setCell(td, PLUGIN_FIELDS[td.dataset.field][1](p));
        const want = prev ? prev.nextSibling : tbody.firstChild;
        if (want !== tr) tbody.insertBefore(tr, want);
        prev = tr;
      }
      for (const tr of rows.values()) tr.remove();
    }
    return { root, update };
  }

  async function pluginsPage(gen) {
    let o = S.overview;
    if (!o || S.live !== 'live') {
      try { o = await api('GET', '/overview'); } catch (e) { return loadFailed(gen, e); }
      gotOverview(o);
    }
    const view = pluginsView();
    if (!paint(gen, view.root)) return;
    view.update(S.overview || o);
    S.view = { update: view.update, poll: true };
  }

  const ACTIONS = {
    approve: { label: 'Approve', verb: 'approve', what: 'approve plugins', q: (id) => `Approve ${id}?`, body: { disabled: false }, primary: true },
    'approve-disabled': { label: 'Approve disabled', verb: 'approve', what: 'approve plugins', q: (id) => `Approve ${id} and leave it disabled?`, body: { disabled: true } },
    reject: { label: 'Reject', verb: 'reject', what: 'reject plugins', q: (id) => `Reject what ${id} waits for approval with?`, danger: true },
    enable: { label: 'Enable', verb: 'enable', what: 'enable plugins', q: (id) => `Enable ${id}?`, primary: true },
    disable: { label: 'Disable', verb: 'disable', what: 'disable plugins', q: (id) => `Disable ${id}?`, danger: true },
    rollback: { label: 'Roll back', verb: 'rollback', what: 'roll back plugins', q: (id) => `Roll back ${id}?` },
  };
  // ctx: what an approval grants, shown in its dialog so the operator sees what they accept:
  // the lines it asks for, or {asks, upgrade: {from, to}, beyond, manifest} for an upgrade.
  function actionButton(action, id, ctx) {
    const a = ACTIONS[action];
    return btn(a.label, { 'data-action': action, 'data-plugin': id, class: a.danger ? 'danger-outline' : a.primary ? 'primary' : null },
      () => pluginAction(action, id, ctx));
  }
  // What an upgrade waiting for approval asks for beyond what is approved now: the approvals
  // list says it (the detail only lists everything it asks for).
  async function upgradeBeyond(id, c) {
    if (Array.isArray(c.beyond)) return c.beyond;
    let found = ((S.overview && S.overview.approvals) || []).find((x) => x && x.plugin === id && x.kind === 'upgrade');
    if (!found || !Array.isArray(found.beyond)) {
      try { found = ((await api('GET', '/approvals')).approvals || []).find((x) => x.plugin === id && x.kind === 'upgrade'); } catch { found = null; }
    }
    if (found && Array.isArray(found.beyond)) return found.beyond;
    const approved = new Set(c.rights || []);
    return (c.asks || []).filter((l) => !approved.has(l)); // the nearest guess
  }
  async function pluginAction(action, id, ctx) {
    const a = ACTIONS[action];
    const c = Array.isArray(ctx) ? { asks: ctx } : ctx || {};
    const lines = c.asks;
    const body = [];
    let read, title = a.q(id);
    if (c.upgrade && (action === 'approve' || action === 'reject')) {
      const { from, to } = c.upgrade;
      if (action === 'reject') {
        title = `Reject the upgrade of ${id} to ${to}?`;
        body.push(h('p', null, `${id} keeps running ${from || 'the approved version'}.`));
      } else {
        title = `Approve the upgrade of ${id} from ${from || '?'} to ${to}?`;
        const at = location.hash;
        const beyond = await upgradeBeyond(id, c);
        if (location.hash !== at) return; // moved on meanwhile: no dialog over another page
        body.push(h('p', { 'data-field': 'upgrade' }, `It is an upgrade: ${id} runs ${from || '?'} now, and runs ${to} once approved.`),
          beyond.length ? [h('p', null, 'Beyond what is approved now, it asks to:'), list(beyond, 'beyond')]
            : h('p', { 'data-field': 'beyond' }, 'It asks for nothing beyond what is approved now.'),
          lines && lines.length ? h('details', null, h('summary', null, 'Everything it asks for'), list(lines, 'asks')) : null,
          c.manifest ? h('details', null, h('summary', null, `The manifest of ${to}`), h('pre', { class: 'manifest' }, c.manifest)) : null);
      }
    } else if (action.startsWith('approve') && lines && lines.length) body.push(h('p', null, 'It asks to:'), list(lines, 'asks'));
    if (action === 'rollback') {
      body.push(h('label', { for: 'rollback-to' }, 'Revision (optional)'),
        h('input', { id: 'rollback-to', type: 'text', inputmode: 'numeric', autocomplete: 'off', placeholder: 'the latest earlier version' }),
        h('p', { class: 'hint' }, 'Leave it empty to roll back to the latest earlier version; the history lists the revisions.'));
      read = (form) => {
        const v = $('#rollback-to', form).value.trim();
        if (!v) return {};
        if (!/^[0-9]+$/.test(v) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) throw 'A revision is a whole number, 1 or more (and below 2^53).';
        return { to: Number(v) };
      };
    }
    const answer = await ask({ title, body, confirm: a.label, danger: a.danger, read });
    if (answer === undefined) return;
    await mutate(a.what, [['POST', `/plugins/${enc(id)}/${a.verb}`, action === 'rollback' ? answer : a.body || {}]]);
  }
  function pluginActions(s, d) {
    if (!can('operator')) return [];
    const pending = s.state === 'pending_approval', upgrade = s.pending_upgrade != null;
    const lines = upgrade
      ? { asks: d.asks || [], rights: d.rights || [], manifest: d.pending_manifest, upgrade: { from: s.version, to: upgradeTo(s.pending_upgrade) } }
      : d.asks;
    const acts = [];
    if (pending || upgrade) acts.push('approve');
    if (pending) acts.push('approve-disabled');
    if (pending || upgrade) acts.push('reject');
    if (s.state === 'disabled' || s.state === 'failed') acts.push('enable');
    if (s.state === 'enabled' || s.state === 'failed') acts.push('disable');
    if (!pending) acts.push('rollback');
    return [...acts.map((a) => actionButton(a, s.id, lines)),
      btn('Upgrade…', { 'data-action': 'upgrade', 'data-plugin': s.id }, () => upgradeDialog(s)),
      can('admin') ? [
        btn('Issue secret…', { 'data-action': 'issue-credentials', 'data-plugin': s.id }, () => issueCredentials(s.id)),
        btn('Revoke secret…', { 'data-action': 'revoke-credentials', 'data-plugin': s.id, class: 'danger-outline' }, () => revokeCredentials(s.id)),
        btn('Remove…', { 'data-action': 'remove', 'data-plugin': s.id, class: 'danger-outline' }, () => removePlugin(s.id)),
      ] : null];
  }

  // ---- admin: remove a plugin, issue and revoke its secret ---------------------------------

  async function removePlugin(id) {
    const cascade = checkRow('cascade', 'Also remove the plugins that require it', '(they are removed first)', 'remove');
    let done = null;
    await ask({
      title: `Remove ${id}?`, confirm: 'Remove', danger: true,
      body: [h('p', null, `${id} is removed: its workers stop, its settings and secrets are forgotten and its secret is revoked. This cannot be undone.`),
        h('div', { class: 'checks' }, cascade.el),
        h('p', { class: 'hint' }, 'Without it, the removal is refused when other plugins require this one.')],
      read: () => ({ cascade: cascade.input.checked }),
      submit: async ({ cascade: all }) => {
        try { done = await api('DELETE', `/plugins/${enc(id)}?cascade=${all ? 'true' : 'false'}`); } catch (e) { return errorLine(e, 'remove plugins'); }
        return null;
      },
    });
    if (!done) return;
    notice(outcome(done));
    go('#/plugins', true);
  }
  async function issueCredentials(id) {
    let done = null;
    await ask({
      title: `Issue ${id} a new secret?`, confirm: 'Issue secret', danger: true,
      body: [h('p', null, `The secret ${id}'s workers use now stops working at once: they are refused until they are given the new one (as SWITCHYARD_PLUGIN_TOKEN).`),
        h('p', null, 'The new secret is shown once, on this page.')],
      submit: async () => {
        try { done = await api('POST', `/plugins/${enc(id)}/credentials`); } catch (e) { return errorLine(e, 'issue plugin secrets'); }
        return null;
      },
    });
    if (!done) return;
    S.newCredential = done.secret ? { plugin: id, secret: done.secret } : null;
    const said = String(done.message || `Issued ${id} a new secret.`);
    notice(h('p', null, said, /[.!]$/.test(said) ? '' : '.', S.newCredential ? ' Copy it now: it is not shown again.' : ''));
    route(true);
  }
  async function revokeCredentials(id) {
    const ok = await ask({ title: `Revoke ${id}'s secret?`, confirm: 'Revoke secret', danger: true,
      body: h('p', null, `Its workers are refused at once, until an admin issues a new secret.`) });
    if (ok === undefined) return;
    await mutate('revoke plugin secrets', [['DELETE', `/plugins/${enc(id)}/credentials`]], () => { S.newCredential = null; route(true); });
  }
  // The secret just issued, shown once, with a copy button.
  function credentialBox(id) {
    const t = S.newCredential;
    if (!t || t.plugin !== id || !t.secret) return null;
    const field = h('input', { id: 'plugin-secret', readonly: true, value: t.secret, 'aria-label': `Secret of ${id}`, spellcheck: 'false', autocomplete: 'off' });
    const copy = btn('Copy', { 'data-action': 'copy-plugin-secret', class: 'primary' }, async () => {
      try { await navigator.clipboard.writeText(t.secret); copy.textContent = 'Copied'; }
      catch { field.select(); copy.textContent = 'Selected: press Ctrl+C'; } // no clipboard outside a secure context
    });
    const box = h('section', { class: 'card token-box', id: 'plugin-secret-box' },
      h('h2', null, `New secret of ${id}`),
      h('p', { class: 'shown-once' }, h('strong', null, 'Shown only this once: '), 'copy it now. Give it to its workers as ',
        h('code', null, 'SWITCHYARD_PLUGIN_TOKEN'), ' over a safe channel; the earlier secret no longer works.'),
      h('div', { class: 'token-row' }, field, copy,
        btn('Done', { 'data-action': 'dismiss-plugin-secret', class: 'ghost' }, () => { S.newCredential = null; box.remove(); })));
    field.addEventListener('focus', () => field.select());
    return box;
  }

  // ---- a plugin's operations ---------------------------------------------------------------

  // A request or response type: {type, version} (or the text "type version") as type@version.
  function typeName(t) {
    if (t == null) return DASH;
    if (typeof t === 'object') {
      const name = t.type ?? t.name, v = t.version;
      return name != null ? (v != null ? `${name}@${v}` : String(name)) : JSON.stringify(t);
    }
    const m = /^(\S+)\s+(\S+)$/.exec(String(t));
    return m ? `${m[1]}@${m[2]}` : String(t);
  }
  function operationsSection(id, ops) {
    const operator = can('operator');
    return h('section', { class: 'card', 'data-section': 'operations' }, h('h2', null, 'Operations'),
      ops.length ? table([
        ['name', 'Operation', (o) => h('div', null, h('code', null, text(o.name)), o.description ? h('div', { class: 'setting-description' }, o.description) : null)],
        ['request', 'Request', (o) => h('code', { class: 'type' }, typeName(o.request))],
        ['response', 'Response', (o) => h('code', { class: 'type' }, typeName(o.response))],
        operator ? ['call', '', (o) => btn('Call…', { 'data-action': 'call-operation', 'data-operation': o.name, 'aria-label': `Call ${o.name}` }, () => callOperation(id, o))] : null,
      ].filter(Boolean), ops, (o) => ({ 'data-operation': o.name }), 'stack operations') : h('p', { class: 'none' }, 'It serves no operations.'));
  }
  // The answer of a call: {ok, response, attempts, took_ms} or {ok: false, error: {code, reason, …}}.
  function callAnswer(r) {
    const ms = (v) => (v == null ? DASH : `${Number(v) < 10 ? Number(v).toFixed(1) : Math.round(Number(v))} ms`);
    if (r && r.ok) {
      return h('div', { class: 'call-answer ok', 'data-ok': 'true' },
        h('p', null, h('strong', null, 'Answered'), ` in ${ms(r.took_ms)}`, r.attempts != null ? `, ${plural(r.attempts, 'attempt', 'attempts')}` : '',
          r.handled_ms != null ? ` (handled in ${ms(r.handled_ms)})` : '', '.'),
        h('pre', { 'data-field': 'response' }, JSON.stringify(r.response ?? null, null, 2)));
    }
    const e = (r && r.error) || {};
    return h('div', { class: 'call-answer failed', 'data-ok': 'false' },
      h('p', null, h('strong', null, 'Failed: '), h('code', { 'data-field': 'code' }, text(e.code)), e.status != null ? ` (${e.status})` : ''),
      e.reason ? h('p', { 'data-field': 'reason' }, e.reason) : null,
      e.retry_after_ms != null ? h('p', { class: 'hint' }, `Retry after ${ms(e.retry_after_ms)}.`) : null,
      h('details', null, h('summary', null, 'The whole answer'), h('pre', null, JSON.stringify(r, null, 2))));
  }
  const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
  async function callOperation(id, o) {
    const tenant = h('input', { id: 'call-tenant', name: 'tenant', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', required: true, placeholder: 'acme' });
    tenant.value = S.lastTenant || '';
    const data = h('textarea', { id: 'call-data', name: 'data', rows: 6, spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', placeholder: '{}' });
    data.value = '{}';
    const timeout = h('input', { id: 'call-timeout', name: 'timeout_ms', inputmode: 'numeric', autocomplete: 'off', placeholder: 'the operation’s own' });
    const answer = h('div', { class: 'call-result', 'data-field': 'call-result', 'aria-live': 'polite' });
    for (const i of [tenant, data, timeout]) i.addEventListener('input', () => answer.replaceChildren());
    await ask({
      title: `Call ${o.name} of ${id}`, confirm: 'Call',
      body: [
        o.description ? h('p', { class: 'hint' }, o.description) : null,
        h('p', null, 'Request ', h('code', null, typeName(o.request)), ', response ', h('code', null, typeName(o.response)), '.'),
        h('label', { for: 'call-tenant' }, 'Tenant'), tenant,
        h('label', { for: 'call-data' }, 'Request (JSON)'), data,
        h('label', { for: 'call-timeout' }, 'Timeout in ms (optional)'), timeout,
        h('p', { class: 'hint' }, 'Called as you (the operation must allow operators); recorded in the audit log.'),
        answer,
      ],
      read: () => {
        const t = tenant.value.trim();
        if (!t) { tenant.focus(); throw 'Give the tenant it is called for.'; }
        if (!TOKEN.test(t)) { tenant.focus(); throw 'A tenant is 1 to 64 letters, digits, - or _.'; }
        let value;
        try { value = JSON.parse(data.value.trim() || '{}'); } catch (x) { data.focus(); throw `The request is not valid JSON: ${x.message}`; }
        const body = { tenant: t, data: value };
        const ms = timeout.value.trim();
        if (ms) {
          if (!/^[0-9]+$/.test(ms) || Number(ms) < 1 || !Number.isSafeInteger(Number(ms))) { timeout.focus(); throw 'The timeout is a whole number of milliseconds, 1 or more.'; }
          body.timeout_ms = Number(ms);
        }
        return body;
      },
      submit: async (body) => {
        answer.replaceChildren(h('p', { class: 'muted' }, 'Calling…'));
        let r;
        try { r = await api('POST', `/plugins/${enc(id)}/operations/${enc(o.name)}`, body); } catch (e) {
          answer.replaceChildren();
          return errorLine(e, 'call operations');
        }
        S.lastTenant = body.tenant;
        answer.replaceChildren(callAnswer(r));
        const cancel = $('#dialog [data-action="cancel"]');
        if (cancel) cancel.textContent = 'Close';
        setTimeout(() => answer.scrollIntoView({ block: 'nearest' }), 0);
        return ''; // open, with the answer: call again, or close
      },
    });
  }

  // ---- a plugin's settings -----------------------------------------------------------------

  // A value as TOML text, what `switchyard settings set NAME=…` reads after the `=`, so that a
  // value shown in the editor and saved unchanged is the same value. A TOML date-time comes
  // through JSON as {"$__toml_private_datetime": "…"}.
  const DATETIME = '$__toml_private_datetime';
  // A TOML basic string: JSON's escapes are TOML's, but for DEL, which TOML wants escaped.
  const tomlString = (s) => JSON.stringify(String(s)).replace(/\x7f/g, '\\u007f');
  function tomlText(v) {
    if (v == null) return '';
    if (typeof v === 'string') return tomlString(v);
    if (typeof v !== 'object') return String(v);
    if (Array.isArray(v)) return '[' + v.map(tomlText).join(', ') + ']';
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === DATETIME) return String(v[DATETIME]);
    if (!keys.length) return '{}';
    return '{ ' + keys.map((k) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : tomlString(k)) + ' = ' + tomlText(v[k])).join(', ') + ' }';
  }
  const settingType = (x) => String(x.type ?? x.kind ?? 'any');
  // The text the editor starts with: a string setting's text as it is, anything else as TOML.
  function settingText(x) {
    const v = x.value, type = settingType(x);
    if (v == null) return '';
    if (typeof v === 'string' && type === 'string') return v;
    if (typeof v === 'number' && type === 'float' && /^-?[0-9]+$/.test(String(v))) return String(v) + '.0';
    return tomlText(v);
  }
  // A value in the table: text as it is, the rest as TOML; long ones shortened (the editor has it all).
  function settingShown(x) {
    const t = typeof x.value === 'string' ? x.value : settingText(x);
    return t.length > 200 ? t.slice(0, 200) + '…' : t;
  }
  // What the API is sent for the typed text (it reads a string as the CLI reads the text after
  // `NAME=`): a boolean as JSON; a string setting's text as a TOML string, so that it is set
  // exactly as typed (quotes, `true` or `5` included); anything else as the TOML typed.
  function settingBody(x, raw) {
    const type = settingType(x);
    if (type === 'boolean') {
      if (raw !== 'true' && raw !== 'false') throw 'Choose true or false.';
      return raw === 'true';
    }
    if (type === 'string') return tomlString(raw);
    if (!raw.trim()) throw 'Type a value, written as in TOML (or unset the setting).';
    return raw.trim();
  }
  const SETTING_HINTS = {
    string: 'Set exactly as typed.',
    integer: 'A whole number, e.g. 5.',
    float: 'A number, e.g. 1.5.',
    array: 'Written as in TOML, e.g. ["a", "b"] or [1, 2].',
    table: 'Written as in TOML, e.g. { key = "value", n = 2 }.',
  };

  // The settings section of plugin `id`: rows from GET …/settings (or the detail's, when that
  // could not be read); an editor for a plain setting (operators), a dialog for a secret
  // (admins). The open editor and what is typed in it live in S.draft, so that a reload of the
  // page (after a refusal, or a change by another operator) shows them again.
  function settingsSection(id, sets, problem) {
    const operator = can('operator'), admin = can('admin');
    const editorBox = h('div', { class: 'setting-editor-box' });
    const draft = () => (S.draft && S.draft.page === 'setting' && S.draft.plugin === id ? S.draft : null);

    function openEditor(x, typed, focus = true) {
      const type = settingType(x);
      S.draft = { page: 'setting', plugin: id, name: x.name, value: typed };
      let input;
      if (type === 'boolean') {
        input = h('select', { id: 'setting-value', name: 'value' },
          typed !== 'true' && typed !== 'false' ? h('option', { value: '' }, 'choose…') : null,
          h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
      } else if (type === 'array' || type === 'table' || typed.includes('\n') || typed.length > 80) {
        input = h('textarea', { id: 'setting-value', name: 'value', rows: Math.min(8, Math.max(3, typed.split('\n').length + 1)) });
      } else {
        input = h('input', { id: 'setting-value', name: 'value', type: 'text' });
      }
      for (const [k, v] of [['spellcheck', 'false'], ['autocomplete', 'off'], ['autocapitalize', 'off']]) if (input.tagName !== 'SELECT') input.setAttribute(k, v);
      input.value = typed;
      const err = h('p', { class: 'editor-error', role: 'alert' });
      input.addEventListener('input', () => { const d = draft(); if (d && d.name === x.name) d.value = input.value; err.textContent = ''; });
      input.addEventListener('change', () => { const d = draft(); if (d && d.name === x.name) d.value = input.value; });
      const close = () => { S.draft = null; editorBox.replaceChildren(); const b = $(`[data-action="edit-setting"][data-setting="${CSS.escape(x.name)}"]`, main); if (b) b.focus(); };
      const unset = x.source === 'set' ? btn('Unset', { 'data-action': 'unset-setting', 'data-setting': x.name, class: 'danger-outline' }, async () => {
        const ok = await ask({ title: `Unset ${x.name} of ${id}?`, danger: true, confirm: 'Unset',
          body: [h('p', null, 'It goes back to the manifest’s default, or to no value when the manifest gives none. Running workers receive the change at once.'),
            x.required ? h('p', null, 'It is required: an enabled plugin refuses losing it, and a disabled one cannot be enabled without a value.') : null] });
        if (ok === undefined) return;
        await mutate('change settings', [['POST', `/plugins/${enc(id)}/settings`, { unset: [x.name] }]], () => { S.draft = null; route(true); });
      }) : null;
      const form = h('form', { class: 'setting-editor', id: 'setting-editor', 'data-setting': x.name, novalidate: true },
        h('h3', null, 'Edit ', h('code', null, x.name)),
        x.description ? h('p', { class: 'hint' }, x.description) : null,
        h('label', { for: 'setting-value' }, `Value (${type}${x.required ? ', required' : ''})`),
        input,
        SETTING_HINTS[type] ? h('p', { class: 'hint' }, SETTING_HINTS[type]) : type !== 'boolean' ? h('p', { class: 'hint' }, 'Written as in TOML (text that is not TOML is taken as text).') : null,
        err,
        h('div', { class: 'actions' },
          h('button', { type: 'submit', class: 'primary', 'data-action': 'save-setting', 'data-setting': x.name }, 'Save'),
          unset,
          btn('Cancel', { class: 'ghost', 'data-action': 'cancel-setting', 'data-setting': x.name }, close)));
      form.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); close(); } });
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const raw = input.value;
        let body;
        try { body = settingBody(x, raw); } catch (m) { err.textContent = String(m); input.focus(); return; }
        const shown = type === 'string' ? (raw === '' ? h('span', { class: 'muted' }, '(empty text)') : raw) : String(body);
        const ok = await ask({ title: `Change ${x.name} of ${id}?`, confirm: 'Save',
          body: [h('p', null, 'Set it to:'), h('pre', { class: 'setting-preview' }, shown),
            h('p', { class: 'hint' }, 'Running workers receive the change at once.')] });
        if (ok === undefined) return;
        S.draft = { page: 'setting', plugin: id, name: x.name, value: raw }; // kept on a refusal
        await mutate('change settings', [['POST', `/plugins/${enc(id)}/settings`, { set: { [x.name]: body } }]], () => { S.draft = null; route(true); });
      });
      editorBox.replaceChildren(form);
      if (focus) {
        input.focus();
        if (input.tagName !== 'SELECT') { const end = input.value.length; input.setSelectionRange(end, end); }
        form.scrollIntoView({ block: 'nearest' });
      }
      return input;
    }

    async function setSecret(x) {
      const input = h('input', { id: 'secret-value', name: 'secret', type: 'password', autocomplete: 'new-password', spellcheck: 'false', autocapitalize: 'off' });
      await ask({
        title: `Set secret ${x.name} of ${id}?`,
        confirm: 'Set secret',
        body: [
          x.description ? h('p', { class: 'hint' }, x.description) : null,
          h('p', null, x.source === 'set' ? 'It replaces the secret set now.' : 'None is set now.',
            ' It is never shown again, not even here, and not recorded; running workers receive it at once.'),
          h('label', { for: 'secret-value' }, 'Secret value'), input,
        ],
        read: () => { if (!input.value) throw 'Type the secret’s value.'; return input.value; },
        submit: async (value) => {
          let o;
          try { o = await api('PUT', `/plugins/${enc(id)}/secrets/${enc(x.name)}`, { value }); } catch (e) {
            fail(e, 'set secrets');
            if (!(e instanceof ApiError) || e.status === 401) return null; // signed out: the dialog goes
            return e.status === 0 ? 'Cannot reach the console server.' : e.message; // the dialog stays, with what was typed
          }
          input.value = '';
          notice(outcome(o));
          route(true);
          return null;
        },
      });
      input.value = ''; // cleared after use, cancelled or not
      if (!S.me) { const t = $('#token-input'); if (t) t.focus(); }
    }

    async function unsetSecret(x) {
      const ok = await ask({ title: `Unset secret ${x.name} of ${id}?`, danger: true, confirm: 'Unset',
        body: [h('p', null, 'The secret is forgotten; running workers receive the change at once.'),
          x.required ? h('p', null, 'It is required: an enabled plugin refuses losing it, and a disabled one cannot be enabled without a value.') : null] });
      if (ok === undefined) return;
      await mutate('unset secrets', [['POST', `/plugins/${enc(id)}/settings`, { unset: [x.name] }]], () => { S.draft = null; route(true); });
    }

    const nameCell = (x) => h('div', { class: 'setting-name' },
      h('span', null, x.name),
      x.required ? [' ', badge(x.source === 'none' ? 'red' : 'grey', x.source === 'none' ? 'required, missing' : 'required', { 'data-required': x.source === 'none' ? 'missing' : 'set' })] : null,
      x.secret ? [' ', badge('grey', 'secret')] : null,
      x.description ? h('div', { class: 'setting-description' }, x.description) : null);
    const valueCell = (x) => {
      if (x.secret) return x.source === 'set' ? h('span', { class: 'secret-set' }, '•••• (set)') : h('span', { class: 'muted' }, 'not set');
      return x.value == null ? h('span', { class: 'muted' }, 'not set') : h('code', { class: 'setting-value' }, settingShown(x));
    };
    const editCell = (x) => h('div', { class: 'actions' },
      !x.secret ? btn('Edit', { 'data-action': 'edit-setting', 'data-setting': x.name, 'aria-label': `Edit ${x.name}`, 'aria-controls': 'setting-editor' },
        () => openEditor(x, settingText(x))) : null,
      x.secret && admin ? btn('Set secret…', { 'data-action': 'set-secret', 'data-setting': x.name, 'aria-label': `Set secret ${x.name}` }, () => setSecret(x)) : null,
      x.secret && admin && x.source === 'set' ? btn('Unset', { 'data-action': 'unset-secret', 'data-setting': x.name, 'aria-label': `Unset secret ${x.name}`, class: 'danger-outline' }, () => unsetSecret(x)) : null);
    const tbl = sets.length ? table([
      ['name', 'Name', nameCell],
      ['type', 'Type', (x) => settingType(x)],
      ['value', 'Value', valueCell],
      ['source', 'Source', (x) => text(x.source)],
      operator ? ['edit', '', editCell] : null,
    ].filter(Boolean), sets, (x) => ({ 'data-setting': x.name, 'data-source': x.source }), 'stack settings') : null;
    const el = h('section', { class: 'card wide', id: 'settings' }, h('h2', null, 'Settings'),
      problem ? h('p', { class: 'hint', 'data-field': 'settings-problem' }, `What is in force could not be read in full: ${problem}`) : null,
      tbl || h('p', { class: 'none' }, 'No settings.'),
      operator && !admin && sets.some((x) => x.secret) ? h('p', { class: 'hint' }, 'Only admins may set secrets.') : null,
      editorBox);
    // The editor open before a reload, with what was typed.
    const d = draft();
    const x = d && operator && sets.find((s) => s.name === d.name && !s.secret);
    let restore = null;
    if (x) restore = () => openEditor(x, d.value, false);
    else if (d) S.draft = null;
    return { el, restore };
  }

  const STAT_FIELDS = ['version', 'state', 'tenants', 'instances', 'circuit', 'backlog', 'under_way', 'throughput', 'failures', 'dead_letters'];
  const pluginKey = (p) => JSON.stringify([p.state, p.version, p.pending_upgrade, p.enabled]);

  async function pluginPage(gen, id) {
    let d, st;
    try {
      [d, st] = await Promise.all([api('GET', '/plugins/' + enc(id)),
        // What is in force for the settings; the detail's rows stand in when it cannot be read.
        api('GET', `/plugins/${enc(id)}/settings`).catch((e) => { if (e.status === 401) throw e; return e; })]);
    } catch (e) { return loadFailed(gen, e); }
    const report = st && !(st instanceof Error) ? st : null;
    const s = d.summary || {};
    const stats = h('dl', { class: 'fields stats' }, STAT_FIELDS.map((f) => h('div', { class: 'field' },
      h('dt', null, PLUGIN_FIELDS[f][0]), h('dd', { 'data-field': f }))));
    const fillStats = (p) => { for (const dd of stats.querySelectorAll('dd')) setCell(dd, PLUGIN_FIELDS[dd.dataset.field][1](p)); };
    fillStats(s);
    const none = (what) => h('p', { class: 'none' }, what);
    const subs = d.subscriptions || [], insts = d.instances || [];
    const sets = (report && report.settings) || d.settings || [];
    const missing = report ? report.missing_required || [] : sets.filter((x) => x.required && x.source === 'none').map((x) => x.name);
    const settings = settingsSection(s.id || id, sets, report ? null : st && st.message);
    const typing = document.activeElement && document.activeElement.id === 'setting-value';
    const history = (d.history || []).slice().sort((a, b) => (b.revision || 0) - (a.revision || 0));
    const logs = logsSection(s.id || id);
    const ok = paint(gen,
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('#/plugins', 'Plugins'), ' / ', s.id || id),
      h('div', { class: 'page-head' }, h('h1', null, s.id || id), h('div', { class: 'actions', id: 'plugin-actions' }, pluginActions(s, d))),
      credentialBox(s.id || id),
      s.description ? h('p', { class: 'description' }, s.description) : null,
      s.failure ? h('div', { class: 'failure', 'data-field': 'failure' }, h('strong', null, 'Failed: '), text(s.failure)) : null,
      missing.length ? h('div', { class: 'missing-required', id: 'missing-required', 'data-field': 'missing_required', role: 'note' },
        h('strong', null, 'Required settings with no value: '), h('span', { class: 'names' }, missing.join(', ')),
        '; the plugin cannot be enabled until they are set.') : null,
      stats,
      dl([['subscriptions', 'Subscriptions', text(s.subscriptions)], ['approved_by', 'Approved by', text(d.approved_by)]]),
      h('div', { class: 'sections' },
        section('Rights', list(d.rights, 'rights') || none('It may do nothing yet.')),
        d.asks && d.asks.length ? section('Asks (waiting for approval)', list(d.asks, 'asks')) : null,
        section('Subscriptions', subs.length ? table([
          ['name', 'Name', (x) => x.name],
          ['events', 'Events', (x) => text(x.events)],
          ['backlog', 'Backlog', (x) => num(x.backlog), true],
          ['under_way', 'Under way', (x) => num(x.under_way), true],
          ['redelivered', 'Redelivered', (x) => num(x.redelivered), true],
          ['circuit', 'Circuit', (x) => circuitBadge(x.circuit)],
          ['dispatchers', 'Dispatchers', (x) => (x.dispatchers || []).length ? h('ul', { class: 'plain' }, x.dispatchers.map((g) =>
            h('li', { class: g.presumed_gone ? 'gone' : null }, g.instance, ' ', circuitBadge(g.circuit), ` seen ${ago(g.last_seen_secs_ago)}`, g.presumed_gone ? ' (presumed gone)' : ''))) : DASH],
        ], subs) : none('No subscriptions.')),
        operationsSection(s.id || id, d.operations || []),
        section('Instances', insts.length ? table([
          ['host', 'Host', (x) => text(x.host)],
          ['instance', 'Slot', (x) => num(x.slot ?? x.instance), true],
          ['version', 'Version', (x) => text(x.version)],
          ['state', 'State', (x) => text(x.state)],
          ['pid', 'PID', (x) => num(x.pid), true],
          ['restarts', 'Restarts', (x) => num(x.restarts), true],
          ['memory', 'Memory', (x) => (x.memory_bytes == null ? DASH : size(x.memory_bytes)), true],
          ['uptime', 'Uptime', (x) => dur(x.uptime_secs), true],
          ['reported', 'Reported', (x) => [ago(x.reported_secs_ago), x.presumed_gone ? ' (presumed gone)' : '']],
        ], insts, (x) => ({ class: x.presumed_gone ? 'gone' : null })) : none('No host reports an instance.')),
        logs.el,
        settings.el,
        section('History', history.length ? table([
          ['revision', 'Revision', (x) => num(x.revision), true],
          ['at', 'At', (x) => time(x.at)],
          ['state', 'State', (x) => stateBadge(x.state)],
          ['version', 'Version', (x) => text(x.version)],
          ['pending_upgrade', 'Pending upgrade', (x) => text(upgradeTo(x.pending_upgrade))],
          ['approved_by', 'Approved by', (x) => text(x.approved_by)],
        ], history) : none('No history.')),
        h('section', { class: 'card wide' }, h('h2', null, 'Manifest'), h('pre', { class: 'manifest', id: 'manifest' }, d.manifest || '')),
      ));
    if (!ok) return;
    logs.load();
    if (settings.restore) {
      // Focus goes back to the editor when it was there, or nowhere else (the reload took it).
      const input = settings.restore();
      const a = document.activeElement;
      if (typing || !a || a === document.body || a === main) input.focus({ preventScroll: !typing });
    }
    // Live: the counters follow the overview; when the state changes between two overviews
    // (another operator acted), the page reloads. Comparing overviews with each other, not
    // with the detail, cannot loop if the two ever disagree.
    let seen = null;
    S.view = {
      poll: true,
      update(o) {
        const p = (o.plugins || []).find((x) => x.id === s.id);
        if (!p) return;
        fillStats(p);
        const k = pluginKey(p);
        if (seen !== null && k !== seen) route(true);
        seen = k;
      },
    };
  }

  // ---- approvals ---------------------------------------------------------------------------

  function approvalCard(a) {
    const kind = a.kind === 'upgrade' ? `Upgrade ${a.from || '?'} → ${a.version}` : `Install ${a.version}`;
    const ctx = a.kind === 'upgrade'
      ? { asks: [...(a.asks || [])], beyond: Array.isArray(a.beyond) ? a.beyond : undefined, upgrade: { from: a.from, to: a.version } }
      : [...(a.asks || [])];
    return h('article', { class: 'card approval', 'data-plugin': a.plugin },
      h('div', { class: 'approval-head' }, h('h2', null, link('#/plugins/' + enc(a.plugin), a.plugin)), badge('amber', kind, { 'data-field': 'kind' })),
      h('p', { 'data-field': 'tenants' }, 'Tenants: ', tenants(a)),
      a.asks && a.asks.length ? [h('h3', null, 'It asks to'), list(a.asks, 'asks')] : h('p', { class: 'none' }, 'It asks for nothing.'),
      a.beyond && a.beyond.length ? [h('h3', null, 'Beyond what is approved now'), list(a.beyond, 'beyond')] : null,
      can('operator') ? h('div', { class: 'actions' }, actionButton('approve', a.plugin, ctx), actionButton('reject', a.plugin, a.kind === 'upgrade' ? ctx : undefined)) : null);
  }
  async function approvalsPage(gen) {
    let r;
    try { r = await api('GET', '/approvals'); } catch (e) { return loadFailed(gen, e); }
    const box = h('div', { class: 'approvals' });
    let shown = null;
    const fill = (list) => {
      const key = JSON.stringify(list.map((a) => [a.plugin, a.kind, a.version]));
      if (key === shown) return;
      shown = key;
      setBadge(list.length);
      box.replaceChildren(...(list.length ? list.map(approvalCard) : [empty(h('p', null, 'Nothing waits for approval.'))]));
    };
    fill(r.approvals || []);
    if (!paint(gen, h('div', { class: 'page-head' }, h('h1', null, 'Approvals')), box)) return;
    S.view = { poll: false, update: (o) => { if (Array.isArray(o.approvals)) fill(o.approvals); } };
  }

  // ---- dead letters ------------------------------------------------------------------------

  const byPlugin = (letters) => {
    const m = new Map();
    for (const l of letters) { if (!m.has(l.plugin)) m.set(l.plugin, []); m.get(l.plugin).push(l.sequence); }
    return m;
  };
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

  function filterForm(fields, extra, onApply) {
    const inputs = fields.map(([name, label, list]) => h('input', { id: 'filter-' + name, name, type: 'search', list, autocomplete: 'off' }));
    const form = h('form', { class: 'filters', role: 'search' },
      fields.map(([name, label], i) => h('div', { class: 'filter' }, h('label', { for: 'filter-' + name }, label), inputs[i])),
      extra, h('div', { class: 'filter-buttons' }, h('button', { type: 'submit', id: 'apply-filters' }, 'Apply'),
        btn('Clear', { id: 'clear-filters', class: 'ghost' }, () => { inputs.forEach((i) => { i.value = ''; }); form.requestSubmit(); })));
    form.addEventListener('submit', (e) => { e.preventDefault(); onApply(Object.fromEntries(fields.map(([n], i) => [n, inputs[i].value.trim()]))); });
    return { form, inputs };
  }

  async function deadLettersPage(gen, params) {
    const f = { plugin: params.get('plugin') || '', code: params.get('code') || '', tenant: params.get('tenant') || '' };
    let r;
    try { r = await api('GET', '/dead-letters' + query(f)); } catch (e) { return loadFailed(gen, e); }
    const letters = r.dead_letters || [];
    const { form, inputs } = filterForm([['plugin', 'Plugin'], ['code', 'Code'], ['tenant', 'Tenant']], null, (v) => go('#/dead-letters' + query(v)));
    inputs.forEach((i) => { i.value = f[i.name]; });

    const selected = new Set();
    const count = h('span', { id: 'selected-count', class: 'muted' });
    const replaySel = can('operator') ? btn('Replay selected', { 'data-action': 'replay-selected', class: 'primary' }, () => run('replay')) : null;
    const purgeSel = can('admin') ? btn('Purge selected', { 'data-action': 'purge-selected', class: 'danger-outline' }, () => run('purge')) : null;
    const replayAll = f.plugin && can('operator') ? btn(`Replay all of ${f.plugin}`, { 'data-action': 'replay-all', 'data-plugin': f.plugin }, replayAllOf) : null;
    const boxes = [];
    const selectAll = h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'Select all' });
    const sync = () => {
      count.textContent = selected.size ? `${selected.size} selected` : '';
      for (const b of [replaySel, purgeSel]) if (b) b.disabled = !selected.size;
      selectAll.checked = !!letters.length && selected.size === letters.length;
      selectAll.indeterminate = selected.size > 0 && selected.size < letters.length;
    };
    selectAll.addEventListener('change', () => {
      for (const b of boxes) { b.checked = selectAll.checked; if (b.checked) selected.add(Number(b.value)); else selected.delete(Number(b.value)); }
      sync();
    });
    async function run(kind) {
      const chosen = letters.filter((l) => selected.has(l.sequence));
      const groups = byPlugin(chosen);
      const desc = [...groups].map(([p, s]) => `${s.length} of ${p}`).join(', ');
      const purge = kind === 'purge';
      const ok = await ask({
        title: `${purge ? 'Purge' : 'Replay'} ${plural(chosen.length, 'dead letter', 'dead letters')}?`,
        body: h('p', null, purge ? `They are deleted without replay (${desc}). This cannot be undone.` : `Each goes back to the plugin that failed it (${desc}).`),
        confirm: purge ? 'Purge' : 'Replay', danger: purge,
      });
      if (ok === undefined) return;
      // The API takes one plugin per call: one request per plugin.
      await mutate(purge ? 'purge dead letters' : 'replay dead letters',
        [...groups].map(([plugin, sequences]) => ['POST', `/dead-letters/${kind}`, { plugin, sequences }]));
    }
    async function replayAllOf() {
      const ok = await ask({ title: `Replay all dead letters of ${f.plugin}?`, body: h('p', null, `Every dead letter ${f.plugin} failed goes back to it, not only those listed here.`), confirm: 'Replay all' });
      if (ok !== undefined) await mutate('replay dead letters', [['POST', '/dead-letters/replay', { plugin: f.plugin }]]);
    }

    const check = (l) => {
      const b = h('input', { type: 'checkbox', class: 'select', value: l.sequence, 'aria-label': `Select dead letter ${l.sequence}` });
      b.addEventListener('change', () => { if (b.checked) selected.add(l.sequence); else selected.delete(l.sequence); sync(); });
      boxes.push(b);
      return b;
    };
    const tbl = table([
      ['select', 'Select', check],
      ['sequence', 'Seq', (l) => link('#/dead-letters/' + l.sequence, String(l.sequence)), true],
      ['plugin', 'Plugin', (l) => link('#/plugins/' + enc(l.plugin), l.plugin)],
      ['subscription', 'Subscription', (l) => text(l.subscription)],
      ['code', 'Code', (l) => h('code', null, text(l.code))],
      ['attempts', 'Attempts', (l) => num(l.attempts), true],
      ['failed_at', 'Failed at', (l) => time(l.failed_at || l.last_failure)],
      ['tenant', 'Tenant', (l) => text(l.tenant)],
      ['event_type', 'Event type', (l) => text(l.event_type)],
      ['event_id', 'Event id', (l) => text(l.event_id)],
      ['reason', 'Reason', (l) => h('span', { class: 'reason', title: l.reason || null }, text(l.reason))],
    ], letters, (l) => ({ 'data-sequence': l.sequence }), 'stack dead-letters');
    $('thead th', tbl).replaceChildren(selectAll);
    sync();
    const filtered = f.plugin || f.code || f.tenant;
    paint(gen, h('div', { class: 'page-head' }, h('h1', null, 'Dead letters')), form,
      letters.length ? [
        h('div', { class: 'toolbar' }, replaySel, replayAll, purgeSel, count),
        r.truncated ? h('p', { class: 'hint', id: 'truncated' }, `Only the first ${letters.length} are listed: narrow the filters to see the others.`) : null,
        tbl,
      ] : [
        f.plugin && can('operator') ? h('div', { class: 'toolbar' }, replayAll) : null,
        empty(h('p', null, 'No dead letters. Every event was delivered or is still being retried.'),
          filtered ? h('p', { class: 'hint' }, 'Only those matching the filters are listed.') : null),
      ]);
  }

  // A value of a dead letter: scalars as text, flat maps (headers, attributes) as a table, the rest as JSON.
  function valueView(v) {
    if (v === null || typeof v !== 'object') return h('p', null, text(v));
    const flat = (x) => x === null || typeof x !== 'object' || (Array.isArray(x) && x.every((y) => y === null || typeof y !== 'object'));
    if (!Array.isArray(v) && Object.values(v).every(flat)) {
      const rows = Object.entries(v);
      return rows.length ? table([['name', 'Name', (e) => h('code', null, e[0])], ['value', 'Value', (e) => text(e[1])]], rows, null, 'kv') : h('p', { class: 'none' }, 'None.');
    }
    return h('pre', null, JSON.stringify(v, null, 2));
  }
  // Bytes of base64 as UTF-8 text, or null when they are not text.
  function b64text(b64) {
    try { return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))); } catch { return null; }
  }
  function originalView(o) {
    if (!o || typeof o !== 'object' || Array.isArray(o)) return valueView(o);
    const scalars = Object.entries(o).filter(([k, v]) => (v === null || typeof v !== 'object') && !/base64$|^body$|^data$/.test(k));
    const out = [dl(scalars.map(([k, v]) => [k, human(k), text(v)]))];
    for (const k of ['body', 'data', 'attributes']) {
      if (o[k] != null) out.push(h('h3', null, human(k)), typeof o[k] === 'string' ? h('pre', null, o[k]) : k === 'attributes' ? valueView(o[k]) : h('pre', null, JSON.stringify(o[k], null, 2)));
    }
    for (const [k, v] of Object.entries(o)) {
      if (!/base64$/.test(k) || typeof v !== 'string' || (k === 'body_base64' && o.body != null)) continue;
      const t = o.body == null ? b64text(v) : null;
      out.push(h('h3', null, human(k.replace(/_?base64$/, '')) + (t != null ? ' (as text)' : ' (base64)')), h('pre', null, t != null ? t : v));
    }
    return out;
  }

  const LETTER_FIELDS = [
    ['sequence', 'Sequence'], ['plugin', 'Plugin'], ['subscription', 'Subscription'], ['code', 'Code'], ['reason', 'Reason'],
    ['attempts', 'Attempts'], ['tenant', 'Tenant'], ['event_type', 'Event type'], ['event_id', 'Event id'],
    ['failed_at', 'Failed at'], ['first_failure', 'First failure'], ['last_failure', 'Last failure'], ['stored', 'Stored'],
    ['original_subject', 'Original subject'], ['stream_sequence', 'Original sequence'], ['valid_event', 'Valid CloudEvents event'],
  ];
  const TIME_FIELDS = /(_at|failure|stored)$/;

  async function deadLetterPage(gen, seqText) {
    if (!/^[0-9]+$/.test(seqText)) return paint(gen, empty(h('p', null, `“${seqText}” is not a dead letter's sequence.`), link('#/dead-letters', 'All dead letters')));
    let d;
    try { d = await api('GET', '/dead-letters/' + seqText); } catch (e) { return loadFailed(gen, e); }
    const seq = Number(d.sequence ?? seqText), plugin = d.plugin;
    const known = new Set(LETTER_FIELDS.map((f) => f[0]));
    const pairs = LETTER_FIELDS.filter(([k]) => k in d).map(([k, label]) => [k, label,
      k === 'plugin' ? link('#/plugins/' + enc(plugin), plugin) : TIME_FIELDS.test(k) && typeof d[k] === 'string' ? time(d[k]) : text(d[k])]);
    const rest = Object.entries(d).filter(([k]) => !known.has(k));
    for (const [k, v] of rest) if (v === null || typeof v !== 'object') pairs.push([k, human(k), text(v)]);
    const actions = [
      can('operator') ? btn('Replay', { 'data-action': 'replay', 'data-sequence': seq, class: 'primary' }, async () => {
        if (await ask({ title: `Replay dead letter ${seq}?`, body: h('p', null, `It goes back to ${plugin}.`), confirm: 'Replay' }) === undefined) return;
        // Replayed, it is no longer a dead letter: back to the list (of its plugin) with the notice.
        await mutate('replay dead letters', [['POST', '/dead-letters/replay', { plugin, sequences: [seq] }]], () => go('#/dead-letters' + query({ plugin }), true));
      }) : null,
      can('admin') ? btn('Purge', { 'data-action': 'purge', 'data-sequence': seq, class: 'danger-outline' }, async () => {
        if (await ask({ title: `Purge dead letter ${seq}?`, body: h('p', null, 'It is deleted without replay. This cannot be undone.'), confirm: 'Purge', danger: true }) === undefined) return;
        await mutate('purge dead letters', [['POST', '/dead-letters/purge', { plugin, sequences: [seq] }]], () => go('#/dead-letters' + query({ plugin }), true));
      }) : null,
    ];
    const TITLES = { headers: 'Headers (the event’s attributes)', original: 'Original event', event: 'Original event' };
    paint(gen,
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('#/dead-letters', 'Dead letters'), ' / ', String(seq)),
      h('div', { class: 'page-head' }, h('h1', null, `Dead letter ${seq}`), h('div', { class: 'actions' }, actions)),
      h('section', { class: 'card' }, dl(pairs)),
      rest.filter(([, v]) => v !== null && typeof v === 'object').map(([k, v]) =>
        h('section', { class: 'card', 'data-field': k }, h('h2', null, TITLES[k] || human(k)), k === 'original' || k === 'event' ? originalView(v) : valueView(v))));
  }

  // ---- audit -------------------------------------------------------------------------------

  const AUDIT_ACTIONS = ['approved', 'rejected', 'installed', 'upgraded', 'rolled_back', 'plugin_registered', 'plugin_replaced',
    'plugin_removed', 'plugin_enabled', 'plugin_disabled', 'plugin_failed', 'settings_changed', 'grant_changed', 'credentials_issued',
    'credentials_rotated', 'credentials_revoked', 'dlq_replayed', 'dlq_purged', 'trust_added', 'trust_removed', 'service_added',
    'service_removed', 'operator_added', 'operator_removed', 'api_viewed', 'api_refused', 'api_failed'];
  const actorName = (a) => (a && typeof a === 'object' ? a.name || a.declared || JSON.stringify(a) : text(a));

  const AUDIT_LIMITS = [100, 500, 1000];
  // An audit target: a plugin id, or one such as operator:NAME, service:NAME or PLUGIN.OPERATION.
  const AUDIT_TARGET = /^[A-Za-z0-9_-]{1,64}([.:][A-Za-z0-9_.:@+=-]{1,300})?$/;
  const targetProblem = (t) => (!t || AUDIT_TARGET.test(t) ? null
    : `“${t.length > 80 ? t.slice(0, 80) + '…' : t}” is not a plugin id (1 to 64 letters, digits, - or _) nor a target such as operator:NAME.`);

  async function auditPage(gen, params) {
    const limit = AUDIT_LIMITS.includes(Number(params.get('limit'))) ? String(Number(params.get('limit'))) : '';
    const f = { plugin: params.get('plugin') || '', action: params.get('action') || '', include_reads: params.get('include_reads') === 'true' ? 'true' : '', limit };
    const reads = h('input', { type: 'checkbox', id: 'include-reads', checked: !!f.include_reads });
    const limitIn = h('select', { id: 'filter-limit', name: 'limit' }, AUDIT_LIMITS.map((n) => h('option', { value: n, selected: String(n) === (limit || '100') }, `newest ${n}`)));
    const formError = h('div', { class: 'form-result', 'data-field': 'filter-error', 'aria-live': 'polite' });
    const { form, inputs } = filterForm([['plugin', 'Plugin'], ['action', 'Action', 'audit-actions']],
      [h('datalist', { id: 'audit-actions' }, AUDIT_ACTIONS.map((a) => h('option', { value: a }))),
        h('div', { class: 'filter narrow' }, h('label', { for: 'filter-limit' }, 'Show'), limitIn),
        h('div', { class: 'filter check' }, reads, h('label', { for: 'include-reads' }, 'Include reads'))],
      (v) => {
        const bad = targetProblem(v.plugin);
        if (bad) { formError.replaceChildren(h('div', { class: 'form-error', role: 'alert' }, bad)); return inputs[0].focus(); }
        go('#/audit' + query(Object.assign(v, { include_reads: reads.checked ? 'true' : '', limit: limitIn.value === '100' ? '' : limitIn.value })));
      });
    inputs[0].value = f.plugin; inputs[1].value = f.action;
    inputs[0].addEventListener('input', () => formError.replaceChildren());
    reads.addEventListener('change', () => form.requestSubmit());
    limitIn.addEventListener('change', () => form.requestSubmit());
    const head = h('div', { class: 'page-head' }, h('h1', null, 'Audit log'));
    // A malformed filter is not sent: it would match nothing, which is not what it means.
    const bad = targetProblem(f.plugin);
    if (bad) {
      formError.replaceChildren(h('div', { class: 'form-error', role: 'alert' }, bad));
      return paint(gen, head, form, formError);
    }
    let r;
    try { r = await api('GET', '/audit' + query(f)); } catch (e) {
      if (e.status === 400) { // a filter the server cannot read: said by the filter, not as "nothing matches"
        if (!current(gen)) return;
        formError.replaceChildren(errorNote(e, 'read the audit log'));
        return paint(gen, head, form, formError);
      }
      return loadFailed(gen, e);
    }
    const entries = (r.entries || []).slice();
    if (entries.every((e) => typeof e.sequence === 'number')) entries.sort((a, b) => b.sequence - a.sequence); // newest first
    const change = (e) => (e.before != null || e.after != null ? h('details', null, h('summary', null, 'change'),
      h('pre', null, 'before: ' + JSON.stringify(e.before ?? null, null, 2) + '\nafter: ' + JSON.stringify(e.after ?? null, null, 2))) : null);
    paint(gen, head, form, formError,
      r.truncated ? h('p', { class: 'truncated-note', id: 'audit-truncated', role: 'note' },
        `Showing the newest ${entries.length}; raise the limit or filter to see older entries.`) : null,
      entries.length ? table([
        ['at', 'At', (e) => time(e.at)],
        ['actor', 'Actor', (e) => actorName(e.actor)],
        ['action', 'Action', (e) => h('code', { class: 'action' }, text(e.action))],
        ['target', 'Target', (e) => text(e.target)],
        ['detail', 'Detail', (e) => [e.detail == null ? '' : String(e.detail), change(e)]],
      ], entries, (e) => ({ 'data-sequence': e.sequence }), 'stack audit') : empty(h('p', null, 'No audit entries match.')));
  }

  // ---- operators ---------------------------------------------------------------------------

  async function operatorsPage(gen) {
    if (!can('admin')) return paint(gen, empty(h('p', null, `Your role (${S.me.role}) may not manage operators: ask an admin.`)));
    let r;
    try { r = await api('GET', '/operators'); } catch (e) { return loadFailed(gen, e); }
    const ops = r.operators || [];
    const name = h('input', { id: 'operator-name', name: 'name', autocomplete: 'off', spellcheck: 'false', required: true });
    const role = h('select', { id: 'operator-role', name: 'role' }, ['viewer', 'operator', 'admin'].map((x) => h('option', { value: x }, x)));
    const form = h('form', { class: 'card add-operator' }, h('h2', null, 'Add an operator'),
      h('div', { class: 'filters' },
        h('div', { class: 'filter' }, h('label', { for: 'operator-name' }, 'Name'), name),
        h('div', { class: 'filter' }, h('label', { for: 'operator-role' }, 'Role'), role),
        h('div', { class: 'filter-buttons' }, h('button', { type: 'submit', id: 'add-operator', class: 'primary' }, 'Add'))),
      h('p', { class: 'hint' }, 'Adding an existing name gives a new token (the old one stops working at once) and sets the role.'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const n = name.value.trim(), rl = role.value;
      if (!n) return name.focus();
      const exists = ops.some((o) => o.name === n);
      const ok = await ask({ title: `${exists ? 'Re-key' : 'Add'} operator ${n} as ${rl}?`,
        body: h('p', null, exists ? `${n}'s current token stops working at once.` : 'Their token is shown once, here.'), confirm: exists ? 'Re-key' : 'Add' });
      if (ok === undefined) return;
      await mutate('manage operators', [['POST', '/operators', { name: n, role: rl }]], ([added]) => {
        S.newToken = added && added.token ? added : null;
        notice(h('p', null, S.newToken ? `Added ${added.name} (${added.role}). Copy the token now: it is not shown again.` : `Added ${n}.`));
        route(true);
      });
    });
    const me = S.me.name;
    const remove = (o) => btn('Remove', { 'data-action': 'remove-operator', 'data-operator': o.name, class: 'danger-outline' }, async () => {
      const self = o.name === me;
      const ok = await ask({ title: `Remove operator ${o.name}?`, danger: true, confirm: 'Remove',
        body: h('p', null, self ? 'That is you: your session ends at once.' : `${o.name}'s token stops working at once.`) });
      if (ok !== undefined) await mutate('manage operators', [['DELETE', '/operators/' + enc(o.name)]]);
    });
    let tokenBox = null;
    if (S.newToken && S.newToken.token) {
      const t = S.newToken;
      const field = h('input', { id: 'operator-token', readonly: true, value: t.token, 'aria-label': `Token of ${t.name}`, spellcheck: 'false' });
      const copy = btn('Copy', { 'data-action': 'copy-token', class: 'primary' }, async () => {
        try { await navigator.clipboard.writeText(t.token); copy.textContent = 'Copied'; }
        catch { field.select(); copy.textContent = 'Selected: press Ctrl+C'; } // no clipboard outside a secure context
      });
      tokenBox = h('section', { class: 'card token-box', id: 'token-box' },
        h('h2', null, `Token of ${t.name} (${t.role})`),
        h('p', null, 'Give it to them over a safe channel. It is shown only this once.'),
        h('div', { class: 'token-row' }, field, copy,
          btn('Done', { 'data-action': 'dismiss-token', class: 'ghost' }, () => { S.newToken = null; tokenBox.remove(); })));
      field.addEventListener('focus', () => field.select());
    }
    paint(gen, h('div', { class: 'page-head' }, h('h1', null, 'Operators')), tokenBox,
      ops.length ? table([
        ['name', 'Name', (o) => h('span', null, o.name, o.name === me ? h('span', { class: 'muted' }, ' (you)') : null)],
        ['role', 'Role', (o) => h('span', { class: 'role' }, text(o.role))],
        ['added_at', 'Added', (o) => time(o.added_at)],
        ['remove', '', remove],
      ], ops, (o) => ({ 'data-operator': o.name }), 'stack operators') : empty(h('p', null, 'No operators yet.')),
      form);
  }

  // ---- catalog -----------------------------------------------------------------------------

  // A publisher key, shortened as the CLI does; the whole key in its title.
  const shortKey = (k) => h('code', { class: 'key', title: k }, k.slice(0, 12) + '…');
  // A whole publisher key (56 characters), free to wrap every 8 on a narrow screen.
  const fullKey = (k) => h('code', { class: 'key' }, (String(k).match(/.{1,8}/g) || []).flatMap((part, i) => (i ? [h('wbr'), part] : [part])));
  // Who signed a package, and whether that is trusted (as `switchyard catalog` says it).
  function publisher(p) {
    const sig = { 'data-signature': p.signature };
    switch (p.signature) {
      case 'trusted':
        return h('span', null, badge('green', 'trusted', Object.assign({ title: 'Signed by a trusted key' }, sig)), ' ',
          h('span', { class: 'publisher-name' }, text(p.publisher_name)), p.publisher ? [' ', shortKey(p.publisher)] : null);
      case 'untrusted':
        return h('span', null, badge('amber', 'NOT TRUSTED', Object.assign({ title: 'Signed by a key this deployment does not trust' }, sig)),
          p.publisher ? [' ', shortKey(p.publisher), can('admin') ? [' ', h('a', { href: '#/trust' + query({ key: p.publisher }), 'data-action': 'trust-publisher' }, 'Trust…')] : null] : null);
      case 'unsigned':
        return badge('grey', 'unsigned', Object.assign({ title: 'Not signed' }, sig));
      case 'bad':
        return badge('red', 'BAD SIGNATURE', Object.assign({ title: 'The signature does not verify' }, sig));
      default:
        return badge('red', 'UNREADABLE', Object.assign({ title: 'Not readable as a package' }, sig));
    }
  }

  async function catalogPage(gen) {
    let r;
    try { r = await api('GET', '/catalog'); } catch (e) { return loadFailed(gen, e); }
    const packages = r.packages || [];
    paint(gen, h('div', { class: 'page-head' }, h('h1', null, 'Catalog')),
      packages.length ? [
        h('p', { class: 'hint' }, 'The published packages. Installing one signed by a key that is not trusted, or unsigned, needs an explicit allowance.'),
        table([
          ['id', 'Plugin', (p) => (p.id ? p.id : h('code', { title: 'Not readable as a package' }, p.object))],
          ['version', 'Version', (p) => text(p.version)],
          ['publisher', 'Publisher', publisher],
          ['category', 'Category', (p) => text(p.category)],
          ['tags', 'Tags', (p) => (p.tags && p.tags.length ? p.tags.join(', ') : DASH)],
          ['description', 'Description', (p) => (p.problem ? h('span', { class: 'bad problem', title: p.problem }, p.problem) : text(p.description))],
        ], packages, (p) => ({ 'data-package': p.object, 'data-signature': p.signature }), 'stack catalog'),
      ] : empty(h('p', null, 'No package is published yet.'), h('p', { class: 'hint' }, 'Publish one with ', h('code', null, 'switchyard package publish'), '.')));
  }

  // ---- trusted keys ------------------------------------------------------------------------

  async function trustPage(gen, params) {
    let r;
    try { r = await api('GET', '/trust'); } catch (e) { return loadFailed(gen, e); }
    const keys = r.keys || [];
    const admin = can('admin');
    let form = null;
    if (admin) {
      const key = h('input', { id: 'trust-key', name: 'key', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'characters', required: true, placeholder: 'V…' });
      const name = h('input', { id: 'trust-name', name: 'name', autocomplete: 'off', required: true, maxlength: 128 });
      const draft = (S.draft && S.draft.page === 'trust' && S.draft) || {};
      key.value = draft.key || params.get('key') || ''; // from the catalog's "Trust…", or a refused try
      name.value = draft.name || '';
      form = h('form', { class: 'card add-operator add-trust' }, h('h2', null, 'Trust a publisher key'),
        h('div', { class: 'filters' },
          h('div', { class: 'filter' }, h('label', { for: 'trust-key' }, 'Public key'), key),
          h('div', { class: 'filter' }, h('label', { for: 'trust-name' }, 'Name (who it is)'), name),
          h('div', { class: 'filter-buttons' }, h('button', { type: 'submit', id: 'add-trust', class: 'primary' }, 'Trust'))),
        h('p', { class: 'hint' }, 'The public key ', h('code', null, 'switchyard package keygen'), ' printed (it starts with V), never the seed. Trusting a trusted key again renames it.'));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const k = key.value.trim(), n = name.value.trim();
        if (!k) return key.focus();
        if (/^S/.test(k)) { // a seed: a secret, not sent anywhere
          key.value = '';
          key.focus();
          return showError('That is a seed (a secret), not a public key: never share it. Trust the public key, which starts with V.', null);
        }
        if (!n) return name.focus();
        const existing = keys.find((x) => x.key === k);
        const ok = await ask({
          title: existing ? `Rename trusted key to “${n}”?` : `Trust this key as “${n}”?`,
          body: [h('p', null, fullKey(k)),
            h('p', null, existing ? `It is trusted as “${existing.name}” now.` : 'Packages signed with it install without an allowance.')],
          confirm: existing ? 'Rename' : 'Trust',
        });
        if (ok === undefined) return;
        S.draft = { page: 'trust', key: k, name: n };
        await mutate('trust publisher keys', [['POST', '/trust', { key: k, name: n }]], ([added]) => {
          // The server's message holds the whole key, too long for a phone's width: say it shorter.
          S.draft = null;
          notice(h('p', null, added && added.added === false ? 'Renamed ' : 'Trusted ', shortKey(k), ` as “${(added && added.name) || n}”.`));
          go('#/trust', true);
        });
      });
    }
    const remove = (t) => btn('Remove', { 'data-action': 'remove-trust', 'data-key': t.key, class: 'danger-outline' }, async () => {
      const ok = await ask({ title: `Stop trusting “${t.name}”?`, danger: true, confirm: 'Stop trusting',
        body: [h('p', null, fullKey(t.key)),
          h('p', null, 'Installing or upgrading a package signed with it then needs an allowance. What is installed already is not changed.')] });
      if (ok === undefined) return;
      await mutate('trust publisher keys', [['DELETE', '/trust/' + enc(t.key)]], () => {
        notice(h('p', null, `No longer trusted: “${t.name}” (`, shortKey(t.key), ').'));
        go('#/trust', true);
      });
    });
    paint(gen, h('div', { class: 'page-head' }, h('h1', null, 'Trusted keys')),
      keys.length ? table([
        ['key', 'Key', (t) => fullKey(t.key)],
        ['name', 'Name', (t) => t.name],
        ['added_at', 'Added', (t) => time(t.added_at)],
        admin ? ['remove', '', remove] : null,
      ].filter(Boolean), keys, (t) => ({ 'data-key': t.key }), 'stack trust')
        : empty(h('p', null, 'No publisher key is trusted.'), h('p', { class: 'hint' }, 'Packages then install only with an allowance (unsigned or untrusted).')),
      form || h('p', { class: 'hint' }, 'Only admins may trust or distrust keys.'));
  }

  // ---- service logins ----------------------------------------------------------------------

  async function servicesPage(gen) {
    let r;
    try { r = await api('GET', '/services'); } catch (e) { return loadFailed(gen, e); }
    const services = r.services || [];
    const admin = can('admin');
    let form = null;
    if (admin) {
      const name = h('input', { id: 'service-name', name: 'name', autocomplete: 'off', spellcheck: 'false', required: true });
      const tenantsIn = h('input', { id: 'service-tenants', name: 'tenants', autocomplete: 'off', spellcheck: 'false', placeholder: 'all tenants' });
      const draft = (S.draft && S.draft.page === 'services' && S.draft) || {};
      name.value = draft.name || ''; tenantsIn.value = draft.tenants || '';
      form = h('form', { class: 'card add-operator add-service' }, h('h2', null, 'Add a service login'),
        h('div', { class: 'filters' },
          h('div', { class: 'filter' }, h('label', { for: 'service-name' }, 'Name'), name),
          h('div', { class: 'filter' }, h('label', { for: 'service-tenants' }, 'Tenants (comma-separated; empty = all tenants)'), tenantsIn),
          h('div', { class: 'filter-buttons' }, h('button', { type: 'submit', id: 'add-service', class: 'primary' }, 'Add'))),
        h('p', { class: 'hint' }, 'Its secret is shown once, here. Adding an existing name sets its tenants and gives a new secret (the old one stops working at once).'));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const n = name.value.trim();
        if (!n) return name.focus();
        const chosen = [...new Set(tenantsIn.value.split(',').map((t) => t.trim()).filter(Boolean))];
        const scope = chosen.length ? chosen.join(', ') : 'every tenant (including later ones)';
        const exists = services.some((s) => s.name === n);
        const ok = await ask({ title: `${exists ? 'Re-key' : 'Add'} service ${n}?`,
          body: [h('p', null, `It may act for ${scope}.`),
            h('p', null, exists ? `${n}'s current secret stops working at once.` : 'Its secret is shown once, here.')],
          confirm: exists ? 'Re-key' : 'Add' });
        if (ok === undefined) return;
        S.draft = { page: 'services', name: n, tenants: tenantsIn.value };
        await mutate('manage service logins', [['POST', '/services', chosen.length ? { name: n, tenants: chosen } : { name: n, all_tenants: true }]], ([added]) => {
          S.draft = null;
          S.newSecret = added && added.secret ? added : null;
          notice(h('p', null, S.newSecret ? `${added.message || 'Added ' + added.name}. Copy the secret now: it is not shown again.` : `Added ${n}.`));
          route(true);
        });
      });
    }
    const remove = (s) => btn('Remove', { 'data-action': 'remove-service', 'data-service': s.name, class: 'danger-outline' }, async () => {
      const ok = await ask({ title: `Remove service ${s.name}?`, danger: true, confirm: 'Remove',
        body: h('p', null, `${s.name}'s secret stops working at once.`) });
      if (ok !== undefined) await mutate('manage service logins', [['DELETE', '/services/' + enc(s.name)]]);
    });
    let secretBox = null;
    if (S.newSecret) {
      const t = S.newSecret;
      const field = h('input', { id: 'service-secret', readonly: true, value: t.secret, 'aria-label': `Secret of service ${t.name}`, spellcheck: 'false' });
      const copy = btn('Copy', { 'data-action': 'copy-secret', class: 'primary' }, async () => {
        try { await navigator.clipboard.writeText(t.secret); copy.textContent = 'Copied'; }
        catch { field.select(); copy.textContent = 'Selected: press Ctrl+C'; } // no clipboard outside a secure context
      });
      secretBox = h('section', { class: 'card token-box', id: 'service-secret-box' },
        h('h2', null, `Secret of service ${t.name}`),
        h('p', null, 'Give it to the service over a safe channel. It is shown only this once.'),
        h('div', { class: 'token-row' }, field, copy,
          btn('Done', { 'data-action': 'dismiss-secret', class: 'ghost' }, () => { S.newSecret = null; secretBox.remove(); })),
        h('p', { class: 'hint' }, 'It logs in as user ', h('code', { 'data-field': 'user' }, text(t.user)),
          ' with the secret as its password, with the inbox prefix ', h('code', { 'data-field': 'inbox_prefix' }, text(t.inbox_prefix)),
          ', for ', h('span', { 'data-field': 'tenants' }, text(t.tenants)), '.'));
      field.addEventListener('focus', () => field.select());
    }
    paint(gen, h('div', { class: 'page-head' }, h('h1', null, 'Services')), secretBox,
      services.length ? table([
        ['name', 'Name', (s) => s.name],
        ['tenants', 'Tenants', tenants],
        ['issued_at', 'Secret issued', (s) => time(s.issued_at)],
        admin ? ['remove', '', remove] : null,
      ].filter(Boolean), services, (s) => ({ 'data-service': s.name }), 'stack services')
        : empty(h('p', null, 'No service logins.'), h('p', { class: 'hint' }, 'A service is a client that publishes events for its tenants and calls the operations that allow services.')),
      form || h('p', { class: 'hint' }, 'Only admins may add or remove service logins.'));
  }

  // ---- forms shared by install, upgrade, streams and events --------------------------------

  const splitList = (v) => [...new Set(String(v || '').split(',').map((t) => t.trim()).filter(Boolean))];
  // A labelled field: label above the control, an optional hint below.
  const fieldRow = (id, label, control, hint) => h('div', { class: 'form-field' },
    h('label', { for: id }, label), control, hint ? h('p', { class: 'hint' }, hint) : null);
  // A checkbox with its label beside it.
  function checkRow(name, label, hint, idPrefix = 'f') {
    const id = `${idPrefix}-${name.replace(/_/g, '-')}`;
    const input = h('input', { type: 'checkbox', id, name });
    return { input, el: h('div', { class: 'check-row' }, input, h('label', { for: id }, label, hint ? h('span', { class: 'hint' }, ' ', hint) : null)) };
  }
  // An error shown where the action was made (a form or a section), not only at the top of
  // the page: on a phone the top is far away. A lost session still signs out.
  function errorNote(err, what) {
    if (err instanceof ApiError && err.status === 401) { fail(err, what); return null; }
    if (!(err instanceof ApiError)) { console.error(err); return h('div', { class: 'form-error', role: 'alert' }, String((err && err.message) || err)); }
    const msg = err.status === 403 ? `Your role (${S.me ? S.me.role : 'unknown'}) may not ${what}.`
      : err.status === 0 ? 'Cannot reach the console server.' : err.message;
    return h('div', { class: 'form-error', role: 'alert', 'data-code': err.code },
      h('strong', { class: 'error-message' }, msg), ' ', h('code', { class: 'error-code' }, err.code),
      err.status === 403 && err.message ? h('div', { class: 'detail' }, err.message) : null);
  }
  // The text of an error for an ask() dialog, which stays open with it.
  function errorLine(err, what) {
    if (err instanceof ApiError && err.status === 401) { fail(err, what); return null; }
    if (!(err instanceof ApiError)) return String((err && err.message) || err);
    if (err.status === 403) return `Your role (${S.me ? S.me.role : 'unknown'}) may not ${what}: ${err.message} (${err.code})`;
    if (err.status === 0) return 'Cannot reach the console server.';
    return `${err.message} (${err.code})`;
  }

  // ---- packages: choosing one from the catalog, uploading one ------------------------------

  // Semantic versions, compared as semver orders them (a pre-release before its release).
  function cmpVersion(a, b) {
    const parse = (v) => { const [core, ...pre] = String(v).split('+')[0].split('-'); return [core.split('.').map((n) => Number(n) || 0), pre.length ? pre.join('-') : null]; };
    const [ca, pa] = parse(a), [cb, pb] = parse(b);
    for (let i = 0; i < 3; i++) if ((ca[i] || 0) !== (cb[i] || 0)) return (ca[i] || 0) - (cb[i] || 0);
    if (pa === pb) return 0;
    if (pa === null) return 1;
    if (pb === null) return -1;
    return pa.localeCompare(pb, undefined, { numeric: true });
  }
  // The readable packages of the catalog (of `plugin` only, when given): by plugin, newest first.
  function packageChoices(packages, plugin) {
    const seen = new Set();
    return (packages || []).filter((p) => p.id && p.version && (!plugin || p.id === plugin))
      .sort((a, b) => String(a.id).localeCompare(String(b.id)) || cmpVersion(b.version, a.version))
      .filter((p) => { const k = `${p.id}@${p.version}`; if (seen.has(k)) return false; seen.add(k); return true; });
  }
  const SIGNATURE_NOTE = { trusted: '', untrusted: ' (signed by a key not trusted)', unsigned: ' (unsigned)', bad: ' (BAD SIGNATURE)' };
  const packageOption = (p, installed) => h('option', { value: `${p.id}@${p.version}`, 'data-signature': p.signature },
    `${p.id}@${p.version}${SIGNATURE_NOTE[p.signature] ?? ''}${installed && p.version === installed ? ' (installed)' : ''}`);
  // What installing the chosen package needs beyond an operator's role.
  function signatureHint(p) {
    if (!p) return '';
    if (p.signature === 'unsigned') return 'It is not signed: installing it needs “Allow unsigned” (admins only).';
    if (p.signature === 'untrusted') return 'Its signer is not trusted here: installing it needs “Allow untrusted” (admins only), or an admin trusts the key.';
    if (p.signature === 'bad') return 'Its signature does not verify: it will be refused.';
    return '';
  }
  // An uploaded package joins the choices (for its signature hint) until the catalog is read again.
  function uploaded(choices, r) {
    if (choices.some((c) => c.id === r.plugin && c.version === r.version)) return;
    choices.push({ id: r.plugin, version: r.version, signature: /^signed/.test(r.signer || '') ? 'signed' : 'unsigned' });
  }
  const MAX_UPLOAD = 64 * 1024 * 1024;
  function size(n) {
    if (n == null) return DASH;
    if (n < 0) return 'no limit';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Number(n), i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i ? `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}` : `${v} B`;
  }

  // A file input that publishes the chosen package file to the package store at once, then
  // chooses it in `select` (adding it there). `plugin`: the one plugin it must be of (an
  // upgrade). busy(): an upload is under way.
  function uploadField(select, idPrefix, { plugin, onUploaded } = {}) {
    const id = idPrefix + '-package-file';
    const input = h('input', { type: 'file', id, name: 'package_file' });
    const status = h('div', { class: 'upload-status', 'data-field': 'upload', role: 'status' });
    let busy = false;
    async function send(file, replace) {
      status.replaceChildren(h('span', { class: 'muted' }, `Uploading ${file.name} (${size(file.size)})…`));
      if (file.size > MAX_UPLOAD) return status.replaceChildren(h('div', { class: 'form-error' }, `${file.name} is ${size(file.size)}: a package is at most 64 MiB.`));
      busy = true; input.disabled = true;
      let r;
      try { r = await api('POST', '/packages' + (replace ? '?replace=true' : ''), file); } catch (e) {
        busy = false; input.disabled = false;
        const note = errorNote(e, replace ? 'replace published packages' : 'publish packages');
        const again = e.status === 409 && can('admin') && !replace
          ? btn('Upload again, replacing it', { 'data-action': 'replace-package', class: 'danger-outline' }, () => confirmReplace(file, e.message)) : null;
        return status.replaceChildren(...[note, again].filter(Boolean));
      }
      busy = false; input.disabled = false;
      const value = `${r.plugin}@${r.version}`;
      const wrong = plugin && r.plugin !== plugin;
      status.replaceChildren(h('p', { class: wrong ? 'bad' : 'ok' }, r.message || `${r.outcome}: ${value}`,
        wrong ? ` It is a package of ${r.plugin}, not of ${plugin}: choose another.` : null));
      if (wrong) return;
      let opt = [...select.options].find((o) => o.value === value);
      if (!opt) {
        opt = h('option', { value, 'data-signature': /^signed/.test(r.signer || '') ? 'uploaded' : 'unsigned' }, `${value} (uploaded, ${/^signed/.test(r.signer || '') ? 'signed' : 'unsigned'})`);
        select.options[0].after(opt); // first, under the placeholder
      }
      if (onUploaded) onUploaded(r);
      select.value = value;
      select.dispatchEvent(new Event('change'));
    }
    // Replacing a published package changes the bytes behind its version: asked first, saying
    // so plainly when that version is installed (its running instances' bytes change).
    async function confirmReplace(file, message) {
      const m = /published as (\S+?)\/(\S+?) already/.exec(message || '');
      const pkg = m ? { id: m[1], version: m[2].replace(/_/g, '+') } : null;
      const name = pkg ? `${pkg.id}@${pkg.version}` : file.name;
      const running = pkg ? ((S.overview && S.overview.plugins) || []).find((p) => p.id === pkg.id && (p.version === pkg.version || upgradeTo(p.pending_upgrade) === pkg.version)) : null;
      const ok = await ask({
        title: `Replace the published ${name}?`, confirm: 'Replace', danger: true,
        body: [
          h('p', null, `The package published as ${name} is replaced by ${file.name}: whoever installs ${name} from now on gets the new bytes.`),
          running ? h('p', { class: 'warning', 'data-field': 'installed' }, h('strong', null, `${name} is installed`),
            `: the bytes of ${pkg.id}'s running instances change (they run the new package when they next start), without a new version or an approval.`)
            : h('p', { class: 'hint' }, pkg ? `${name} is not installed here.` : 'If that version is installed, the bytes of its running instances change.'),
          h('p', { class: 'hint' }, 'Publishing a new version instead keeps what runs now as it is.'),
        ],
      });
      if (ok !== undefined) send(file, true);
    }
    input.addEventListener('change', () => { const f = input.files && input.files[0]; if (f) send(f, false); });
    return {
      el: h('div', { class: 'form-field upload' },
        h('label', { for: id }, 'Or upload a package file'), input,
        h('p', { class: 'hint' }, 'It is published to the catalog at once (up to 64 MiB), then chosen above.'), status),
      busy: () => busy,
    };
  }

  // ---- install -----------------------------------------------------------------------------

  async function installPage(gen) {
    const head = h('div', { class: 'page-head' }, h('h1', null, 'Install a plugin'));
    if (!can('operator')) return paint(gen, head, empty(h('p', null, `Your role (${S.me.role}) may not install plugins: ask an operator.`)));
    const admin = can('admin');
    let catalog = [], catalogProblem = null;
    try { catalog = (await api('GET', '/catalog')).packages || []; } catch (e) {
      if (e.status === 401) return fail(e, 'view the catalog');
      catalogProblem = e;
    }
    const choices = packageChoices(catalog);
    const installed = new Map(((S.overview && S.overview.plugins) || []).map((p) => [p.id, p]));
    const byPlugin = new Map();
    for (const p of choices) { if (!byPlugin.has(p.id)) byPlugin.set(p.id, []); byPlugin.get(p.id).push(p); }
    const select = h('select', { id: 'install-package', name: 'package' },
      h('option', { value: '' }, choices.length ? 'Choose a package…' : 'No package is published'),
      [...byPlugin].map(([id, list]) => h('optgroup', { label: installed.has(id) ? `${id} (installed: ${installed.get(id).version})` : id },
        list.map((p) => packageOption(p, installed.has(id) ? installed.get(id).version : null)))));
    const signHint = h('p', { class: 'hint sign-hint', 'data-field': 'signature' });
    const upload = uploadField(select, 'install', { onUploaded: (r) => uploaded(choices, r) });
    const manifest = admin ? h('textarea', { id: 'install-manifest', name: 'manifest', rows: 8, spellcheck: 'false', autocomplete: 'off', placeholder: '[plugin]\nid = "…"\nversion = "…"' }) : null;
    const tenantsIn = h('input', { id: 'install-tenants', name: 'tenants', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', placeholder: 'acme, globex' });
    const all = checkRow('all_tenants', 'All tenants', '(including later ones)', 'install');
    const approve = checkRow('approve', 'Approve what it asks for at once', null, 'install');
    const downgrade = checkRow('allow_downgrade', 'Allow a version older than the installed one', null, 'install');
    const unsigned = admin ? checkRow('allow_unsigned', 'Allow an unsigned package', null, 'install') : null;
    const untrusted = admin ? checkRow('allow_untrusted', 'Allow a package signed by a key not trusted here', null, 'install') : null;
    const submit = h('button', { type: 'submit', class: 'primary', 'data-action': 'install' }, 'Install');
    const result = h('div', { class: 'form-result', 'data-field': 'outcome', 'aria-live': 'polite' });
    const tenantsHint = h('p', { class: 'hint' }, 'The tenants whose events it receives, comma-separated. Needed for a new plugin; left empty, an installed plugin keeps its tenants.');
    // Both given is refused when submitted (not one silently preferred): nothing is disabled.
    const syncTenants = () => { result.replaceChildren(); };
    all.input.addEventListener('change', syncTenants);
    select.addEventListener('change', () => {
      const p = choices.find((c) => `${c.id}@${c.version}` === select.value);
      signHint.textContent = signatureHint(p);
      result.replaceChildren();
    });
    const form = h('form', { class: 'card form install', 'data-section': 'install', novalidate: true },
      h('h2', null, 'Package'),
      catalogProblem ? h('p', { class: 'bad' }, `The catalog could not be read: ${catalogProblem.message}`) : null,
      fieldRow('install-package', 'Package from the catalog', select), signHint,
      upload.el,
      manifest ? h('details', { class: 'manifest-source' }, h('summary', null, 'Or install from a manifest (development: nothing is verified)'),
        fieldRow('install-manifest', 'Manifest (TOML)', manifest, 'Used instead of a package: leave the package unchosen. Admins only.')) : null,
      h('h2', null, 'Tenants'),
      fieldRow('install-tenants', 'Tenants', tenantsIn), all.el, tenantsHint,
      h('h2', null, 'Options'),
      h('div', { class: 'checks' }, approve.el, downgrade.el, unsigned && unsigned.el, untrusted && untrusted.el),
      admin ? null : h('p', { class: 'hint' }, 'Installing an unsigned or untrusted package, or from a manifest, takes an admin.'),
      h('div', { class: 'actions form-buttons' }, submit),
      result);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      result.replaceChildren();
      const problem = (m, el) => { result.replaceChildren(h('div', { class: 'form-error', role: 'alert' }, m)); if (el) el.focus(); };
      if (upload.busy()) return problem('Wait for the upload to finish.');
      const pkg = select.value, man = manifest ? manifest.value : '';
      if (pkg && man.trim()) return problem('Choose a package or give a manifest, not both.', select);
      if (!pkg && !man.trim()) return problem(admin ? 'Choose a package (or upload one, or give a manifest).' : 'Choose a package, or upload one.', select);
      const body = man.trim() ? { manifest: man } : { package: pkg };
      const ts = splitList(tenantsIn.value);
      if (all.input.checked && ts.length) return problem('Give tenants or check “All tenants”, not both.', tenantsIn);
      const badTenant = ts.find((t) => !TOKEN.test(t));
      if (badTenant) return problem(`“${badTenant}” is not a tenant: 1 to 64 letters, digits, - or _.`, tenantsIn);
      if (all.input.checked) body.all_tenants = true; else if (ts.length) body.tenants = ts;
      const id = pkg ? pkg.split('@')[0] : null;
      if (id && !body.all_tenants && !body.tenants && S.overview && !(S.overview.plugins || []).some((p) => p.id === id)) {
        return problem('A new plugin needs its tenants: give them, or check “All tenants”.', tenantsIn);
      }
      body.approve = approve.input.checked;
      body.allow_downgrade = downgrade.input.checked;
      if (unsigned) body.allow_unsigned = unsigned.input.checked;
      if (untrusted) body.allow_untrusted = untrusted.input.checked;
      submit.disabled = true; submit.textContent = 'Installing…';
      let o;
      try { o = await api('POST', '/plugins', body); } catch (err) {
        submit.disabled = false; submit.textContent = 'Install';
        const note = errorNote(err, body.manifest || body.allow_unsigned || body.allow_untrusted ? 'install what no trusted key signed' : 'install plugins');
        if (note) { result.replaceChildren(note); result.scrollIntoView({ block: 'nearest' }); }
        return;
      }
      submit.disabled = false; submit.textContent = 'Install';
      const plugin = (o && o.plugin) || id;
      result.replaceChildren(h('div', { class: 'outcome' }, outcome(o),
        plugin ? h('p', null, link('#/plugins/' + enc(plugin), `Open ${plugin}`), o && o.state === 'pending_approval' ? [' · ', link('#/approvals', 'Approvals')] : null) : null));
      result.scrollIntoView({ block: 'nearest' });
      if (S.me) gotOverview(await api('GET', '/overview').catch(() => null));
    });
    syncTenants();
    paint(gen, head,
      h('p', { class: 'hint' }, 'Install a published package (see the ', link('#/catalog', 'catalog'), '), or upload one first. Upgrading an installed plugin is on its page.'),
      form);
  }

  // ---- upgrade -----------------------------------------------------------------------------

  async function upgradeDialog(s) {
    const id = s.id, at = location.hash;
    let catalog;
    try { catalog = (await api('GET', '/catalog')).packages || []; } catch (e) { return fail(e, 'view the catalog'); }
    if (location.hash !== at) return; // moved on meanwhile: no dialog over another page
    const choices = packageChoices(catalog, id);
    const admin = can('admin');
    const newer = choices.filter((p) => !s.version || cmpVersion(p.version, s.version) > 0);
    const select = h('select', { id: 'upgrade-package', name: 'package' },
      h('option', { value: '' }, choices.length ? 'Choose a version…' : `No package of ${id} is published`),
      choices.map((p) => packageOption(p, s.version)));
    if (newer.length) select.value = `${newer[0].id}@${newer[0].version}`;
    const signHint = h('p', { class: 'hint sign-hint', 'data-field': 'signature' });
    const syncHint = () => { signHint.textContent = signatureHint(choices.find((c) => `${c.id}@${c.version}` === select.value)); };
    select.addEventListener('change', syncHint);
    syncHint();
    const upload = uploadField(select, 'upgrade', { plugin: id, onUploaded: (r) => uploaded(choices, r) });
    const tenantsIn = h('input', { id: 'upgrade-tenants', name: 'tenants', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', placeholder: `keep: ${tenants(s)}` });
    const approve = checkRow('approve', 'Approve what it asks for at once', null, 'upgrade');
    const downgrade = checkRow('allow_downgrade', 'Allow an older version (a downgrade)', null, 'upgrade');
    const unsigned = admin ? checkRow('allow_unsigned', 'Allow an unsigned package', null, 'upgrade') : null;
    const untrusted = admin ? checkRow('allow_untrusted', 'Allow a package signed by a key not trusted here', null, 'upgrade') : null;
    let sent = null;
    await ask({
      title: `Upgrade ${id}?`,
      confirm: 'Upgrade',
      body: [
        h('p', null, `It runs ${s.version || 'no version'} now.`),
        h('label', { for: 'upgrade-package' }, 'Version'), select, signHint,
        upload.el,
        h('label', { for: 'upgrade-tenants' }, 'Tenants (optional, comma-separated)'), tenantsIn,
        h('p', { class: 'hint' }, 'Left empty, it keeps its tenants.'),
        h('div', { class: 'checks' }, approve.el, downgrade.el, unsigned && unsigned.el, untrusted && untrusted.el),
        h('p', { class: 'hint' }, 'Without approval, an upgrade that asks for more rights waits for it; the running version keeps running.'),
      ],
      read: () => {
        if (upload.busy()) throw 'Wait for the upload to finish.';
        if (!select.value) throw 'Choose a version, or upload a package of it.';
        const body = { package: select.value, approve: approve.input.checked, allow_downgrade: downgrade.input.checked };
        const ts = splitList(tenantsIn.value);
        if (ts.length) body.tenants = ts;
        if (unsigned) body.allow_unsigned = unsigned.input.checked;
        if (untrusted) body.allow_untrusted = untrusted.input.checked;
        return body;
      },
      submit: async (body) => {
        try { sent = await api('POST', `/plugins/${enc(id)}/upgrade`, body); } catch (e) {
          return errorLine(e, body.allow_unsigned || body.allow_untrusted ? 'install what no trusted key signed' : 'upgrade plugins');
        }
        return null;
      },
    });
    if (sent) { notice(outcome(sent)); route(true); }
  }

  // ---- a plugin's logs ---------------------------------------------------------------------

  function logLine(l) {
    const where = [l.instance, l.host].filter((x) => x != null && x !== '').join('@');
    return h('div', { class: 'log-line', 'data-stream': l.stream },
      h('span', { class: 'log-at', 'data-field': 'at' }, l.at ? h('time', { datetime: l.at, title: l.at }, when(l.at)) : DASH),
      h('span', { class: 'log-where', 'data-field': 'instance', title: where }, where || DASH),
      h('span', { class: 'log-stream', 'data-field': 'stream' }, text(l.stream)),
      h('span', { class: 'log-text', 'data-field': 'text' }, l.text == null ? '' : String(l.text)));
  }
  // The section is painted at once; its lines come after (the page does not wait for them).
  function logsSection(id) {
    const body = h('div', { class: 'logs-body' }, h('p', { class: 'loading' }, 'Loading…'));
    const lines = h('select', { id: 'logs-lines', name: 'lines', 'aria-label': 'How many lines' },
      [50, 100, 200, 500, 1000].map((n) => h('option', { value: n, selected: n === 100 }, `newest ${n}`)));
    const refresh = btn('Refresh', { 'data-action': 'refresh-logs' }, () => load());
    const el = h('section', { class: 'card wide logs', id: 'logs', 'data-section': 'logs' },
      h('div', { class: 'section-head' }, h('h2', null, 'Logs'), h('div', { class: 'actions' }, lines, refresh)), body);
    let seq = 0;
    async function load() {
      const mine = ++seq;
      refresh.disabled = true;
      let r, err;
      try { r = await api('GET', `/plugins/${enc(id)}/logs?lines=${enc(lines.value)}`); } catch (e) { err = e; }
      if (mine !== seq || !el.isConnected) return;
      refresh.disabled = false;
      if (err) { const note = errorNote(err, 'read logs'); return note && body.replaceChildren(note); }
      const found = (r && r.lines) || [];
      if (!found.length) return body.replaceChildren(h('div', { class: 'empty small', 'data-field': 'logs-empty' }, h('p', null, (r && r.message) || 'No output is kept.')));
      const box = h('div', { class: 'log', role: 'log', tabindex: '0', 'aria-label': `Logs of ${id}` }, found.map(logLine));
      body.replaceChildren(h('p', { class: 'hint' }, `${r.message || found.length + ' lines'}, oldest first; stderr in red.`), box);
      box.scrollTop = box.scrollHeight; // the newest at the bottom, in view
    }
    lines.addEventListener('change', () => load());
    return { el, load };
  }

  // ---- streams -----------------------------------------------------------------------------

  const STREAM_KINDS = [['events', 'Events', /_EVENTS$/], ['dlq', 'Dead letters', /_DLQ$/], ['audit', 'Audit', /_AUDIT$/]];
  const streamKind = (s, i) => (STREAM_KINDS.find(([, , re]) => re.test(s.name)) || STREAM_KINDS[i] || [])[0];
  // A duration as typed (7d, 12h, 1h30m, 90s, or seconds) in seconds; '' is undefined.
  function parseDuration(raw, label) {
    const t = String(raw).trim().toLowerCase();
    if (!t) return undefined;
    if (t === 'none') return 0;
    if (/^[0-9]+$/.test(t)) return Number(t);
    const UNIT = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
    if (!/^(\s*[0-9]+\s*[smhdw])+$/.test(t)) throw `${label}: “${raw}” is not a duration (e.g. 7d, 12h, 1h30m, or seconds).`;
    let secs = 0;
    for (const [, n, u] of t.matchAll(/([0-9]+)\s*([smhdw])/g)) secs += Number(n) * UNIT[u];
    return secs;
  }
  // A size as typed (10G, 512MiB, 1.5GB, bytes; none or -1 for no limit); '' is undefined.
  function parseSize(raw, label) {
    const t = String(raw).trim();
    if (!t) return undefined;
    if (/^(none|-1)$/i.test(t)) return -1;
    const m = /^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?$/i.exec(t);
    if (!m) throw `${label}: “${raw}” is not a size (e.g. 10G, 512M, bytes, or none).`;
    const n = Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()));
    if (n < 1) throw `${label}: a size is 1 byte or more (or none).`;
    return n;
  }
  // The same values the other way, for the fields to start with what is in force.
  function durationText(secs) {
    if (secs == null) return '';
    for (const [u, n] of [['d', 86400], ['h', 3600], ['m', 60]]) if (secs && secs % n === 0) return `${secs / n}${u}`;
    return String(secs);
  }
  // A limit's duration, exact and short: 7d, 1d 12h, 2m (dur() rounds for ages).
  function span(secs) {
    const parts = [];
    let s = Math.round(secs);
    for (const [u, n] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) if (s >= n) { parts.push(Math.floor(s / n) + u); s %= n; }
    return parts.join(' ') || '0s';
  }
  function sizeText(b) {
    if (b == null) return '';
    if (b < 0) return 'none';
    for (const [u, n] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]]) if (b && b % n === 0) return `${b / n}${u}`;
    return String(b);
  }

  function streamCard(s) {
    const row = (field, label, value) => h('tr', null, h('th', { scope: 'row' }, label), h('td', { 'data-field': field }, value));
    const c = s.cluster;
    return h('section', { class: 'card stream', 'data-stream': s.name },
      h('h2', null, s.name),
      h('div', { class: 'table-wrap' }, h('table', { class: 'kv stream-table' }, h('tbody', null,
        row('messages', 'Messages', num(s.messages)),
        row('bytes', 'Size', h('span', { title: `${s.bytes} bytes` }, size(s.bytes))),
        row('sequences', 'Sequences', s.messages ? `${s.first_sequence} – ${s.last_sequence}` : `none (last ${num(s.last_sequence)})`),
        row('consumers', 'Consumers', num(s.consumers)),
        row('replicas', 'Replicas', num(s.replicas)),
        row('max_age_secs', 'Keeps for', s.max_age_secs ? span(s.max_age_secs) : 'no age limit'),
        row('max_bytes', 'Keeps at most', s.max_bytes < 0 ? 'no size limit' : h('span', { title: `${s.max_bytes} bytes` }, size(s.max_bytes))),
        row('duplicate_window_secs', 'Duplicate window', s.duplicate_window_secs ? span(s.duplicate_window_secs) : 'none'),
        row('storage', 'Storage', text(s.storage)),
        row('discard', 'When full', text(s.discard)),
        row('append_only', 'Append only', text(s.append_only))))),
      c ? h('div', { class: 'placement', 'data-field': 'cluster' },
        h('h3', null, `Placement: cluster ${c.name || '?'}`, c.leader ? `, leader ${c.leader}` : ', no leader'),
        (c.replicas || []).length ? table([
          ['name', 'Peer', (p) => text(p.name)],
          ['current', 'State', (p) => [p.offline ? badge('red', 'offline') : null, p.current ? badge('green', 'current') : badge('amber', 'catching up')]],
          ['lag', 'Lag', (p) => num(p.lag), true],
          ['active_ms', 'Last active', (p) => (p.active_ms == null ? DASH : ago(p.active_ms / 1000)), true],
        ], c.replicas, (p) => ({ 'data-peer': p.name }), 'stack peers') : h('p', { class: 'none' }, 'Only the leader holds it.'))
        : h('p', { class: 'hint', 'data-field': 'cluster' }, 'Not clustered: one server holds it.'));
  }

  function provisionForm(current) {
    const inputs = {};
    const mk = (name, value, attrs) => { const i = h('input', Object.assign({ id: 'provision-' + name.replace(/_/g, '-'), name, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off' }, attrs)); i.value = value; inputs[name] = i; return i; };
    const events = current.events || {};
    mk('replicas', events.replicas != null ? String(events.replicas) : '', { type: 'number', min: 1, max: 5, inputmode: 'numeric', placeholder: '1' });
    const groups = STREAM_KINDS.map(([k, label]) => {
      const s = current[k] || {};
      return h('fieldset', { class: 'limits' }, h('legend', null, label),
        fieldRow('provision-' + k.replace(/_/g, '-') + '-max-age-secs', 'Keep for', mk(`${k}_max_age_secs`, durationText(s.max_age_secs), { placeholder: 'default' })),
        fieldRow('provision-' + k.replace(/_/g, '-') + '-max-bytes', 'Keep at most', mk(`${k}_max_bytes`, sizeText(s.max_bytes), { placeholder: 'default' })));
    });
    const submit = h('button', { type: 'submit', class: 'primary', 'data-action': 'provision' }, 'Provision…');
    const err = h('div', { class: 'form-result', 'aria-live': 'polite' });
    const form = h('form', { class: 'card form provision', 'data-section': 'provision', novalidate: true },
      h('h2', null, 'Provision'),
      h('p', { class: 'hint' }, 'Creates the streams, buckets and package store that are missing and sets them to these settings; safe to repeat. The fields start with what is in force; an empty one takes the default.'),
      fieldRow('provision-replicas', 'Replicas (1 to 5; 3 or 5 in a cluster)', inputs.replicas),
      h('div', { class: 'limit-groups' }, groups),
      h('p', { class: 'hint' }, 'Ages: 7d, 12h, 30m or seconds (0: no age limit; for audit: until the size limit). Sizes: 10G, 512M or bytes; none for no limit.'),
      h('div', { class: 'actions form-buttons' }, submit), err);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.replaceChildren();
      const body = {};
      try {
        const r = inputs.replicas.value.trim();
        if (r) {
          if (!/^[0-9]+$/.test(r) || Number(r) < 1 || Number(r) > 5) throw 'Replicas: a whole number from 1 to 5.';
          body.replicas = Number(r);
        }
        for (const [k, label] of STREAM_KINDS) {
          const age = parseDuration(inputs[`${k}_max_age_secs`].value, `${label}: keep for`);
          const bytes = parseSize(inputs[`${k}_max_bytes`].value, `${label}: keep at most`);
          if (age !== undefined) body[`${k}_max_age_secs`] = age;
          if (bytes !== undefined) body[`${k}_max_bytes`] = bytes;
        }
      } catch (m) { err.replaceChildren(h('div', { class: 'form-error', role: 'alert' }, String(m))); return; }
      const lines = [`Replicas: ${body.replicas ?? '1 (default)'}`, ...STREAM_KINDS.map(([k, label]) => {
        const age = body[`${k}_max_age_secs`], bytes = body[`${k}_max_bytes`];
        return `${label}: keep for ${age === undefined ? 'the default' : age ? span(age) : 'no age limit'}, at most ${bytes === undefined ? 'the default' : size(bytes)}`;
      })];
      let done = null;
      await ask({
        title: 'Provision the streams?', confirm: 'Provision',
        body: [list(lines, 'provision-lines'),
          h('p', { class: 'hint' }, 'Lowering a limit may delete the oldest messages at once. Changing replicas moves data between servers.')],
        submit: async () => {
          try { done = await api('POST', '/streams/provision', body); } catch (x) { return errorLine(x, 'provision streams'); }
          return null;
        },
      });
      if (!done) return;
      notice([h('p', null, done.message || 'Provisioned.'),
        list((done.provisioned || []).map((d) => `${d.name} (${d.kind}): ${d.outcome}`), 'also')]);
      window.scrollTo(0, 0);
      route(true);
    });
    return form;
  }

  async function streamsPage(gen) {
    let r, problem = null;
    try { r = await api('GET', '/streams'); } catch (e) {
      if (e.status === 401 || e.status === 0 || !can('admin')) return loadFailed(gen, e);
      problem = e; // not provisioned, perhaps: an admin may still provision
    }
    const streams = (r && r.streams) || [];
    const current = {};
    streams.forEach((s, i) => { const k = streamKind(s, i); if (k && !current[k]) current[k] = s; });
    paint(gen, h('div', { class: 'page-head' }, h('h1', null, 'Streams')),
      problem ? h('div', { class: 'form-error', role: 'alert' }, h('strong', null, 'The streams could not be read: '), problem.message, ' ', h('code', { class: 'error-code' }, problem.code)) : null,
      h('div', { class: 'streams', 'data-section': 'streams' },
        streams.length ? streams.map(streamCard) : problem ? null : empty(h('p', null, 'No streams.'))),
      can('admin') ? provisionForm(current) : h('p', { class: 'hint' }, 'Only admins may provision the streams.'));
  }

  // ---- events: publish, explain ------------------------------------------------------------

  function publishForm(explainInput) {
    const input = (name, attrs) => h('input', Object.assign({ id: 'publish-' + name.replace(/_/g, '-'), name, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off' }, attrs));
    const tenant = input('tenant', { placeholder: 'acme', required: true });
    const type = input('type', { placeholder: 'order.created', required: true });
    const version = input('schema_version', { placeholder: '1.0.0' });
    const contentType = h('select', { id: 'publish-content-type', name: 'content_type' },
      h('option', { value: 'msgpack' }, 'MessagePack (the SDK’s default)'), h('option', { value: 'json' }, 'JSON'));
    const subject = input('subject', { placeholder: 'optional, e.g. order-42' });
    const id = input('id', { placeholder: 'optional: a fresh one' });
    const data = h('textarea', { id: 'publish-data', name: 'data', rows: 6, spellcheck: 'false', autocomplete: 'off', placeholder: '{}' });
    const dataError = h('p', { class: 'editor-error', role: 'alert', 'data-field': 'data-error' });
    const submit = h('button', { type: 'submit', class: 'primary', 'data-action': 'publish' }, 'Publish');
    const result = h('div', { class: 'form-result', 'data-field': 'published', 'aria-live': 'polite' });
    data.addEventListener('input', () => { dataError.textContent = ''; });
    const form = h('form', { class: 'card form publish', 'data-section': 'publish', novalidate: true },
      h('h2', null, 'Publish an event'),
      h('div', { class: 'form-grid' },
        fieldRow('publish-tenant', 'Tenant', tenant), fieldRow('publish-type', 'Type', type),
        fieldRow('publish-schema-version', 'Schema version', version), fieldRow('publish-content-type', 'Encoding', contentType),
        fieldRow('publish-subject', 'Subject', subject), fieldRow('publish-id', 'Id', id)),
      h('p', { class: 'hint' }, 'Publishing the same id again within the stream’s duplicate window stores nothing new.'),
      fieldRow('publish-data', 'Data (JSON)', data), dataError,
      h('div', { class: 'actions form-buttons' }, submit), result);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      result.replaceChildren(); dataError.textContent = '';
      if (!tenant.value.trim()) return tenant.focus();
      if (!type.value.trim()) return type.focus();
      let value = {};
      if (data.value.trim()) {
        try { value = JSON.parse(data.value); } catch (x) {
          dataError.textContent = `The data is not valid JSON: ${x.message}`;
          return data.focus();
        }
      }
      const body = { tenant: tenant.value.trim(), type: type.value.trim(), content_type: contentType.value, data: value };
      if (version.value.trim()) body.schema_version = version.value.trim();
      if (subject.value.trim()) body.subject = subject.value.trim();
      if (id.value.trim()) body.id = id.value.trim();
      submit.disabled = true; submit.textContent = 'Publishing…';
      let r;
      try { r = await api('POST', '/events', body); } catch (x) {
        submit.disabled = false; submit.textContent = 'Publish';
        const note = errorNote(x, 'publish events');
        if (note) { result.replaceChildren(note); result.scrollIntoView({ block: 'nearest' }); }
        return;
      }
      submit.disabled = false; submit.textContent = 'Publish';
      if (explainInput) explainInput.value = r.id;
      result.replaceChildren(h('div', { class: 'outcome' },
        h('p', { class: r.duplicate ? 'unchanged' : null }, r.duplicate ? 'A duplicate: nothing new was stored. ' : 'Published. ', r.message || ''),
        h('p', null, 'Id ', h('code', { 'data-field': 'event_id' }, r.id), ' · ',
          h('a', { href: '#/events/' + enc(r.id), 'data-action': 'explain-published' }, 'Explain it'))));
    });
    return form;
  }

  function explainForm(id, params) {
    const input = h('input', { id: 'explain-event-id', name: 'event_id', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', required: true, placeholder: 'the event’s id' });
    input.value = id || '';
    const since = h('input', { id: 'explain-since', name: 'since', autocomplete: 'off', spellcheck: 'false', placeholder: '2025-01-31T00:00:00Z' });
    const from = h('input', { id: 'explain-from-sequence', name: 'from_sequence', inputmode: 'numeric', autocomplete: 'off', placeholder: 'the first' });
    since.value = params.get('since') || ''; from.value = params.get('from_sequence') || '';
    const err = h('p', { class: 'editor-error', role: 'alert' });
    const form = h('form', { class: 'card form explain', 'data-section': 'explain', role: 'search', novalidate: true },
      id ? null : [h('h2', null, 'Explain an event'),
        h('p', { class: 'hint' }, 'Where an event is for each plugin subscribed to its type: pending, under way, done, dead-lettered…')],
      fieldRow('explain-event-id', 'Event id', input),
      h('details', { class: 'search-from', open: !!(since.value || from.value) }, h('summary', null, 'Search from (a long stream)'),
        fieldRow('explain-since', 'Stored since (RFC 3339)', since), fieldRow('explain-from-sequence', 'Or from sequence', from)),
      err,
      h('div', { class: 'actions form-buttons' }, h('button', { type: 'submit', class: 'primary', 'data-action': 'explain' }, 'Explain')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      err.textContent = '';
      const v = input.value.trim(), s = since.value.trim(), f = from.value.trim();
      if (!v) return input.focus();
      if (s && f) { err.textContent = 'Give a time or a sequence, not both.'; return; }
      if (f && !/^[0-9]+$/.test(f)) { err.textContent = 'A sequence is a whole number.'; return from.focus(); }
      go('#/events/' + enc(v) + query({ since: s, from_sequence: f }));
    });
    return { form, input };
  }

  const EXPLAIN_STATUS = {
    not_matched: ['grey', 'not matched'], pending: ['grey', 'pending'], under_way: ['blue', 'under way'],
    waiting_retry: ['amber', 'waiting to retry'], done: ['green', 'done'], dead_lettered: ['red', 'dead-lettered'], unknown: ['amber', 'unknown'],
  };
  const explainBadge = (st) => { const [c, l] = EXPLAIN_STATUS[st] || ['grey', human(st || 'unknown')]; return badge(c, l, { 'data-status': st }); };
  function explainDetail(p) {
    const lf = p.last_failure;
    switch (p.status) {
      case 'not_matched': case 'unknown': return text(p.why);
      case 'pending': return h('span', { class: 'muted' }, 'Not yet sent to it.');
      case 'done': return h('span', { class: 'muted' }, 'Handled and acknowledged.');
      case 'under_way': return [`Attempt ${num(p.attempt)} by ${text(p.instance)}, since `, time(p.since)];
      case 'waiting_retry': return [`${plural(p.attempts || 0, 'attempt', 'attempts')} made; held by ${text(p.instance)}; retry at `, time(p.until),
        lf ? h('div', { class: 'failure-line' }, h('code', null, text(lf.code)), ' ', text(lf.reason)) : null];
      case 'dead_lettered': return [link('#/dead-letters/' + enc(p.dead_letter), `Dead letter ${p.dead_letter}`), ` after ${plural(p.attempts || 0, 'attempt', 'attempts')}`,
        h('div', { class: 'failure-line' }, h('code', null, text(p.code)), ' ', text(p.reason))];
      default: return p.why ? text(p.why) : DASH;
    }
  }
  function copyView(c) {
    const plugins = c.plugins || [];
    const replay = Array.isArray(c.replay_for) ? c.replay_for : null;
    return h('section', { class: 'card copy', 'data-section': 'copy', 'data-sequence': c.sequence },
      h('h2', null, replay ? `Replay for ${replay[0]} / ${replay[1]}, sequence ${c.sequence}` : `Stored as sequence ${c.sequence}`),
      dl([['sequence', 'Sequence', num(c.sequence)], ['stored_at', 'Stored', time(c.stored_at)], ['tenant', 'Tenant', text(c.tenant)],
        ['type', 'Type', text(c.type)], ['schema_version', 'Schema version', text(c.schema_version)], ['subject', 'NATS subject', h('code', null, text(c.subject))],
        replay ? ['replay_for', 'Replay for', [link('#/plugins/' + enc(replay[0]), replay[0]), ` / ${replay[1]}`]] : null]),
      plugins.length ? table([
        ['plugin', 'Plugin', (p) => link('#/plugins/' + enc(p.plugin), p.plugin)],
        ['subscription', 'Subscription', (p) => text(p.subscription)],
        ['status', 'Status', (p) => explainBadge(p.status)],
        ['detail', 'Detail', (p) => h('div', { class: 'explain-detail' }, explainDetail(p))],
        plugins.some((p) => p.note) ? ['note', 'Note', (p) => (p.note ? h('span', { class: 'note' }, p.note) : DASH)] : null,
      ].filter(Boolean), plugins, (p) => ({ 'data-plugin': p.plugin, 'data-subscription': p.subscription, 'data-status': p.status }), 'stack explain')
        : h('p', { class: 'none' }, 'No plugin is subscribed to its type.'));
  }
  function explanationView(x) {
    const silent = x.dispatchers_silent || [], answered = x.dispatchers_answered || [];
    const copies = x.copies || [];
    return h('div', { class: 'explanation', 'data-section': 'explanation', 'data-event': x.event_id },
      h('h2', { class: 'explanation-title' }, 'Event ', h('code', null, x.event_id), `: ${plural(copies.length, 'copy', 'copies')}`),
      silent.length ? h('div', { class: 'warning', role: 'note', 'data-field': 'dispatchers_silent' },
        h('strong', null, `${plural(silent.length, 'dispatcher', 'dispatchers')} did not answer: `), silent.join(', '),
        '. What they hold is not known: an event one of them is working on may show as pending or unknown.') : null,
      h('p', { class: 'hint', 'data-field': 'dispatchers_answered' }, answered.length ? `Answered: ${answered.join(', ')}.` : 'No dispatcher answered.'),
      copies.map(copyView));
  }

  async function eventsPage(gen, id, params) {
    const ex = explainForm(id, params);
    let explained = null;
    if (id) {
      const q = query({ since: params.get('since'), from_sequence: params.get('from_sequence') });
      try { explained = explanationView(await api('GET', `/events/${enc(id)}/explain${q}`)); } catch (e) {
        if (e.status === 401) return fail(e, 'explain events');
        explained = e.status === 404
          ? empty(h('p', { 'data-field': 'not-found' }, e.message), h('p', { class: 'hint' }, 'Check the id, or search from an earlier time or sequence.'))
          : errorNote(e, 'explain events');
      }
    }
    const publish = can('operator') ? publishForm(ex.input) : null;
    const head = id
      ? [h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('#/events', 'Events'), ' / ', id), h('div', { class: 'page-head' }, h('h1', null, 'Explain an event'))]
      : h('div', { class: 'page-head' }, h('h1', null, 'Events'));
    const noPublish = h('p', { class: 'hint' }, 'Only operators may publish events.');
    paint(gen, head,
      id ? [ex.form, explained, publish] : h('div', { class: 'event-forms' }, publish || h('section', { class: 'card' }, h('h2', null, 'Publish an event'), noPublish), ex.form));
  }

  // ---- start -------------------------------------------------------------------------------

  // The pages index.html's nav does not list: their links go before Operators (admins only).
  for (const [nav, label] of [['catalog', 'Catalog'], ['install', 'Install'], ['events', 'Events'], ['streams', 'Streams'], ['trust', 'Trust'], ['services', 'Services']]) {
    $('#nav').insertBefore(h('a', { href: '#/' + nav, 'data-nav': nav, id: 'nav-' + nav, hidden: nav === 'install' }, label), $('#nav-operators'));
  }

  $('#sign-out').addEventListener('click', signOut);
  boot();
})();
