// Small DOM helpers. No innerHTML with data, no inline styles (the CSP forbids them).
// Sibling modules are imported with this module's own ?v= query, so an upgrade is never stale.
const f = await import(new URL(`./format.js${new URL(import.meta.url).search}`, import.meta.url));

// h('button', {class: 'btn', onclick: fn, 'data-x': 1}, 'text', child, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string' && !k.includes('-')) el[k] = v; // hidden, disabled, checked, value
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// <time> with a relative text and the exact ISO time in its title.
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: `${iso} (${f.dateTime(iso)})` }, f.relative(iso));
}

// A read whose failure only costs some names: [] instead, unless the session has ended.
export const soft = (promise) => promise.catch((err) => { if (err.auth) throw err; return []; });

// Names for the ids in logs and usage: accounts by email, API keys by name.
export async function names(api) {
  const [accounts, keys] = await Promise.all([
    soft(api.get('/api/accounts').then((d) => d.accounts)),
    soft(api.get('/api/api-keys').then((d) => d.apiKeys)),
  ]);
  return { accountName: new Map(accounts.map((a) => [a.id, a.email])), keyName: new Map(keys.map((k) => [k.id, k.name])) };
}

export const badge = (status, attrs = {}) => h('span', { class: `badge s-${status}`, ...attrs }, status);

// A horizontal bar; the width goes through the CSSOM, which the CSP allows.
export function bar(percent, label, title) {
  const p = typeof percent === 'number' ? Math.max(0, Math.min(100, percent)) : null;
  const fill = h('span', { class: `bar-fill${p >= 90 ? ' hot' : p >= 70 ? ' warm' : ''}` });
  fill.style.width = `${p ?? 0}%`;
  return h('div', { class: 'meter', title: title || null },
    h('span', { class: 'meter-label' }, label),
    h('span', { class: 'bar', role: 'progressbar', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100',
      'aria-valuenow': p === null ? null : String(Math.round(p)) }, fill),
    h('span', { class: 'meter-value' }, p === null ? '—' : f.pct(percent)));
}

// An error line placed next to the control that caused it.
export function alertBox() {
  const el = h('p', { class: 'alert', role: 'alert', hidden: true });
  el.show = (err) => {
    if (err && err.auth) return; // the shell shows the login / TOTP screen
    el.className = 'alert';
    el.textContent = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong.';
    el.hidden = false;
  };
  el.ok = (text) => { el.className = 'alert ok'; el.textContent = text; el.hidden = false; };
  el.clear = () => { el.hidden = true; el.textContent = ''; };
  return el;
}

// Disable a button while an action runs; errors go to `alert` (if given).
export async function busy(button, alert, action) {
  if (button) button.disabled = true;
  alert?.clear();
  try {
    return await action();
  } catch (err) {
    if (alert) alert.show(err);
    else if (!err.auth) console.error(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// A table that scrolls inside its own wrapper on narrow screens.
export function table(headers, body, caption) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((t) => (typeof t === 'string'
      ? h('th', { scope: 'col' }, t) : h('th', { scope: 'col', class: t.class }, t.text))))),
    body));
}

export const emptyRow = (cols, text) => h('tr', { class: 'empty' }, h('td', { colspan: String(cols) }, text));

// A modal confirmation; resolves true when the user confirms.
export function confirm(title, message, okLabel = 'Delete') {
  return new Promise((resolve) => {
    const ok = h('button', { class: 'btn danger', type: 'submit', value: 'ok' }, okLabel);
    const cancel = h('button', { class: 'btn', type: 'button' }, 'Cancel');
    const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': 'dlg-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'dlg-title' }, title),
        h('p', {}, message),
        h('div', { class: 'row end' }, cancel, ok)));
    cancel.addEventListener('click', () => dlg.close('cancel'));
    dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue === 'ok'); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

// <label for=id>text</label> + control, stacked.
export const field = (label, control, hint) => h('div', { class: 'field' },
  h('label', { for: control.id }, label), control, hint ? h('small', { class: 'muted' }, hint) : null);

export const section = (title, ...children) => h('section', { class: 'panel stack' }, h('h2', {}, title), children);

// Password managers want a user name next to a password; the dashboard has one user.
export const username = () => h('input', { type: 'text', autocomplete: 'username', value: 'admin', hidden: true, tabindex: '-1', 'aria-hidden': 'true', readOnly: true });
