// API keys: create (models, expiry, limits, caps), show a new key once with a Codex config and an OpenAI-compatible
// base URL, and manage keys.
// The screen is made of the parts below: the header and its count, the create form (its model checks,
// limit rows and caps), the box that reveals a key once, and the table (a row per key, its caps edited
// in a dialog).
export default async function keys(ctx) {
  const { api, ui } = ctx;
  const [models, first] = await Promise.all([api.get('/api/models').then((d) => d.models), api.get('/api/api-keys')]);
  const count = ui.h('p', { class: 'muted small' });
  const reveal = revealBox(ctx);
  const listed = keyTable(ctx, models, count, reveal);
  const form = createForm(ctx, models, (k) => {
    listed.rows.put(withoutPlaintext(k));
    reveal.show(k, 'New');
  });
  listed.rows.paint(first.apiKeys);
  ctx.paint(header(ctx, count), ui.section('Create a key', form), reveal.el, listed.el);
  ctx.ready();
}

// A key as the table keeps it: the plaintext is for the reveal box alone, gone with it once shown.
const withoutPlaintext = ({ key, ...kept }) => kept;

function header(ctx, count) {
  const { h } = ctx.ui;
  return h('div', { class: 'page-head' }, h('h1', {}, 'API keys'), count);
}

// -- the key, shown once ------------------------------------------------------------------

// The box that shows a new or regenerated key once, with what the Codex CLI needs and what an OpenAI-compatible
// tool needs, side by side: {el, show(key, verb)}. Every node holding the plaintext, the Copy buttons' closures
// included, is in the box, and Done empties it: nothing else keeps the key.
function revealBox(ctx) {
  const { h } = ctx.ui;
  const el = h('div', { class: 'reveal', hidden: true, tabindex: '-1' });
  const hide = () => { el.hidden = true; el.replaceChildren(); };
  const show = (k, verb) => {
    const keyCode = h('code', { class: 'secret' }, k.key);
    el.replaceChildren(
      h('h2', {}, `${verb} key “${k.name}”`),
      h('p', {}, h('strong', {}, 'Copy it now: '), 'this is the only time the key is shown.'),
      h('div', { class: 'key-line' }, h('span', { 'data-testid': 'new-key' }, keyCode), ...ctx.ui.copyButton(k.key, keyCode, 'key')),
      h('div', { class: 'two-col' },
        h('div', { class: 'stack' }, h('h3', {}, 'Codex CLI'),
          h('p', { class: 'muted' }, 'Put this in ~/.codex/config.toml and export the key in your shell.'),
          h('pre', { 'data-testid': 'codex-snippet' }, codexConfig(k, ctx.config.codexModel))),
        openaiBlock(ctx, k)),
      h('div', { class: 'row end' }, h('button', { class: 'btn ghost small', type: 'button', onclick: hide }, 'Done')));
    el.hidden = false;
    el.scrollIntoView({ block: 'nearest' });
    el.focus({ preventScroll: true });
  };
  return { el, show };
}

// The model a key's examples name: its first allowed one, else the catalog's first (the page's codexModel).
const exampleModel = (k, codexModel) => (k.allowedModels && k.allowedModels[0]) || codexModel;

// ~/.codex/config.toml for this server, and the export of the key.
function codexConfig(k, codexModel) {
  const model = exampleModel(k, codexModel);
  return [`model = "${model}"`, 'model_provider = "codexlb"', '', '[model_providers.codexlb]', 'name = "OpenAI"',
    `base_url = "${location.origin}/backend-api/codex"`, 'wire_api = "responses"', 'env_key = "CODEX_LB_API_KEY"', '',
    `export CODEX_LB_API_KEY=${k.key}`].join('\n');
}

// For tools that speak the OpenAI API (the openai SDK, editors, LangChain): the base URL and the key, each
// with its Copy button, then the SDK's two variables and a chat completion with them.
function openaiBlock(ctx, k) {
  const { h, copyButton } = ctx.ui;
  const baseUrl = `${location.origin}/v1`;
  const line = (label, text, what, testid) => {
    const shown = h('code', { class: 'secret', 'data-testid': testid }, text);
    return h('div', { class: 'key-line', role: 'group', 'aria-label': label },
      h('span', { class: 'muted small' }, label), shown, ...copyButton(text, shown, what));
  };
  return h('div', { class: 'stack', 'data-testid': 'openai-snippet' }, h('h3', {}, 'OpenAI-compatible'),
    h('p', { class: 'muted' }, 'For tools that speak the OpenAI API: the openai SDK, editors, LangChain.'),
    line('Base URL', baseUrl, 'base URL', 'openai-base-url'),
    line('API key', k.key, 'key', 'openai-key'),
    h('pre', { 'data-testid': 'openai-example' }, [`export OPENAI_BASE_URL=${baseUrl} OPENAI_API_KEY=${k.key}`, '',
      '# Python: OpenAI() reads the two variables', 'from openai import OpenAI', 'client = OpenAI()',
      `reply = client.chat.completions.create(model="${exampleModel(k, ctx.config.codexModel)}",`,
      '    messages=[{"role": "user", "content": "Hello"}])', 'print(reply.choices[0].message.content)'].join('\n')));
}

// -- the create form ----------------------------------------------------------------------

// The form that creates a key; created(key) gets the API's answer, plaintext included.
function createForm(ctx, models, created) {
  const { h, field, alertBox, busy } = ctx.ui;
  const name = h('input', { id: 'key-name', type: 'text', required: true, maxLength: ctx.config.limits.keyNameMaxLength, autocomplete: 'off' });
  const checks = modelChecks(ctx, models);
  const expires = h('input', { id: 'key-expires', type: 'datetime-local' });
  const limits = limitSet(ctx);
  const caps = capSet(ctx, 'key-cap');
  const alert = alertBox();
  const create = h('button', { class: 'btn primary', type: 'submit' }, 'Create key');
  const form = h('form', { class: 'stack', novalidate: true },
    h('div', { class: 'grid2' }, field('Name', name, 'For example the machine that uses it.'), field('Expires (optional)', expires)),
    checks.el, limits.el, caps.el, alert, h('div', { class: 'row' }, create));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(create, alert, async () => {
      const body = { name: name.value.trim() };
      if (!body.name) { name.focus(); throw new Error('name: give the key a name.'); }
      const picked = checks.picked();
      if (picked.length) body.allowedModels = picked;
      if (expires.value) body.expiresAt = ctx.f.fromLocalInput(expires.value);
      const chosen = limits.read();
      if (chosen.length) body.limits = chosen;
      body.caps = caps.read();
      const k = await caps.blamed(ctx.api.post('/api/api-keys', body));
      form.reset();
      limits.clear();
      created(k);
    });
  });
  return form;
}

// A checkbox per model of the catalog: {el, picked()}.
function modelChecks(ctx, models) {
  const { h } = ctx.ui;
  const boxes = models.map((m) => h('input', { type: 'checkbox', value: m.id, id: `key-model-${m.id}` }));
  const el = h('fieldset', { id: 'key-models', class: 'checks' }, h('legend', {}, 'Models (none checked: every model)'),
    models.length ? models.map((m, i) => h('label', { class: 'check', for: boxes[i].id }, boxes[i], h('span', {}, m.name, ' ', h('code', { class: 'muted small' }, m.id))))
      : h('p', { class: 'muted' }, 'No models are enabled.'));
  return { el, picked: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

// The optional limits, up to the API's number of them: {el, read() (throws on a bad maximum), clear()}.
function limitSet(ctx) {
  const { h } = ctx.ui;
  const rows = h('div', { class: 'limits' });
  const add = h('button', { class: 'btn small', type: 'button' }, 'Add limit');
  let seq = 0;
  add.addEventListener('click', () => {
    const row = limitRow(ctx, ++seq, () => { row.remove(); add.disabled = false; add.focus(); });
    rows.append(row);
    add.disabled = rows.children.length >= ctx.config.limits.keyLimits;
    row.firstChild.focus(); // its metric
  });
  const read = () => {
    const all = [...rows.children];
    const bad = all.find((r) => !(r.read().max > 0));
    if (bad) { bad.max.focus(); throw new Error('limits: every limit needs a maximum above 0.'); }
    return all.map((r) => r.read());
  };
  const clear = () => { rows.replaceChildren(); add.disabled = false; };
  const el = h('fieldset', { class: 'limit-set' }, h('legend', {}, 'Limits (optional)'), rows, h('div', {}, add));
  return { el, read, clear };
}

// One limit: metric, window, maximum, and its Remove button; row.read() is the API's {metric, window, max}.
function limitRow(ctx, i, remove) {
  const { h } = ctx.ui;
  const opt = (pairs) => pairs.map(([v, t]) => h('option', { value: v }, t));
  const metric = h('select', { id: `limit-metric-${i}`, 'aria-label': 'Metric' }, opt(ctx.config.keyMetrics));
  const win = h('select', { id: `limit-window-${i}`, 'aria-label': 'Window' }, opt(ctx.config.keyWindows));
  const max = h('input', { id: `limit-max-${i}`, type: 'number', min: '0', step: 'any', required: true, 'aria-label': 'Maximum', placeholder: 'Max' });
  const removeButton = h('button', { class: 'btn ghost small', type: 'button', 'aria-label': 'Remove this limit', onclick: remove }, 'Remove');
  const row = h('div', { class: 'limit-row' }, metric, win, max, removeButton);
  row.read = () => ({ metric: metric.value, window: win.value, max: Number(max.value) });
  row.max = max;
  return row;
}

// The caps the API knows, in its order: [name, the form's label, the table's unit, what the use counts].
const CAPS = [
  ['requestsPerMinute', 'Requests per minute', 'req/min', 'Requests in the last minute'],
  ['tokensPerMinute', 'Tokens per minute', 'tok/min', 'Tokens (input + output) in the last minute'],
  ['concurrentRequests', 'Concurrent requests', 'in flight', 'Requests in flight now'],
];

// The three optional caps, empty for none, filled from `current` (the API's caps) if given; ids start with
// idPrefix. {el, first (its first input), read() (the API's caps, null for empty; throws on a bad value,
// its input focused), blamed(promise) (the promise, with the input a 422 names focused if it fails)}.
function capSet(ctx, idPrefix, current) {
  const { h, field, wholeInput } = ctx.ui;
  const max = ctx.config.limits.capMax;
  const inputs = new Map(CAPS.map(([name]) => [name, wholeInput(`${idPrefix}-${name}`, 1, max)]));
  for (const [name, input] of inputs) input.value = current?.[name] ?? '';
  const read = () => Object.fromEntries([...inputs].map(([name, input]) => {
    const value = input.read();
    if (Number.isNaN(value)) {
      input.focus();
      throw new Error(`caps.${name}: leave it empty for no cap, or give a whole number from 1 to ${ctx.f.num(max)}.`);
    }
    return [name, value];
  }));
  // The server's 422 starts with the field it refuses ("caps.tokensPerMinute must be…"), shown by the form.
  const blamed = (promise) => promise.catch((err) => {
    if (err.code === 'validation_error') inputs.get(/^caps\.(\w+)/.exec(err.message)?.[1])?.focus();
    throw err;
  });
  const el = h('fieldset', { class: 'cap-set' }, h('legend', {}, 'Caps (optional, empty: no cap)'),
    h('div', { class: 'grid2' }, CAPS.map(([name, label]) => field(label, inputs.get(name)))));
  return { el, first: inputs.values().next().value, read, blamed };
}

// The dialog that edits a key's caps: a PATCH with all three, which replaces them; saved(key) gets the answer.
function editCaps(ctx, k, path, saved) {
  const { h, alertBox, busy, dialog } = ctx.ui;
  const caps = capSet(ctx, 'edit-cap', k.caps);
  const alert = alertBox();
  const save = h('button', { class: 'btn primary', type: 'submit' }, 'Save caps');
  return dialog({
    title: `Caps of “${k.name}”`, content: [caps.el, alert], ok: save, focus: caps.first,
    submit: (close) => busy(save, alert, async () => {
      const fresh = await caps.blamed(ctx.api.patch(path, { caps: caps.read() }));
      close();
      saved(fresh);
    }),
  });
}

// -- the table ----------------------------------------------------------------------------

// The table of keys: {el, rows} (rows: ui.rowList); count shows how many.
function keyTable(ctx, models, count, reveal) {
  const { h, table, emptyRow, rowList } = ctx.ui;
  const modelName = new Map(models.map((m) => [m.id, m.name]));
  const tbody = h('tbody');
  const rows = rowList(tbody, {
    key: 'data-key-id',
    render: (k) => keyRow(ctx, k, { rows, reveal, modelName }),
    empty: () => emptyRow(9, 'No API keys yet. Create one above.'),
    changed: (list) => { count.textContent = ctx.f.plural(list.length, 'key'); },
  });
  const el = h('section', { class: 'panel flush' },
    table(['Name', 'Prefix', 'Models', 'Expires', 'Last used', 'Enabled', 'Limits', 'Caps', 'Actions'], tbody, 'API keys'));
  return { el, rows };
}

// A key's row, and its actions: edit its caps, enable or disable, regenerate (shown once), delete.
function keyRow(ctx, k, { rows, reveal, modelName }) {
  const { h, alertBox, busy, badge, time, confirm, muted } = ctx.ui;
  const { api } = ctx;
  const alert = alertBox();
  const expired = k.expiresAt && new Date(k.expiresAt) <= new Date();
  // The pressed button goes with the row it redraws: the new row's own takes the focus (rows.put).
  const editCapsButton = h('button', { class: 'btn ghost small edit-caps', type: 'button' }, 'Edit caps');
  const toggle = h('button', { class: 'btn small toggle', type: 'button' }, k.enabled ? 'Disable' : 'Enable');
  const regen = h('button', { class: 'btn small', type: 'button' }, 'Regenerate');
  const remove = h('button', { class: 'btn small danger', type: 'button' }, 'Delete');
  const path = `/api/api-keys/${encodeURIComponent(k.id)}`;
  editCapsButton.addEventListener('click', () => editCaps(ctx, k, path, (fresh) => rows.put(fresh, 'button.edit-caps')));
  toggle.addEventListener('click', () => busy(toggle, alert, async () => {
    rows.put(await api.patch(path, { enabled: !k.enabled }), 'button.toggle');
  }));
  regen.addEventListener('click', () => busy(regen, alert, async () => {
    const fresh = await api.post(`${path}/regenerate`);
    rows.put(withoutPlaintext(fresh));
    reveal.show(fresh, 'Regenerated');
  }));
  remove.addEventListener('click', async () => {
    if (!(await confirm('Delete API key?', `Delete “${k.name}”? Clients using it stop working at once.`))) return;
    await busy(remove, alert, async () => {
      try { await api.del(path); } catch (err) { if (err.code !== 'api_key_not_found') throw err; }
      rows.drop(k.id);
    });
  });
  return h('tr', { 'data-key-id': k.id },
    h('td', {}, h('span', { class: 'strong' }, k.name)),
    h('td', {}, h('code', {}, k.keyPrefix, '…')),
    h('td', { class: 'chips' }, k.allowedModels ? modelChips(ctx, k.allowedModels, modelName) : muted('All models')),
    h('td', { class: 'nowrap' }, k.expiresAt ? h('span', { class: expired ? 'error-text' : '' }, time(k.expiresAt)) : muted('Never')),
    h('td', { class: 'nowrap' }, k.lastUsedAt ? time(k.lastUsedAt) : muted('Never')),
    h('td', {}, badge(expired ? 'expired' : k.enabled ? 'enabled' : 'disabled')),
    h('td', { class: 'usage-cell' }, k.limits.length ? limitBars(ctx, k.limits) : muted('None')),
    h('td', { class: 'caps-cell' }, capLines(ctx, k), editCapsButton),
    h('td', { class: 'actions' }, h('div', { class: 'row' }, toggle, regen, remove), alert));
}

const modelChips = (ctx, ids, modelName) => ids.map((m) => ctx.ui.h('code', { class: 'chip', title: modelName.get(m) || m }, m));

// A bar per limit: how much of its maximum this window has used.
function limitBars(ctx, limits) {
  const { f } = ctx;
  return limits.map((l) => {
    const fmt = l.metric === 'costUsd' ? f.money : f.num;
    const metric = ctx.config.keyMetrics.find(([v]) => v === l.metric)?.[1] || l.metric;
    return ctx.ui.bar(l.max ? (l.used / l.max) * 100 : 0, `${metric} / ${l.window}`,
      `${fmt(l.used)} of ${fmt(l.max)} used; resets ${f.dateTime(l.resetsAt)}`);
  });
}

// A line per cap the key has, its use right now against it ("12 / 60 req/min"), in the danger colour once
// reached (the next request is refused); the muted dash for a key without caps.
function capLines(ctx, k) {
  const { h, dash, muted } = ctx.ui;
  const { num } = ctx.f;
  const set = CAPS.filter(([name]) => k.caps[name] !== null);
  if (!set.length) return dash();
  return set.map(([name, , unit, counts]) => {
    const cap = k.caps[name];
    const used = k.capsInUse[name];
    return h('div', { class: `cap${used >= cap ? ' error-text' : ''}`, 'data-cap': name, title: `${counts}: ${num(used)} of at most ${num(cap)}` },
      `${num(used)} / ${num(cap)} `, muted(unit));
  });
}
