// Activity: the audit log (who changed what, when and from where), newest first, "Load more" by cursor.

export default async function activity(ctx) {
  const { h, alertBox, busy, table, emptyRow, time, names, dash, muted } = ctx.ui;
  const { api, f } = ctx;
  const { auditActions, limits } = ctx.config;
  const actionLabel = new Map(auditActions);
  // Names for the targets' ids: a deleted account or key keeps its id (a failure here only costs the names).
  const { accountName, keyName } = await names(api);

  const tbody = h('tbody');
  const more = h('button', { class: 'btn', type: 'button', hidden: true }, 'Load more');
  const moreAlert = alertBox();
  const count = h('p', { class: 'muted small', 'aria-live': 'polite' });
  let cursor = null, shown = 0;

  const target = (t) => {
    if (!t) return dash();
    if (t.type === 'settings') return 'Settings';
    const known = (t.type === 'account' ? accountName : keyName).get(t.id);
    return known || h('code', { title: t.type === 'account' ? 'Deleted account' : 'Deleted key' }, t.id);
  };
  // The detail as "name: value" pairs; the API never puts a secret in it.
  const value = (v) => (Array.isArray(v) ? v.join(', ') : v === null ? 'none' : String(v));
  const detail = (d) => {
    const pairs = Object.entries(d || {});
    if (!pairs.length) return dash();
    return h('span', { class: 'audit-detail' }, pairs.map(([k, v], i) => [i ? '; ' : '', muted(`${k}: `), value(v)]));
  };
  const row = (e) => h('tr', { 'data-audit-id': e.id, 'data-action': e.action,
    class: e.action === 'login.failed' ? 'failed' : null },
  h('td', { class: 'nowrap' }, time(e.at)),
  h('td', { class: 'nowrap' }, actionLabel.get(e.action) || e.action),
  h('td', {}, target(e.target)),
  h('td', { class: 'nowrap' }, e.ip ? h('code', {}, e.ip) : dash()),
  h('td', {}, detail(e.detail)));
  const paintCount = () => {
    count.textContent = shown ? `${f.num(shown)} ${shown === 1 ? 'entry' : 'entries'} shown${cursor ? ', more available' : ''}` : '';
  };

  const fetchPage = async () => {
    const q = { limit: limits.logPageSize };
    if (cursor) q.cursor = cursor;
    const d = await api.get('/api/audit-log', q);
    if (!ctx.alive()) return;
    tbody.append(...d.entries.map(row));
    shown += d.entries.length;
    cursor = d.nextCursor;
    more.hidden = !cursor;
    if (!shown) tbody.replaceChildren(emptyRow(5, 'No activity yet.'));
    paintCount();
  };
  more.addEventListener('click', () => busy(more, moreAlert, fetchPage));

  await fetchPage();
  ctx.paint(
    h('div', { class: 'page-head' }, h('h1', {}, 'Activity'), count),
    h('section', { class: 'panel flush' }, table(['Time', 'Action', 'Target', 'Address', 'Detail'], tbody,
      'Activity, newest first')),
    h('div', { class: 'row center' }, more), moreAlert);
  ctx.ready();
}
