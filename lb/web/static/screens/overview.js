// Overview: the period's cards and a chart of tokens and cost per day. Refreshed in place every 30 s.
const REFRESH_MS = 30000;
const OTHER = [['paused', 'paused'], ['rateLimited', 'rate limited'], ['quotaExceeded', 'quota exceeded'], ['deactivated', 'deactivated']];

export default async function overview(ctx) {
  const { h, alertBox } = ctx.ui;
  const f = ctx.f;
  const chartErr = alertBox();
  const [data, usage] = await load(ctx, chartErr);

  const cards = {};
  const card = (id, title) => {
    const value = h('p', { class: 'card-value' });
    const sub = h('p', { class: 'card-sub muted' });
    const el = h('article', { class: 'card', 'data-testid': `card-${id}` }, h('h2', {}, title), value, sub);
    cards[id] = { el, value, sub };
    return el;
  };
  const status = h('p', { class: 'muted small refresh-status', 'aria-live': 'polite' });
  const svg = ctx.chart.svgElement('svg', { 'data-testid': 'usage-chart', class: 'chart' });
  const chartBox = h('div', { class: 'chart-box' }, svg);
  const chartNote = h('p', { class: 'muted small' });
  const legend = h('ul', { class: 'legend', 'aria-label': 'Legend' },
    h('li', {}, h('span', { class: 'swatch in', 'aria-hidden': 'true' }), 'Input tokens'),
    h('li', {}, h('span', { class: 'swatch out', 'aria-hidden': 'true' }), 'Output tokens'),
    h('li', {}, h('span', { class: 'swatch cost', 'aria-hidden': 'true' }), 'Cost (right axis)'));

  ctx.paint(
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), status),
    h('div', { class: 'cards' },
      card('accounts', 'Accounts'), card('tokens', 'Tokens this period'), card('cache', 'Cache hits, last 24 h'),
      card('cost', 'Cost this period'),
      card('requests', 'Requests, last 24 h'), card('error-rate', 'Error rate, last 24 h')),
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'chart-title' }, 'Tokens and cost per day'), legend),
      chartNote, chartBox, chartErr));

  let rows = [];
  let lastWidth = 0;
  const draw = () => {
    lastWidth = chartBox.clientWidth;
    ctx.chart.drawUsageChart(svg, rows, f, lastWidth);
  };

  const set = (id, raw, value, sub, extra = {}) => {
    const c = cards[id];
    c.el.setAttribute('data-value', String(raw));
    for (const [k, v] of Object.entries(extra)) c.el.setAttribute(k, String(v));
    if (c.value.textContent !== value) c.value.textContent = value;
    if (c.sub.textContent !== sub) c.sub.textContent = sub;
  };

  const apply = (d, u) => {
    const a = d.accountCounts, s = d.usageSummary;
    const others = OTHER.filter(([k]) => a[k] > 0).map(([k, label]) => `${f.num(a[k])} ${label}`);
    set('accounts', a.active, `${f.num(a.active)} of ${f.num(a.total)} active`,
      a.total === 0 ? 'No accounts yet' : others.length ? others.join(' · ') : 'All accounts active', { 'data-total': a.total });
    const range = f.period(s.periodStart, s.periodEnd);
    set('tokens', s.totalTokens, f.num(s.totalTokens),
      `${f.num(s.inputTokens)} in · ${f.num(s.outputTokens)} out · ${f.num(s.cachedInputTokens)} cached · ${range}`);
    set('cache', d.cachedInputShare, f.share(d.cachedInputShare),
      d.requestCount ? 'Input tokens read from the prompt cache' : 'No requests in the last 24 h');
    set('cost', s.totalCost, f.money(s.totalCost), range);
    set('requests', d.requestCount, f.num(d.requestCount), 'Requests of any status');
    set('error-rate', d.errorRate, f.pct(d.errorRate), d.requestCount ? 'Failed requests (error, rate limit, quota)' : 'No requests in the last 24 h');
    if (u) {
      rows = u.rows;
      chartNote.textContent = `${range} (UTC days). Hover a bar for its figures.`;
      chartErr.clear();
      draw();
    }
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    status.title = new Date().toISOString();
  };
  apply(data, usage);
  if (!usage) draw();
  ctx.ready();

  // Refresh without a reload; skipped while the tab is hidden, caught up when it is shown again.
  let running = false;
  const refresh = async () => {
    if (running || document.hidden || !ctx.alive()) return;
    running = true;
    try {
      const [d, u] = await load(ctx, chartErr);
      if (ctx.alive()) apply(d, u);
    } catch (err) {
      if (!err.auth && ctx.alive()) status.textContent = `Could not refresh: ${err.message}`;
    } finally {
      running = false;
    }
  };
  const timer = setInterval(refresh, REFRESH_MS);
  const onVisible = () => { if (!document.hidden) refresh(); };
  document.addEventListener('visibilitychange', onVisible);
  const ro = new ResizeObserver(() => { if (Math.abs(chartBox.clientWidth - lastWidth) > 4) draw(); });
  ro.observe(chartBox);
  ctx.onCleanup(() => { clearInterval(timer); document.removeEventListener('visibilitychange', onVisible); ro.disconnect(); });
}

// The overview, then the usage of its billing period (a chart failure keeps the cards).
async function load(ctx, chartErr) {
  const d = await ctx.api.get('/api/dashboard/overview');
  let u = null;
  try {
    u = await ctx.api.get('/api/usage', { groupBy: 'day', since: d.usageSummary.periodStart, until: d.usageSummary.periodEnd });
  } catch (err) {
    if (err.auth) throw err;
    chartErr.show(`Could not load the chart: ${err.message}`);
  }
  return [d, u];
}
