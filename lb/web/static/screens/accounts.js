// Accounts: the table with pause/resume/delete, import of an auth.json, and a manual account.
export default async function accounts(ctx) {
  const { h, field, alertBox, busy, table, emptyRow, rowList, badge, bar, time, confirm, section, dash, muted } = ctx.ui;
  const { api, f } = ctx;
  const { emailMaxLength, planTypeMaxLength } = ctx.config.limits;
  const first = (await api.get('/api/accounts')).accounts;

  const tbody = h('tbody');
  const count = h('p', { class: 'muted small' });

  const row = (a) => {
    const alert = alertBox();
    const paused = a.status === 'paused';
    const toggle = h('button', { class: 'btn small', type: 'button' }, paused ? 'Resume' : 'Pause');
    const remove = h('button', { class: 'btn small danger', type: 'button' }, 'Delete');
    const u = a.usage || {};
    const resetTitle = (label, iso) => `${label} window${iso ? `, resets ${f.dateTime(iso)} (${f.relative(iso)})` : ''}`;
    const tr = h('tr', { 'data-account-id': a.id },
      h('td', { class: 'email' }, h('span', { class: 'strong' }, a.email), a.chatgptAccountId ? h('div', { class: 'muted small' }, a.chatgptAccountId) : null),
      h('td', {}, a.planType || dash()),
      h('td', {}, badge(a.status, { 'data-testid': 'account-status' })),
      h('td', { class: 'reason' }, a.statusReason || dash()),
      h('td', { class: 'usage-cell' },
        bar(u.primaryUsedPercent, 'Primary', resetTitle('Primary', u.primaryResetsAt)),
        bar(u.secondaryUsedPercent, 'Secondary', resetTitle('Secondary (weekly)', u.secondaryResetsAt))),
      h('td', {}, time(a.resetsAt)),
      h('td', {}, a.hasCredentials ? 'Yes' : muted('No')),
      h('td', { class: 'actions' }, h('div', { class: 'row' }, toggle, remove), alert));
    toggle.addEventListener('click', () => busy(toggle, alert, async () => {
      const updated = await api.patch(`/api/accounts/${encodeURIComponent(a.id)}`, { status: paused ? 'active' : 'paused' });
      rows.put(updated, true);
    }));
    remove.addEventListener('click', async () => {
      if (!(await confirm('Delete account?', `Delete ${a.email}? Its request logs are kept.`))) return;
      await busy(remove, alert, async () => {
        try {
          await api.del(`/api/accounts/${encodeURIComponent(a.id)}`);
        } catch (err) {
          if (err.code !== 'account_not_found') throw err;
        }
        rows.drop(a.id);
      });
    });
    return tr;
  };

  const rows = rowList(tbody, {
    key: 'data-account-id',
    render: row,
    empty: () => emptyRow(8, 'No accounts yet. Import an auth.json or add one below.'),
    changed: (list) => { count.textContent = f.plural(list.length, 'account'); },
  });

  // Import an auth.json: a file or pasted text.
  const fileInput = h('input', { id: 'import-file', type: 'file', accept: '.json,application/json' });
  const text = h('textarea', { id: 'import-json', rows: 5, spellcheck: 'false', autocomplete: 'off', placeholder: '{"tokens": {"id_token": "…", "access_token": "…", "refresh_token": "…"}}' });
  const importAlert = alertBox();
  const importButton = h('button', { class: 'btn primary', type: 'submit' }, 'Import');
  fileInput.addEventListener('change', () => { if (fileInput.files.length) text.value = ''; importAlert.clear(); });
  text.addEventListener('input', () => { if (text.value) fileInput.value = ''; });
  const importForm = h('form', { class: 'stack' },
    h('p', { class: 'muted' }, 'The Codex CLI keeps its tokens in ~/.codex/auth.json after codex login. They are stored encrypted and never shown again.'),
    field('auth.json file', fileInput),
    field('…or paste its contents', text),
    importAlert, h('div', { class: 'row' }, importButton));
  importForm.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(importButton, importAlert, async () => {
      const file = fileInput.files[0];
      const raw = file ? await file.text() : text.value;
      if (!raw.trim()) throw new Error('Choose an auth.json file or paste its contents.');
      let body;
      try { body = JSON.parse(raw); } catch { throw new Error('This is not valid JSON: paste the whole auth.json file.'); }
      const { status, data } = await api.request('POST', '/api/accounts/import', { body });
      rows.put(data);
      fileInput.value = '';
      text.value = '';
      importAlert.ok(`${status === 201 ? 'Imported' : 'Updated'} ${data.email}${data.planType ? ` (${data.planType})` : ''}.`);
    });
  });

  // A manual account.
  const email = h('input', { id: 'account-email', type: 'email', required: true, autocomplete: 'off', maxLength: emailMaxLength });
  const plan = h('input', { id: 'account-plan', type: 'text', maxLength: planTypeMaxLength, list: 'plan-types', autocomplete: 'off' });
  const addAlert = alertBox();
  const addButton = h('button', { class: 'btn', type: 'submit' }, 'Add account');
  const addForm = h('form', { class: 'stack' },
    h('div', { class: 'grid2' }, field('Email', email), field('Plan', plan, 'Optional, e.g. plus, pro, team.')),
    h('datalist', { id: 'plan-types' }, ['free', 'plus', 'pro', 'team', 'business', 'enterprise'].map((p) => h('option', { value: p }))),
    addAlert, h('div', { class: 'row' }, addButton));
  addForm.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(addButton, addAlert, async () => {
      const body = { email: email.value.trim() };
      if (plan.value.trim()) body.planType = plan.value.trim();
      const a = await api.post('/api/accounts', body);
      rows.put(a);
      email.value = '';
      plan.value = '';
      addAlert.ok(`Added ${a.email}.`);
    });
  });

  rows.paint(first);
  ctx.paint(
    h('div', { class: 'page-head' }, h('h1', {}, 'Accounts'), count),
    h('section', { class: 'panel flush' },
      table(['Email', 'Plan', 'Status', 'Status reason', 'Usage', 'Resets', 'Credentials', 'Actions'], tbody, 'Accounts')),
    h('div', { class: 'two-col' },
      section('Import an auth.json', importForm),
      section('Add an account by hand', h('p', { class: 'muted' }, 'A manual account has no credentials until an auth.json with its email is imported.'), addForm)));
  ctx.ready();
}
