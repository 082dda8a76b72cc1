// Numbers, money, percentages and times for people.
const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compactFmt = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const usd = (digits) => new Intl.NumberFormat(undefined, {
  style: 'currency', currency: 'USD', minimumFractionDigits: digits, maximumFractionDigits: digits });
const usd2 = usd(2), usd4 = usd(4);
const pctFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const shareFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });

const isNum = (n) => typeof n === 'number' && Number.isFinite(n);
export const num = (n) => (isNum(n) ? intFmt.format(n) : '—');
export const compact = (n) => (isNum(n) ? compactFmt.format(n) : '—');
export const money = (n) => {
  if (!isNum(n)) return '—';
  return n !== 0 && Math.abs(n) < 0.01 ? usd4.format(n) : usd2.format(n);
};
export const pct = (n) => (isNum(n) ? `${pctFmt.format(n)}%` : '—');
// A share the API rounds to 2 decimals (cachedInputShare), shown with both: 87.50%.
export const share = (n) => (isNum(n) ? `${shareFmt.format(n)}%` : '—');
export const ms = (n) => (!isNum(n) ? '—' : n < 1000 ? `${intFmt.format(n)} ms` : `${pctFmt.format(n / 1000)} s`);

export const dateTime = (iso) => (iso ? dateTimeFmt.format(new Date(iso)) : '—');
export const date = (iso) => (iso ? dateFmt.format(new Date(iso)) : '—');
// A UTC day key (YYYY-MM-DD) as "Nov 5".
export const day = (key) => dayFmt.format(new Date(`${key}T00:00:00Z`));

// "3 min ago", "in 2 h"; exact times go in a title.
export function relative(iso, now = Date.now()) {
  if (!iso) return '—';
  const diff = new Date(iso).getTime() - now;
  const s = Math.round(Math.abs(diff) / 1000);
  if (s < 45) return diff < 0 ? 'just now' : 'in a moment';
  const steps = [[60, 's', 1], [3600, 'min', 60], [86400, 'h', 3600], [86400 * 45, 'd', 86400]];
  let text = null;
  for (const [limit, unit, size] of steps) {
    if (s < limit) { text = `${Math.max(1, Math.round(s / size))} ${unit}`; break; }
  }
  if (!text) return date(iso);
  return diff < 0 ? `${text} ago` : `in ${text}`;
}

// The time left until `iso` as "mm:ss" ("00:00" once it has passed), for a countdown of a few minutes.
export function countdown(iso, now = Date.now()) {
  const s = Math.max(0, Math.ceil((new Date(iso).getTime() - now) / 1000));
  const p = (n) => String(n).padStart(2, '0');
  return `${p(Math.floor(s / 60))}:${p(s % 60)}`;
}

// A billing period [start, end) as "Nov 1 – Nov 30, 2026" (the end is exclusive).
export function period(start, end) {
  if (!start || !end) return '';
  const last = new Date(new Date(end).getTime() - 1);
  const f = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', year: 'numeric', timeZone: 'UTC' });
  return f.formatRange ? f.formatRange(new Date(start), last) : `${f.format(new Date(start))} – ${f.format(last)}`;
}

// datetime-local values are local wall-clock times; the API wants ISO UTC.
export function fromLocalInput(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}
export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// "1 account", "3 accounts".
export const plural = (n, noun) => `${num(n)} ${noun}${n === 1 ? '' : 's'}`;

export const statusLabel = (s) => String(s || '').replace(/_/g, ' ');
