// An SVG chart: stacked bars of input and output tokens per day, and cost as a line.
// An SVG element (the chart itself included: the overview makes the <svg> it draws into).
export function svgElement(tag, attrs, text) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}
const s = svgElement;

// A "nice" axis top at or above max, whose quarters are round numbers too.
function niceMax(max, floor = 1) {
  if (!(max > 0)) return floor;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 1.2, 1.6, 2, 4, 6, 8, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/**
 * Draw into `svg` (its children are replaced in one go, so a refresh does not flicker).
 * rows: [{key: 'YYYY-MM-DD', inputTokens, outputTokens, cost}]; fmt: {compact, money, day, num}.
 */
export function drawUsageChart(svg, rows, fmt, width) {
  const W = Math.max(300, Math.round(width || 720)), H = W < 500 ? 220 : 260;
  const m = { t: 12, r: W < 500 ? 44 : 56, b: 26, l: W < 500 ? 40 : 52 };
  const iw = W - m.l - m.r, ih = H - m.t - m.b;
  const tokMax = niceMax(Math.max(0, ...rows.map((r) => r.inputTokens + r.outputTokens)));
  const costMax = niceMax(Math.max(0, ...rows.map((r) => r.cost)), 0.04);
  const n = Math.max(1, rows.length), step = iw / n, bw = Math.max(1, step * 0.7);
  const y = (v) => m.t + ih - (v / tokMax) * ih, yc = (v) => m.t + ih - (v / costMax) * ih;
  const parts = [];
  const total = rows.reduce((a, r) => a + r.inputTokens + r.outputTokens, 0);
  const cost = rows.reduce((a, r) => a + r.cost, 0);
  const label = rows.length
    ? `Tokens and cost per day, ${fmt.day(rows[0].key)} to ${fmt.day(rows[rows.length - 1].key)}: ${fmt.num(total)} tokens, ${fmt.money(cost)}`
    : 'Tokens and cost per day: no data';
  parts.push(s('title', {}, label));
  // Grid and axes (4 steps).
  for (let i = 0; i <= 4; i++) {
    const v = (tokMax * i) / 4, yy = y(v);
    parts.push(s('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: yy, y2: yy }));
    parts.push(s('text', { class: 'axis', x: m.l - 6, y: yy + 4, 'text-anchor': 'end' }, fmt.compact(v)));
    const c = (costMax * i) / 4;
    parts.push(s('text', { class: 'axis cost-axis', x: W - m.r + 6, y: yc(c) + 4 }, c >= 1000 ? `$${fmt.compact(c)}` : fmt.money(c)));
  }
  // Bars.
  const bars = s('g', { class: 'bars' });
  const every = Math.ceil(n / Math.max(2, Math.floor(iw / 64)));
  rows.forEach((r, i) => {
    const x = m.l + i * step + (step - bw) / 2;
    const g = s('g', {});
    g.append(s('title', {}, `${fmt.day(r.key)}: ${fmt.num(r.inputTokens)} input, ${fmt.num(r.outputTokens)} output tokens, ${fmt.money(r.cost)}`));
    const yi = y(r.inputTokens), yo = y(r.inputTokens + r.outputTokens);
    g.append(s('rect', { class: 'in', x, y: yi, width: bw, height: m.t + ih - yi }));
    g.append(s('rect', { class: 'out', x, y: yo, width: bw, height: yi - yo }));
    // A transparent full-height target so the tooltip is easy to reach.
    g.append(s('rect', { class: 'hit', x: m.l + i * step, y: m.t, width: step, height: ih }));
    bars.append(g);
    if (i % every === 0) {
      parts.push(s('text', { class: 'axis', x: x + bw / 2, y: H - 8, 'text-anchor': 'middle' }, fmt.day(r.key)));
    }
  });
  parts.push(bars);
  // Cost line.
  // The cost line stops at today: later days of the period have not happened yet.
  const today = new Date().toISOString().slice(0, 10);
  const past = rows.filter((r) => !/^\d{4}-\d\d-\d\d$/.test(r.key) || r.key <= today);
  if (past.length) {
    const pts = past.map((r, i) => `${(m.l + i * step + step / 2).toFixed(1)},${yc(r.cost).toFixed(1)}`);
    parts.push(s('polyline', { class: 'cost', points: pts.join(' ') }));
    if (past.length <= 62) past.forEach((r, i) => parts.push(s('circle', { class: 'cost-dot', cx: m.l + i * step + step / 2, cy: yc(r.cost), r: 2.5 })));
  }
  parts.push(s('line', { class: 'baseline', x1: m.l, x2: W - m.r, y1: m.t + ih, y2: m.t + ih }));
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('width', W);
  svg.setAttribute('height', H);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.replaceChildren(...parts);
}
