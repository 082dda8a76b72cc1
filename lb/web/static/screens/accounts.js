// Accounts: the table with pause/resume/delete, a usage refresh and re-authentication per account; sign-in with
// ChatGPT (a dialog, below), and as the alternatives, import of an auth.json and a manual account.
export default async function accounts(ctx) {
  const { h, field, alertBox, busy, whileStale, table, emptyRow, rowList, badge, bar, time, confirm, section, dash, muted } = ctx.ui;
  const { api, f } = ctx;
  const { emailMaxLength, planTypeMaxLength } = ctx.config.limits;
  const first = (await api.get('/api/accounts')).accounts;

  const tbody = h('tbody');
  const count = h('p', { class: 'muted small' });
  const listAlert = alertBox();
  const rowOf = (id) => tbody.querySelector(`tr[data-account-id="${CSS.escape(id)}"]`);

  // The whole list again, after a sign-in made or renewed an account: the list, or undefined if it failed.
  const reload = () => whileStale(tbody, listAlert, async () => {
    const list = (await api.get('/api/accounts')).accounts;
    rows.paint(list);
    return list;
  });
  // The sign-in dialog, for a new account or to re-authenticate `account`; the list follows its completion.
  const signIn = (account) => signInDialog(ctx, account, async (flow) => (await reload())?.find((x) => x.id === flow.accountId));

  const row = (a) => {
    const alert = alertBox();
    const paused = a.status === 'paused';
    const toggle = h('button', { class: 'btn small', type: 'button', 'data-action': 'toggle' }, paused ? 'Resume' : 'Pause');
    const remove = h('button', { class: 'btn small danger', type: 'button' }, 'Delete');
    const u = a.usage || {};
    const creds = a.hasCredentials;
    const refresh = creds && h('button', { class: 'btn small', type: 'button', 'data-action': 'refresh' }, 'Refresh');
    // Most visible where it is needed: a deactivated account's tokens no longer work.
    const reauth = creds && h('button', { class: `btn small${a.status === 'deactivated' ? ' primary' : ''}`, type: 'button', 'data-action': 'reauth' }, 'Re-authenticate');
    const resetTitle = (label, iso) => `${label} window${iso ? `, resets ${f.dateTime(iso)} (${f.relative(iso)})` : ''}`;
    const tr = h('tr', { 'data-account-id': a.id },
      h('td', { class: 'email' }, h('span', { class: 'strong' }, a.email), a.chatgptAccountId ? h('div', { class: 'muted small' }, a.chatgptAccountId) : null),
      h('td', {}, a.planType || dash()),
      h('td', {}, badge(a.status, { 'data-testid': 'account-status' })),
      h('td', { class: 'reason' }, a.statusReason || dash()),
      h('td', { class: 'usage-cell' },
        bar(u.primaryUsedPercent, 'Primary', resetTitle('Primary', u.primaryResetsAt)),
        bar(u.secondaryUsedPercent, 'Secondary', resetTitle('Secondary (weekly)', u.secondaryResetsAt)),
        creds ? h('div', { class: 'checked muted small', 'data-testid': 'usage-checked' },
          a.usageCheckedAt ? ['checked ', time(a.usageCheckedAt)] : 'never checked', ' ', refresh) : null),
      h('td', {}, time(a.resetsAt)),
      h('td', { class: 'creds' }, creds ? ['Yes', reauth] : muted('No')),
      h('td', { class: 'actions' }, h('div', { class: 'row' }, toggle, remove), alert));
    toggle.addEventListener('click', () => busy(toggle, alert, async () => {
      const updated = await api.patch(`/api/accounts/${encodeURIComponent(a.id)}`, { status: paused ? 'active' : 'paused' });
      rows.put(updated, '[data-action=toggle]'); // not the row's first button: Refresh comes before it
    }));
    if (creds) {
      refresh.addEventListener('click', () => busy(refresh, alert, async () => {
        rows.put(await api.post(`/api/accounts/${encodeURIComponent(a.id)}/refresh-usage`), '[data-action=refresh]');
      }));
      reauth.addEventListener('click', async () => {
        await signIn(a);
        // The list was drawn anew: focus goes to the new row's button rather than the page.
        if (!reauth.isConnected) rowOf(a.id)?.querySelector('[data-action=reauth]')?.focus();
      });
    }
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
    empty: () => emptyRow(8, 'No accounts yet. Sign in with ChatGPT, or import an auth.json or add one below.'),
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
    h('p', { class: 'muted' }, 'The alternative to signing in: the Codex CLI keeps its tokens in ~/.codex/auth.json after codex login. They are stored encrypted and never shown again.'),
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

  const signInButton = h('button', { class: 'btn primary', type: 'button' }, 'Sign in with ChatGPT');
  signInButton.addEventListener('click', () => signIn(null));

  rows.paint(first);
  ctx.paint(
    h('div', { class: 'page-head' }, h('h1', {}, 'Accounts'), h('div', { class: 'row' }, count, signInButton)),
    listAlert,
    h('section', { class: 'panel flush' },
      table(['Email', 'Plan', 'Status', 'Status reason', 'Usage', 'Resets', 'Credentials', 'Actions'], tbody, 'Accounts')),
    h('div', { class: 'two-col' },
      section('Import an auth.json', importForm),
      section('Add an account by hand', h('p', { class: 'muted' }, 'A manual account has no credentials until an auth.json with its email is imported.'), addForm)));
  ctx.ready();
}

// -- sign in with ChatGPT ---------------------------------------------------------------------

// The callback's errors after which its flow has ended (lb/oauth.py): only a new one can go on.
const FLOW_ENDED = new Set(['oauth_denied', 'oauth_exchange_failed', 'oauth_account_mismatch', 'oauth_flow_finished', 'oauth_flow_not_found']);

// The dialog that signs in with ChatGPT (/api/oauth/flows), in a browser or with a device code; `account`, if
// given, is the account to re-authenticate. completed(flow) runs once the flow has (reloading the list) and
// gives the account it made or renewed; the dialog stays open to say so. A flow still pending when the dialog
// closes, or the screen goes away, is cancelled, and every timer stops. Resolves once it is closed.
function signInDialog(ctx, account, completed) {
  const { h, field, alertBox, busy, dialog, copyButton } = ctx.ui;
  const { api, f } = ctx;
  const alert = alertBox();
  const step = h('div', { class: 'stack' });
  const finish = h('button', { class: 'btn primary', type: 'submit', hidden: true }, 'Finish sign-in');
  let flow = null; // the flow while it is pending
  let pasted = null; // the browser step's input
  let closed = false;
  let poll = null;
  let tick = null;
  let dlg = null;
  let cancel = null;

  const stop = () => { clearTimeout(poll); clearInterval(tick); poll = tick = null; };
  const pathOf = (fl) => `/api/oauth/flows/${encodeURIComponent(fl.id)}`;
  const cancelFlow = (fl) => api.del(pathOf(fl)).catch(() => {}); // gone already, or the session: nothing to do
  // The flow is over (completed, failed or expired): nothing to poll, cancel or submit.
  const over = () => { stop(); flow = null; pasted = null; finish.hidden = true; };
  // Closed, or the screen went away: stop at once, and cancel a pending flow.
  const end = () => {
    if (closed) return;
    closed = true;
    const pending = flow;
    over();
    if (pending) cancelFlow(pending);
  };

  const choose = () => {
    const browser = h('button', { class: 'btn primary', type: 'button' }, 'Browser sign-in');
    const device = h('button', { class: 'btn', type: 'button' }, 'Device code');
    browser.addEventListener('click', () => begin('browser', browser));
    device.addEventListener('click', () => begin('device', device));
    step.replaceChildren(
      h('p', {}, account ? `Sign in again as ${account.email}, in the same ChatGPT workspace, to renew its tokens.`
        : 'Sign in to the ChatGPT account to add, as codex login does. Its tokens are stored encrypted.'),
      h('div', { class: 'option' }, browser, h('small', { class: 'muted' }, 'Opens the sign-in page in a new tab; you paste back the address it ends on.')),
      h('div', { class: 'option' }, device, h('small', { class: 'muted' }, 'Shows a code to enter on ChatGPT’s device page, from any device, if the workspace allows device codes.')));
    return browser;
  };

  let starting = false; // one flow at a time: the other method's button waits too
  const begin = async (method, button) => {
    if (starting) return;
    starting = true;
    await busy(button, alert, async () => {
      const body = { method };
      if (account) body.accountId = account.id;
      const started = await api.post('/api/oauth/flows', body);
      if (closed) { cancelFlow(started); return; }
      flow = started;
      (method === 'browser' ? browserStep : deviceStep)(started);
    });
    starting = false;
  };

  const browserStep = (fl) => {
    pasted = h('input', { id: 'oauth-callback', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: `${fl.redirectUri}?code=…` });
    step.replaceChildren(
      h('p', {}, h('a', { class: 'btn', href: fl.authorizationUrl, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'oauth-authorize' },
        'Open the ChatGPT sign-in page')),
      field('The address your browser ended on', pasted,
        `After signing in, your browser goes to a ${new URL(fl.redirectUri).host} address that usually fails to load; copy that address from the address bar and paste it here.`));
    finish.hidden = false;
  };

  // The browser step's submit. A wrong address leaves the flow pending: paste again. Any other refusal ended it.
  const submit = () => {
    if (!flow || !pasted) return;
    const mine = flow;
    const input = pasted;
    busy(finish, alert, async () => {
      if (!input.value.trim()) { input.focus(); throw new Error('Paste the address your browser ended on.'); }
      try {
        const fl = await api.post(`${pathOf(mine)}/callback`, { callbackUrl: input.value.trim() });
        if (flow === mine) await done(fl);
      } catch (err) {
        if (flow !== mine) return;
        if (err.status === 404 || FLOW_ENDED.has(err.code)) startAgain();
        else input.select();
        throw err;
      }
    });
  };

  const deviceStep = (fl) => {
    const code = h('code', { class: 'user-code', 'data-testid': 'oauth-user-code' }, fl.userCode);
    const left = h('span', { class: 'nowrap', 'data-testid': 'oauth-countdown' });
    const count = () => { left.textContent = f.countdown(fl.expiresAt); };
    count();
    tick = setInterval(count, 1000);
    step.replaceChildren(
      h('p', {}, 'Open ChatGPT’s device page, sign in', account ? ` as ${account.email}` : '', ' and enter this code:'),
      h('div', { class: 'key-line' }, code, ...copyButton(fl.userCode, code, 'code')),
      h('p', {}, h('a', { class: 'btn', href: fl.verificationUrl, target: '_blank', rel: 'noopener noreferrer' }, 'Open the device page')),
      h('p', { class: 'muted small', role: 'status' }, 'Waiting for the code to be entered. It expires in ', left, '.'));
    wait(fl);
  };

  // The server asks the issuer; the dialog reads the flow every intervalSeconds until it is no longer pending.
  const wait = (fl) => { poll = setTimeout(() => check(fl), fl.intervalSeconds * 1000); };
  const check = async (mine) => {
    poll = null;
    try {
      const fl = await api.get(pathOf(mine));
      if (flow !== mine) return;
      alert.clear();
      if (fl.status === 'pending') wait(mine);
      else if (fl.status === 'completed') await done(fl);
      else { alert.show(fl.error?.message || `The sign-in ${fl.status}.`); startAgain(); }
    } catch (err) {
      if (flow !== mine) return;
      alert.show(err);
      if (err.status === 404) startAgain();
      else if (!err.auth) wait(mine); // a passing fault: read it again
    }
  };

  const startAgain = () => {
    over();
    const again = h('button', { class: 'btn primary', type: 'button' }, 'Start again');
    again.addEventListener('click', () => { alert.clear(); choose().focus(); });
    step.replaceChildren(h('div', { class: 'row' }, again));
    again.focus();
  };

  const done = async (fl) => {
    over();
    step.replaceChildren();
    cancel.textContent = 'Close';
    cancel.focus();
    const a = await completed(fl);
    alert.ok(`Signed in${a ? ` as ${a.email}` : ''}: the account was ${fl.created ? 'added' : 're-authenticated'}.`);
  };

  const first = choose();
  ctx.onCleanup(() => { end(); if (dlg?.open) dlg.close(); });
  return dialog({
    title: account ? `Re-authenticate ${account.email}` : 'Sign in with ChatGPT',
    content: h('div', { class: 'stack signin' }, step, alert),
    ok: finish,
    focus: first,
    submit,
    opened: (d, c) => { dlg = d; cancel = c; },
  }).then(end);
}
