// Request logs: filters, newest first, "Load more" by cursor.

export default async function logs(ctx) {
  const { h, field, alertBox, busy, whileStale, table, emptyRow, badge, time, soft, names, dash } = ctx.ui;
  const { api, f } = ctx;
  const { logStatuses, limits } = ctx.config;
  // Names for ids: the catalog, accounts and keys (a failure here only costs the names).
  const [models, { accountName, keyName }] = await Promise.all([
    soft(api.get('/api/models').then((d) => d.models)), names(api)]);

  const select = (id, all, options) => h('select', { id },
    h('option', { value: '' }, all), options.map(([v, t]) => h('option', { value: v }, t)));
  const filters = {
    status: select('filter-status', 'Any status', logStatuses.map((s) => [s, f.statusLabel(s)])),
    model: select('filter-model', 'Any model', models.map((m) => [m.id, m.id])),
    accountId: select('filter-account', 'Any account', [...accountName]),
    apiKeyId: select('filter-key', 'Any API key', [...keyName]),
    since: h('input', { id: 'filter-since', type: 'datetime-local' }),
    until: h('input', { id: 'filter-until', type: 'datetime-local' }),
  };
  const clear = h('button', { class: 'btn ghost small', type: 'button' }, 'Clear filters');
  const filterAlert = alertBox();

  const tbody = h('tbody');
  const more = h('button', { class: 'btn', type: 'button', hidden: true }, 'Load more');
  const moreAlert = alertBox();
  const count = h('p', { class: 'muted small', 'aria-live': 'polite' });
  let cursor = null, shown = 0, gen = 0;

  const query = () => {
    const q = { limit: limits.logPageSize };
    for (const [k, el] of Object.entries(filters)) {
      q[k] = el.type === 'datetime-local' ? f.fromLocalInput(el.value) : el.value;
    }
    return q;
  };
  const filtered = () => Object.values(filters).some((el) => el.value);
  const row = (r) => {
    const failed = r.status !== 'ok' && r.status !== 'cancelled';
    return h('tr', { 'data-request-id': r.requestId ?? '', 'data-log-id': r.id, class: failed ? 'failed' : null },
      h('td', { class: 'nowrap' }, time(r.requestedAt)),
      h('td', {}, badge(r.status, { 'data-testid': 'log-status' })),
      h('td', { class: 'nowrap' }, r.model),
      h('td', { class: 'nowrap' }, r.accountId ? (accountName.get(r.accountId) || h('code', { title: 'Deleted account' }, r.accountId)) : dash()),
      h('td', {}, r.apiKeyId ? (keyName.get(r.apiKeyId) || h('code', { title: 'Deleted key' }, r.apiKeyId)) : dash()),
      h('td', { class: 'num' }, f.num(r.inputTokens)),
      h('td', { class: 'num' }, f.num(r.outputTokens)),
      h('td', { class: 'num', 'data-testid': 'log-cached' }, f.num(r.cachedInputTokens)),
      h('td', { class: 'num' }, f.money(r.cost)),
      h('td', { class: 'num nowrap' }, f.ms(r.latencyMs)),
      h('td', { class: 'error-code' }, r.errorCode ? h('code', {}, r.errorCode) : dash()));
  };
  const paintCount = () => {
    count.textContent = shown ? `${f.plural(shown, 'request')} shown${cursor ? ', more available' : ''}` : '';
  };

  // First page (replace) or next page (append).
  const fetchPage = async (append) => {
    const my = ++gen;
    const q = query();
    if (append) q.cursor = cursor;
    const d = await api.get('/api/request-logs', q);
    if (my !== gen || !ctx.alive()) return false;
    if (!append) { tbody.replaceChildren(); shown = 0; }
    tbody.append(...d.requests.map(row));
    shown += d.requests.length;
    cursor = d.nextCursor;
    more.hidden = !cursor;
    if (!shown) tbody.replaceChildren(emptyRow(11, filtered() ? 'No request logs match these filters.' : 'No request logs yet.'));
    paintCount();
    return true;
  };
  const reload = () => whileStale(tbody, filterAlert, () => fetchPage(false));
  for (const el of Object.values(filters)) el.addEventListener('change', reload);
  clear.addEventListener('click', () => { for (const el of Object.values(filters)) el.value = ''; reload(); });
  more.addEventListener('click', () => busy(more, moreAlert, () => fetchPage(true)));

  await fetchPage(false);
  ctx.paint(
    h('div', { class: 'page-head' }, h('h1', {}, 'Request logs'), count),
    h('form', { class: 'panel filters', 'aria-label': 'Filters', onsubmit: (e) => e.preventDefault() },
      field('Status', filters.status), field('Model', filters.model), field('Account', filters.accountId),
      field('API key', filters.apiKeyId), field('Since', filters.since), field('Until', filters.until),
      h('div', { class: 'field end' }, clear), filterAlert),
    h('section', { class: 'panel flush' }, table(['Time', 'Status', 'Model', 'Account', 'API key',
      { text: 'Input', class: 'num' }, { text: 'Output', class: 'num' }, { text: 'Cached', class: 'num' },
      { text: 'Cost', class: 'num' }, { text: 'Latency', class: 'num' }, 'Error'], tbody, 'Request logs, newest first')),
    h('div', { class: 'row center' }, more), moreAlert);
  ctx.ready();
}
