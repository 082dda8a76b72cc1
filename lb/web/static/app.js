// The shell: versioned module loading, the router, the auth flow and the header.
//
// Versioning: the page loads app.js?v=<version> (static_url). Every other module is imported
// dynamically with the same query string (import.meta.url's), so an upgrade never mixes files
// from two releases and each module is loaded once (one URL, one instance).
const Q = new URL(import.meta.url).search;
const load = (path) => import(new URL(`./${path}${Q}`, import.meta.url).href);

// What the server hands the page (lb/web/pages.py): its screens, the nav's links and this router's table,
// and the API's limits and choices for the screens (ctx.config).
const config = JSON.parse(document.getElementById('shell-data').textContent);
const ROUTES = new Map(config.screens.map((s) => [s.path, s]));
const AUTH_TITLES = { setup: 'Set a password', login: 'Log in', totp: 'Two-factor code' };

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const logoutButton = document.getElementById('logout');
let lib; // {api, ui, f, chart}
let seq = 0; // bumps on every screen change; a stale screen stops painting
let cleanups = [];
let authScreen = null; // 'setup' | 'login' | 'totp' while one is shown
let checking = null;

function teardown() {
  seq += 1;
  for (const fn of cleanups.splice(0)) { try { fn(); } catch (err) { console.error(err); } }
}

function showLoading() {
  main.removeAttribute('data-screen');
  main.replaceChildren(lib.ui.h('p', { class: 'muted loading' }, 'Loading…'));
}

// Mount a screen module's default export: async (ctx) => paints with ctx.paint(...), then ctx.ready().
async function mount(screen, file, title, exportName = 'default') {
  teardown();
  const token = seq;
  document.title = `${title} · Codex-LB`;
  showLoading();
  const ctx = {
    ...lib,
    config,
    alive: () => token === seq,
    onCleanup: (fn) => cleanups.push(fn),
    paint: (...nodes) => { if (token === seq) main.replaceChildren(...nodes); },
    ready: () => { if (token === seq) main.dataset.screen = screen; },
    authDone: (state) => decide(state),
    logout,
  };
  try {
    const mod = await load(`screens/${file}.js`);
    if (!ctx.alive()) return;
    await mod[exportName](ctx);
  } catch (err) {
    if (!ctx.alive() || err.auth) return;
    if (!(err instanceof lib.api.ApiError)) console.error(err);
    const retry = lib.ui.h('button', { class: 'btn', type: 'button', onclick: () => render() }, 'Try again');
    ctx.paint(lib.ui.h('section', { class: 'panel error-state' },
      lib.ui.h('h1', {}, title),
      lib.ui.h('p', { role: 'alert' }, `Could not load this page: ${err.message || err}`), retry));
  }
}

function setNav(visible) {
  nav.hidden = !visible;
  logoutButton.hidden = !visible;
  const path = location.pathname;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === path) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function showAuth(kind) {
  if (authScreen === kind) return; // already there: keep what the user typed
  authScreen = kind;
  setNav(false);
  mount(kind, 'auth', AUTH_TITLES[kind], kind);
}

function render() {
  authScreen = null;
  const { name, label } = ROUTES.get(location.pathname) || ROUTES.get('/');
  setNav(true);
  mount(name, name, label);
}

// Session state → the screen it calls for.
function decide(state) {
  if (!state.isPasswordConfigured) showAuth('setup');
  else if (state.authenticated) render();
  else if (!state.isPasswordVerified) showAuth('login');
  else showAuth('totp');
}

// Ask the API where we stand (on load, after a 401, after log-out).
function check(fallback) {
  if (checking) return checking;
  checking = lib.api.get(`${lib.api.AUTH}/session`)
    .then(decide)
    .catch((err) => {
      if (fallback) showAuth(fallback);
      else fatal(err);
    })
    .finally(() => { checking = null; });
  return checking;
}

// After an explicit log-out the next login starts at the overview (a 401 instead returns to where the user was).
async function logout() {
  teardown();
  if (location.pathname !== '/') history.replaceState(null, '', '/');
  try {
    await lib.api.post(`${lib.api.AUTH}/logout`);
  } catch {
    // Whatever the answer, the session check below shows where we stand.
  }
  check('login');
}

function fatal(err) {
  main.replaceChildren(lib.ui.h('section', { class: 'panel error-state' },
    lib.ui.h('h1', {}, 'Codex-LB'),
    lib.ui.h('p', { role: 'alert' }, `The dashboard could not start: ${err.message || err}`),
    lib.ui.h('button', { class: 'btn', type: 'button', onclick: () => check() }, 'Try again')));
}

// Internal links are real <a href>s; the router takes the clicks it can serve.
document.addEventListener('click', (event) => {
  const a = event.target.closest && event.target.closest('a[href]');
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
    || event.shiftKey || event.altKey || (a.target && a.target !== '_self') || a.hasAttribute('download')) return;
  const to = new URL(a.href, location.href);
  if (to.origin !== location.origin || !ROUTES.has(to.pathname)) return;
  event.preventDefault();
  if (authScreen) return; // nothing to navigate to until signed in
  if (to.pathname !== location.pathname || to.search !== location.search) history.pushState(null, '', to.pathname + to.search);
  render();
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});
window.addEventListener('popstate', () => { if (!authScreen) render(); });
logoutButton.addEventListener('click', logout);
window.addEventListener('unhandledrejection', (event) => {
  // An auth redirect already took the user to the right screen: not an error.
  if (event.reason && event.reason.auth) event.preventDefault();
});

try {
  const [api, ui, f, chart] = await Promise.all(['api.js', 'ui.js', 'format.js', 'chart.js'].map(load));
  lib = { api, ui, f, chart };
  api.onAuthRequired((code) => {
    if (authScreen) {
      // Only the TOTP screen can learn that its password session is gone.
      if (authScreen === 'totp' && code === 'authentication_required') check('login');
      return;
    }
    teardown(); // stop the screen (and its refresh timer) at once
    check(code === 'totp_required' ? 'totp' : 'login');
  });
  check();
} catch (err) {
  console.error(err);
  main.textContent = 'The dashboard could not load its scripts. Reload the page to try again.';
}
