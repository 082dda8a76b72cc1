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

// Muted text, and the muted dash of an empty cell.
export const muted = (text) => h('span', { class: 'muted' }, text);
export const dash = () => muted('—');

// <time> with a relative text and the exact ISO time in its title.
export function time(iso) {
  if (!iso) return dash();
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

// Run `action` (a reload of a table's rows) with `el` greyed out meanwhile; errors go to `alert`.
export function whileStale(el, alert, action) {
  el.classList.add('stale');
  return busy(null, alert, action).finally(() => el.classList.remove('stale'));
}

// A table that scrolls inside its own wrapper on narrow screens. body: its tbody, or [tbody, tfoot].
export function table(headers, body, caption) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((t) => (typeof t === 'string'
      ? h('th', { scope: 'col' }, t) : h('th', { scope: 'col', class: t.class }, t.text))))),
    body));
}

export const emptyRow = (cols, text) => h('tr', { class: 'empty' }, h('td', { colspan: String(cols) }, text));

// A tbody drawn from records with ids, each row marked by the data attribute `key` holding its id.
// empty() is the row shown when there is none; changed(list) runs when records come or go.
export function rowList(tbody, { key, render, empty, changed }) {
  let list = [];
  const rowOf = (id) => tbody.querySelector(`tr[${key}="${CSS.escape(id)}"]`);
  const after = () => {
    if (!list.length) tbody.replaceChildren(empty());
    changed(list);
  };
  const rows = {
    paint(records = list) {
      list = [...records];
      tbody.replaceChildren(...list.map(render));
      after();
    },
    // A record drawn again in place, or added at the end. refocus: the button pressed went with the
    // old row, so focus goes to the new row's first button instead of the page, or to the one that
    // refocus selects (a CSS selector) when the pressed one is not the first.
    put(record, refocus) {
      const known = list.some((x) => x.id === record.id);
      list = known ? list.map((x) => (x.id === record.id ? record : x)) : [...list, record];
      const old = known && rowOf(record.id);
      if (!old) { rows.paint(); return; }
      const fresh = render(record);
      old.replaceWith(fresh);
      if (refocus) fresh.querySelector(typeof refocus === 'string' ? refocus : 'button').focus();
    },
    drop(id) {
      list = list.filter((x) => x.id !== id);
      rowOf(id)?.remove();
      after();
    },
  };
  return rows;
}

// A one-time code's input: digits only, at most `digits` of them, however they came (typed, pasted, filled
// in). No maxLength: it would cut a pasted "123 456" before the space is dropped.
export function codeInput(id, digits) {
  const el = h('input', { id, type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', spellcheck: 'false', class: 'code' });
  el.addEventListener('input', () => {
    const typed = el.value.replace(/\D/g, '').slice(0, digits);
    if (typed !== el.value) el.value = typed;
  });
  return el;
}

// A whole number from min to max, or nothing: el.read() is null when empty, else the number, or NaN for
// anything out of range, a fraction, or what the browser could not read as a number (its value is then
// "", like an empty one's). type=number gives the spinner and the numeric keyboard; the checks are ours,
// for the forms that use it are novalidate and say what is wrong in their own words.
export function wholeInput(id, min, max) {
  const el = h('input', { id, type: 'number', inputmode: 'numeric', min: String(min), max: String(max), step: '1', autocomplete: 'off' });
  el.read = () => {
    if (el.validity.badInput) return NaN;
    if (el.value === '') return null;
    const n = Number(el.value);
    return Number.isInteger(n) && n >= min && n <= max ? n : NaN;
  };
  return el;
}

// [a Copy button for `text`, its status]; without a clipboard, `shown` (the element showing the text) is
// selected for a copy by hand, and the status says so, naming the text as `what` ("key", "code").
export function copyButton(text, shown, what) {
  const status = h('span', { class: 'small', role: 'status' });
  const copy = h('button', { class: 'btn small', type: 'button' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      if (!navigator.clipboard) throw new Error('no clipboard');
      await navigator.clipboard.writeText(text);
      status.className = 'small ok-text';
      status.textContent = 'Copied.';
    } catch {
      status.className = 'small error-text';
      status.textContent = `Could not copy: select the ${what} and copy it by hand.`;
      const range = document.createRange();
      range.selectNodeContents(shown);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
    }
  });
  return [copy, status];
}

// A modal dialog around a form: the title, the content, Cancel and `ok`; focus starts on `focus` (else
// Cancel, the safe choice). Resolves true when it closes with "ok". Without `submit`, ok is a submit
// button of value "ok" that closes it (confirm's); with it, a submit runs submit(close) instead, which
// calls close() once its work is done, so that a failed one keeps the dialog and what was typed.
// opened(dlg, cancel), if given, runs once it is shown: the <dialog> (to close it from outside, as when the
// screen goes away) and its Cancel button (to rename it once there is nothing left to cancel).
export function dialog({ title, content, ok, focus, submit, opened }) {
  return new Promise((resolve) => {
    const cancel = h('button', { class: 'btn', type: 'button' }, 'Cancel');
    const form = h('form', { method: 'dialog', novalidate: true },
      h('h2', { id: 'dlg-title' }, title), content, h('div', { class: 'row end' }, cancel, ok));
    const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': 'dlg-title' }, form);
    cancel.addEventListener('click', () => dlg.close('cancel'));
    if (submit) form.addEventListener('submit', (event) => { event.preventDefault(); submit(() => dlg.close('ok')); });
    dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue === 'ok'); });
    document.body.append(dlg);
    dlg.showModal();
    (focus || cancel).focus();
    if (opened) opened(dlg, cancel);
  });
}

// A modal confirmation; resolves true when the user confirms.
export const confirm = (title, message, okLabel = 'Delete') => dialog({
  title, content: h('p', {}, message), ok: h('button', { class: 'btn danger', type: 'submit', value: 'ok' }, okLabel) });

// <label for=id>text</label> + control, stacked.
export const field = (label, control, hint) => h('div', { class: 'field' },
  h('label', { for: control.id }, label), control, hint ? h('small', { class: 'muted' }, hint) : null);

export const section = (title, ...children) => h('section', { class: 'panel stack' }, h('h2', {}, title), children);

// Password managers want a user name next to a password; the dashboard has one user.
export const username = () => h('input', { type: 'text', autocomplete: 'username', value: 'admin', hidden: true, tabindex: '-1', 'aria-hidden': 'true', readOnly: true });
