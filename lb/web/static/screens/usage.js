// Usage: groups by day, model, account or API key over a range (default: the billing period).

export default async function usage(ctx) {
  const { h, field, alertBox, whileStale, table, emptyRow, names, muted } = ctx.ui;
  const { api, f } = ctx;
  const groups = ctx.config.usageGroups;
  const { accountName, keyName } = await names(api);

  const group = h('select', { id: 'usage-group' }, groups.map(([v, t]) => h('option', { value: v }, t)));
  const since = h('input', { id: 'usage-since', type: 'datetime-local' });
  const until = h('input', { id: 'usage-until', type: 'datetime-local' });
  const reset = h('button', { class: 'btn ghost small', type: 'button' }, 'Reset to billing period');
  const alert = alertBox();
  const tbody = h('tbody');
  const tfoot = h('tfoot');
  const summary = h('p', { class: 'muted small' });
  const figures = ['Requests', 'Errors', 'Input', 'Output', 'Cached', 'Cache hits', 'Total tokens', 'Cost'].map((text) => ({ text, class: 'num' }));
  const grid = table([groups[0][1], ...figures], [tbody, tfoot], 'Usage');
  const keyHead = grid.querySelector('thead th'); // named after the grouping

  const label = (by, key) => {
    if (key === null) return muted(by === 'account' ? 'No account' : 'No API key');
    if (by === 'day') return h('span', { title: key }, f.day(key));
    const name = by === 'account' ? accountName.get(key) : by === 'apiKey' ? keyName.get(key) : null;
    if (by === 'model') return key;
    return h('span', {}, name || muted(by === 'account' ? 'Deleted account' : 'Deleted key'), ' ', h('code', { class: 'muted small' }, key));
  };
  const cells = (r) => [
    h('td', { class: 'num' }, f.num(r.requests)), h('td', { class: 'num' }, f.num(r.errors)),
    h('td', { class: 'num' }, f.num(r.inputTokens)), h('td', { class: 'num' }, f.num(r.outputTokens)),
    h('td', { class: 'num' }, f.num(r.cachedInputTokens)),
    h('td', { class: 'num', 'data-testid': 'cache-share', title: 'Cached input of the input tokens' }, f.share(r.cachedInputShare)),
    h('td', { class: 'num' }, f.num(r.totalTokens)),
    h('td', { class: 'num' }, f.money(r.cost))];

  let gen = 0;
  const load = async () => {
    const my = ++gen;
    const by = group.value;
    const d = await api.get('/api/usage', { groupBy: by, since: f.fromLocalInput(since.value), until: f.fromLocalInput(until.value) });
    if (my !== gen || !ctx.alive()) return;
    if (!since.value) since.value = f.toLocalInput(d.since);
    if (!until.value) until.value = f.toLocalInput(d.until);
    keyHead.textContent = groups.find(([v]) => v === by)[1];
    tbody.replaceChildren(...d.rows.map((r) => h('tr', { 'data-group': r.key === null ? '' : r.key }, h('th', { scope: 'row' }, label(by, r.key)), cells(r))));
    if (!d.rows.length) tbody.replaceChildren(emptyRow(9, 'No usage in this range.'));
    tfoot.replaceChildren(h('tr', {}, h('th', { scope: 'row' }, 'Total'), cells(d.totals)));
    summary.textContent = `${f.dateTime(d.since)} – ${f.dateTime(d.until)}: ${f.num(d.totals.totalTokens)} tokens, ${f.money(d.totals.cost)}`;
  };
  const reload = () => whileStale(tbody, alert, load);
  group.addEventListener('change', reload);
  since.addEventListener('change', reload);
  until.addEventListener('change', reload);
  reset.addEventListener('click', () => { since.value = ''; until.value = ''; reload(); });

  await load();
  ctx.paint(
    h('div', { class: 'page-head' }, h('h1', {}, 'Usage'), summary),
    h('form', { class: 'panel filters', 'aria-label': 'Range and grouping', onsubmit: (e) => e.preventDefault() },
      field('Group by', group), field('Since', since), field('Until', until), h('div', { class: 'field end' }, reset), alert),
    h('section', { class: 'panel flush' }, grid));
  ctx.ready();
}
