// API keys: create (models, expiry, limits), show a new key once with a Codex config, and manage keys.
export default async function keys(ctx) {
  const { h, field, alertBox, busy, table, emptyRow, rowList, badge, time, confirm, section, muted } = ctx.ui;
  const { api, f } = ctx;
  const { keyMetrics, keyWindows, codexModel, limits } = ctx.config;
  const [models, first] = await Promise.all([api.get('/api/models').then((d) => d.models), api.get('/api/api-keys')]);
  const modelName = new Map(models.map((m) => [m.id, m.name]));

  // The key shown once, with what the Codex CLI needs.
  const reveal = h('div', { class: 'reveal', hidden: true, tabindex: '-1' });
  const showKey = (k, verb) => {
    const model = (k.allowedModels && k.allowedModels[0]) || codexModel;
    const snippet = [`model = "${model}"`, 'model_provider = "codexlb"', '', '[model_providers.codexlb]', 'name = "OpenAI"',
      `base_url = "${location.origin}/backend-api/codex"`, 'wire_api = "responses"', 'env_key = "CODEX_LB_API_KEY"', '',
      `export CODEX_LB_API_KEY=${k.key}`].join('\n');
    const copyStatus = h('span', { class: 'small', role: 'status' });
    const keyCode = h('code', { class: 'secret' }, k.key);
    const copy = h('button', { class: 'btn small', type: 'button' }, 'Copy');
    copy.addEventListener('click', async () => {
      try {
        if (!navigator.clipboard) throw new Error('no clipboard');
        await navigator.clipboard.writeText(k.key);
        copyStatus.className = 'small ok-text';
        copyStatus.textContent = 'Copied.';
      } catch {
        copyStatus.className = 'small error-text';
        copyStatus.textContent = 'Could not copy: select the key and copy it by hand.';
        const range = document.createRange();
        range.selectNodeContents(keyCode);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
      }
    });
    const hide = h('button', { class: 'btn ghost small', type: 'button', onclick: () => { reveal.hidden = true; reveal.replaceChildren(); } }, 'Done');
    reveal.replaceChildren(
      h('h2', {}, `${verb} key “${k.name}”`),
      h('p', {}, h('strong', {}, 'Copy it now: '), 'this is the only time the key is shown.'),
      h('div', { class: 'key-line' }, h('span', { 'data-testid': 'new-key' }, keyCode), copy, copyStatus),
      h('p', { class: 'muted' }, 'For the Codex CLI: put this in ~/.codex/config.toml and export the key in your shell.'),
      h('pre', { 'data-testid': 'codex-snippet' }, snippet),
      h('div', { class: 'row end' }, hide));
    reveal.hidden = false;
    reveal.scrollIntoView({ block: 'nearest' });
    reveal.focus({ preventScroll: true });
  };

  // Create form.
  const name = h('input', { id: 'key-name', type: 'text', required: true, maxLength: limits.keyNameMaxLength, autocomplete: 'off' });
  const modelBoxes = models.map((m) => h('input', { type: 'checkbox', value: m.id, id: `key-model-${m.id}` }));
  const modelSet = h('fieldset', { id: 'key-models', class: 'checks' }, h('legend', {}, 'Models (none checked: every model)'),
    models.length ? models.map((m, i) => h('label', { class: 'check', for: modelBoxes[i].id }, modelBoxes[i], h('span', {}, m.name, ' ', h('code', { class: 'muted small' }, m.id))))
      : h('p', { class: 'muted' }, 'No models are enabled.'));
  const expires = h('input', { id: 'key-expires', type: 'datetime-local' });
  const limitRows = h('div', { class: 'limits' });
  const addLimit = h('button', { class: 'btn small', type: 'button' }, 'Add limit');
  let limitSeq = 0;
  const newLimitRow = () => {
    const i = ++limitSeq;
    const opt = (pairs) => pairs.map(([v, t]) => h('option', { value: v }, t));
    const metric = h('select', { id: `limit-metric-${i}`, 'aria-label': 'Metric' }, opt(keyMetrics));
    const win = h('select', { id: `limit-window-${i}`, 'aria-label': 'Window' }, opt(keyWindows));
    const max = h('input', { id: `limit-max-${i}`, type: 'number', min: '0', step: 'any', required: true, 'aria-label': 'Maximum', placeholder: 'Max' });
    const remove = h('button', { class: 'btn ghost small', type: 'button', 'aria-label': 'Remove this limit' }, 'Remove');
    const rowEl = h('div', { class: 'limit-row' }, metric, win, max, remove);
    rowEl.read = () => ({ metric: metric.value, window: win.value, max: Number(max.value) });
    rowEl.max = max;
    remove.addEventListener('click', () => { rowEl.remove(); addLimit.disabled = false; addLimit.focus(); });
    limitRows.append(rowEl);
    addLimit.disabled = limitRows.children.length >= limits.keyLimits;
    metric.focus();
  };
  addLimit.addEventListener('click', newLimitRow);
  const createAlert = alertBox();
  const create = h('button', { class: 'btn primary', type: 'submit' }, 'Create key');
  const form = h('form', { class: 'stack', novalidate: true },
    h('div', { class: 'grid2' }, field('Name', name, 'For example the machine that uses it.'), field('Expires (optional)', expires)),
    modelSet,
    h('fieldset', { class: 'limit-set' }, h('legend', {}, 'Limits (optional)'), limitRows, h('div', {}, addLimit)),
    createAlert, h('div', { class: 'row' }, create));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(create, createAlert, async () => {
      const body = { name: name.value.trim() };
      if (!body.name) { name.focus(); throw new Error('name: give the key a name.'); }
      const picked = modelBoxes.filter((b) => b.checked).map((b) => b.value);
      if (picked.length) body.allowedModels = picked;
      if (expires.value) body.expiresAt = f.fromLocalInput(expires.value);
      const rows = [...limitRows.children];
      for (const r of rows) {
        const v = r.read();
        if (!(v.max > 0)) { r.max.focus(); throw new Error('limits: every limit needs a maximum above 0.'); }
      }
      if (rows.length) body.limits = rows.map((r) => r.read());
      const k = await api.post('/api/api-keys', body);
      keyRows.put(k);
      form.reset();
      limitRows.replaceChildren();
      addLimit.disabled = false;
      showKey(k, 'New');
    });
  });

  // The table.
  const tbody = h('tbody');
  const limitBars = (k) => (k.limits.length ? k.limits.map((l) => {
    const money = l.metric === 'costUsd';
    const fmtv = money ? f.money : f.num;
    const metric = keyMetrics.find(([v]) => v === l.metric)?.[1] || l.metric;
    return ctx.ui.bar(l.max ? (l.used / l.max) * 100 : 0, `${metric} / ${l.window}`,
      `${fmtv(l.used)} of ${fmtv(l.max)} used; resets ${f.dateTime(l.resetsAt)}`);
  }) : muted('None'));
  const models_ = (k) => (k.allowedModels ? k.allowedModels.map((m) => h('code', { class: 'chip', title: modelName.get(m) || m }, m)) : muted('All models'));
  const row = (k) => {
    const alert = alertBox();
    const expired = k.expiresAt && new Date(k.expiresAt) <= new Date();
    const toggle = h('button', { class: 'btn small', type: 'button' }, k.enabled ? 'Disable' : 'Enable');
    const regen = h('button', { class: 'btn small', type: 'button' }, 'Regenerate');
    const remove = h('button', { class: 'btn small danger', type: 'button' }, 'Delete');
    const path = `/api/api-keys/${encodeURIComponent(k.id)}`;
    toggle.addEventListener('click', () => busy(toggle, alert, async () => {
      keyRows.put(await api.patch(path, { enabled: !k.enabled }), true);
    }));
    regen.addEventListener('click', () => busy(regen, alert, async () => {
      const fresh = await api.post(`${path}/regenerate`);
      keyRows.put(fresh);
      showKey(fresh, 'Regenerated');
    }));
    remove.addEventListener('click', async () => {
      if (!(await confirm('Delete API key?', `Delete “${k.name}”? Clients using it stop working at once.`))) return;
      await busy(remove, alert, async () => {
        try { await api.del(path); } catch (err) { if (err.code !== 'api_key_not_found') throw err; }
        keyRows.drop(k.id);
      });
    });
    return h('tr', { 'data-key-id': k.id },
      h('td', {}, h('span', { class: 'strong' }, k.name)),
      h('td', {}, h('code', {}, k.keyPrefix, '…')),
      h('td', { class: 'chips' }, models_(k)),
      h('td', { class: 'nowrap' }, k.expiresAt ? h('span', { class: expired ? 'error-text' : '' }, time(k.expiresAt)) : muted('Never')),
      h('td', { class: 'nowrap' }, k.lastUsedAt ? time(k.lastUsedAt) : muted('Never')),
      h('td', {}, badge(expired ? 'expired' : k.enabled ? 'enabled' : 'disabled')),
      h('td', { class: 'usage-cell' }, limitBars(k)),
      h('td', { class: 'actions' }, h('div', { class: 'row' }, toggle, regen, remove), alert));
  };
  const count = h('p', { class: 'muted small' });
  const keyRows = rowList(tbody, {
    key: 'data-key-id',
    render: row,
    empty: () => emptyRow(8, 'No API keys yet. Create one above.'),
    changed: (list) => { count.textContent = f.plural(list.length, 'key'); },
  });
  keyRows.paint(first.apiKeys);

  ctx.paint(
    h('div', { class: 'page-head' }, h('h1', {}, 'API keys'), count),
    section('Create a key', form),
    reveal,
    h('section', { class: 'panel flush' },
      table(['Name', 'Prefix', 'Models', 'Expires', 'Last used', 'Enabled', 'Limits', 'Actions'], tbody, 'API keys')));
  ctx.ready();
}
