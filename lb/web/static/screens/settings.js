// Settings & security: proxy settings, request-log retention, the password, TOTP and logging out.

export default async function settings(ctx) {
  const { h, field, alertBox, busy, section, codeInput } = ctx.ui;
  const { api } = ctx;
  const { AUTH } = api;
  const [values, session] = await Promise.all([api.get('/api/settings'), api.get(`${AUTH}/session`)]);

  // Toggles: saved as soon as they change; a failure puts the box back.
  const toggleAlert = alertBox();
  const toggle = (id, key, label, hint) => {
    const box = h('input', { id, type: 'checkbox', checked: !!values[key] });
    box.addEventListener('change', () => {
      const wanted = box.checked;
      box.disabled = true;
      toggleAlert.clear();
      api.patch('/api/settings', { [key]: wanted })
        .then((v) => { Object.assign(values, v); box.checked = !!v[key]; toggleAlert.ok('Saved.'); })
        .catch((err) => { box.checked = !wanted; toggleAlert.show(err); })
        .finally(() => { box.disabled = false; });
    });
    return h('div', { class: 'toggle' }, box, h('label', { for: id }, h('span', { class: 'strong' }, label), h('small', { class: 'muted' }, hint)));
  };
  const proxy = section('Proxy',
    toggle('setting-api-key-required', 'apiKeyRequired', 'Require an API key',
      'When off, clients on this machine may use the proxy without a key. A key that is sent is always checked.'),
    toggle('setting-sticky-sessions', 'stickySessions', 'Sticky sessions',
      'Send a conversation (its prompt_cache_key) to the same account for an hour, so the upstream prompt cache keeps working.'),
    toggleAlert);

  // Retention: the raw request logs kept forever, or a number of days (the hourly totals always stay).
  const days = ctx.ui.wholeInput('retention-days', 7, 36500);
  days.value = values.requestLogRetentionDays ?? '';
  days.style.width = '7rem';
  const radio = (id, checked, label, ...more) => h('label', { class: 'row', for: id },
    h('input', { id, type: 'radio', name: 'retention', checked }), label, ...more);
  const forever = radio('retention-forever', values.requestLogRetentionDays == null, 'Keep request logs forever');
  const limited = radio('retention-limited', values.requestLogRetentionDays != null, 'Delete request logs older than', days, 'days');
  days.addEventListener('input', () => { limited.firstChild.checked = true; });
  const lastPrune = h('p', { class: 'muted small', 'data-testid': 'last-prune' });
  const paintPrune = (p) => lastPrune.replaceChildren(p
    ? `Last prune ${ctx.f.dateTime(p.at)}: ${ctx.f.num(p.removed)} logs removed; logs before ${ctx.f.dateTime(p.before)} are gone.`
    : 'No request logs pruned yet.');
  paintPrune(values.lastPrune);
  const keepAlert = alertBox();
  const keepButton = h('button', { class: 'btn', type: 'submit' }, 'Save');
  const keepForm = h('form', { class: 'stack', novalidate: true }, forever, limited,
    h('small', { class: 'muted' }, 'At least 7 days. Pruned logs leave the log list; usage, the overview and key limits keep their totals.'),
    lastPrune, keepAlert, h('div', { class: 'row' }, keepButton));
  keepForm.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(keepButton, keepAlert, async () => {
      const wanted = limited.firstChild.checked ? days.read() : null;
      if (limited.firstChild.checked && !Number.isInteger(wanted)) { days.focus(); throw new Error('Keep at least 7 days (a whole number up to 36500).'); }
      const v = await api.patch('/api/settings', { requestLogRetentionDays: wanted });
      Object.assign(values, v);
      paintPrune(v.lastPrune);
      keepAlert.ok(wanted == null ? 'Saved: request logs are kept forever.' : `Saved: request logs older than ${wanted} days are pruned.`);
    });
  });
  const retention = section('Retention', keepForm);

  // Password change.
  const current = h('input', { id: 'current-password', type: 'password', autocomplete: 'current-password', required: true });
  const { passwordMinLength: min, passwordMaxLength: max } = ctx.config.limits;
  const next = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', required: true, minLength: min, maxLength: max });
  const pwAlert = alertBox();
  const pwButton = h('button', { class: 'btn', type: 'submit' }, 'Change password');
  const pwForm = h('form', { class: 'stack', novalidate: true }, ctx.ui.username(),
    h('div', { class: 'grid2' }, field('Current password', current), field('New password', next, `${min} to ${max} characters.`)), pwAlert, h('div', { class: 'row' }, pwButton));
  pwForm.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(pwButton, pwAlert, async () => {
      if (next.value.length < min) { next.focus(); throw new Error(`The new password must be at least ${min} characters long.`); }
      await api.post(`${AUTH}/password/change`, { currentPassword: current.value, newPassword: next.value });
      pwForm.reset();
      pwAlert.ok('Password changed. Every other session was logged out.');
    });
  });

  // TOTP: enable (start → QR + secret → confirm) or disable (with a code).
  const totpBody = h('div', { class: 'stack' });
  const digits = ctx.config.limits.totpDigits;
  const paintTotp = (configured, flash) => {
    const alert = alertBox();
    if (flash) alert.ok(flash);
    if (configured) {
      const code = codeInput('totp-disable-code', digits);
      const button = h('button', { class: 'btn danger', type: 'submit' }, 'Disable TOTP');
      const form = h('form', { class: 'stack' }, h('p', {}, 'Two-factor authentication is ', h('strong', {}, 'on'), ': logging in asks for a code from your authenticator app.'),
        field('Code to disable', code, 'A current code from your authenticator app.'), alert, h('div', { class: 'row' }, button));
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        busy(button, alert, async () => {
          await api.post(`${AUTH}/totp/disable`, { code: code.value });
          paintTotp(false, 'Two-factor authentication is off.');
        });
      });
      totpBody.replaceChildren(form);
      return;
    }
    const start = h('button', { class: 'btn primary', type: 'button' }, 'Enable TOTP');
    const setup = h('div', { class: 'stack' });
    start.addEventListener('click', () => busy(start, alert, async () => {
      const s = await api.post(`${AUTH}/totp/setup/start`);
      const code = codeInput('totp-confirm-code', digits);
      const confirmAlert = alertBox();
      const confirmButton = h('button', { class: 'btn primary', type: 'submit' }, 'Confirm');
      const form = h('form', { class: 'stack' }, field('Code from the app', code), confirmAlert, h('div', { class: 'row' }, confirmButton));
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        busy(confirmButton, confirmAlert, async () => {
          await api.post(`${AUTH}/totp/setup/confirm`, { setupToken: s.setupToken, code: code.value });
          paintTotp(true, 'Two-factor authentication is on. Other sessions must enter a code.');
        });
      });
      start.hidden = true;
      setup.replaceChildren(
        h('p', {}, 'Scan this QR code with an authenticator app, or type the secret into it, then enter the code it shows.'),
        h('div', { class: 'totp-setup' },
          h('img', { src: s.qrSvgDataUri, alt: 'QR code of the TOTP secret', 'data-testid': 'totp-qr', class: 'qr', width: '200', height: '200' }),
          h('div', { class: 'stack' }, h('p', { class: 'muted small' }, 'Secret'), h('code', { class: 'secret', 'data-testid': 'totp-secret' }, s.secret), form)));
      code.focus();
    }));
    totpBody.replaceChildren(h('p', {}, 'Two-factor authentication is ', h('strong', {}, 'off'), '. Turn it on to ask for a code from an authenticator app at every login.'),
      setup, alert, h('div', { class: 'row' }, start));
  };
  paintTotp(session.isTotpConfigured);

  ctx.paint(
    h('div', { class: 'page-head' }, h('h1', {}, 'Settings & security')),
    proxy, retention,
    section('Password', pwForm),
    section('Two-factor authentication (TOTP)', totpBody),
    alertsSection(ctx, values),
    section('Session', h('p', { class: 'muted' }, session.expiresAt
      ? `This session ends ${ctx.f.dateTime(session.expiresAt)} (${ctx.f.relative(session.expiresAt)}). `
      : '', 'Log out with the button at the top of every page.')));
  ctx.ready();
}

// Alerts: where the webhook POSTs, which events, and a test event with what the receiver answered.
function alertsSection(ctx, values) {
  const { h, field, alertBox, busy, section } = ctx.ui;
  const { api } = ctx;
  const url = h('input', { id: 'webhook-url', type: 'url', placeholder: 'https://hooks.slack.com/services/…', value: values.webhookUrl || '', maxLength: ctx.config.limits.webhookUrlMaxLength, autocomplete: 'off' });
  const boxes = ctx.config.alertEvents.map(([name, label]) => {
    const box = h('input', { id: `event-${name.replace('.', '-')}`, type: 'checkbox', value: name, checked: values.webhookEvents.includes(name) });
    return h('div', { class: 'toggle' }, box, h('label', { for: box.id }, h('span', { class: 'strong' }, label), h('small', { class: 'muted' }, name)));
  });
  const alert = alertBox();
  const save = h('button', { class: 'btn primary', type: 'submit' }, 'Save');
  const test = h('button', { class: 'btn', type: 'button', disabled: !values.webhookUrl }, 'Send a test');
  const form = h('form', { class: 'stack', novalidate: true },
    h('p', { class: 'muted' }, 'The service POSTs JSON to this URL when something happens to the pool, once per event, retried for 30 s if the receiver fails. Slack and Discord incoming webhooks show its text field as it is.'),
    field('Webhook URL', url, 'Empty: no alerts.'),
    h('fieldset', { class: 'stack' }, h('legend', {}, 'Events'), boxes),
    alert, h('div', { class: 'row' }, save, test));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(save, alert, async () => {
      const events = boxes.map((row) => row.querySelector('input')).filter((box) => box.checked).map((box) => box.value);
      const saved = await api.patch('/api/settings', { webhookUrl: url.value.trim() || null, webhookEvents: events });
      Object.assign(values, saved);
      test.disabled = !saved.webhookUrl;
      alert.ok('Saved.');
    });
  });
  test.addEventListener('click', () => busy(test, alert, async () => {
    const sent = await api.post('/api/settings/webhook-test');
    if (sent.delivered) alert.ok(`Delivered: the receiver answered ${sent.status}.`);
    else alert.show(new Error(`Not delivered: ${sent.error}`));
  }));
  return section('Alerts', form);
}
