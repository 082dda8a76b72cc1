// The three auth screens, shown in place of the current one (the URL does not change).

function card(ctx, title, intro, form) {
  const { h } = ctx.ui;
  return h('section', { class: 'auth-card panel' }, h('h1', {}, title), intro ? h('p', { class: 'muted' }, intro) : null, form);
}

export async function setup(ctx) {
  const { h, field, alertBox, busy } = ctx.ui;
  const { passwordMinLength: min, passwordMaxLength: max } = ctx.config.limits;
  const password = h('input', { id: 'setup-password', type: 'password', autocomplete: 'new-password', required: true, minLength: min, maxLength: max });
  const token = h('input', { id: 'setup-bootstrap', type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const tokenField = field('Bootstrap token', token, 'This page is opened from another machine: enter the token the server logged as it started.');
  tokenField.hidden = true;
  const alert = alertBox();
  const button = h('button', { class: 'btn primary', type: 'submit' }, 'Set password');
  const form = h('form', { class: 'stack', novalidate: true }, ctx.ui.username(), field('Password', password, `${min} to ${max} characters.`), tokenField, alert, button);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (password.value.length < min) { alert.show(`The password must be at least ${min} characters long.`); password.focus(); return; }
    const body = { password: password.value };
    if (!tokenField.hidden && token.value.trim()) body.bootstrapToken = token.value.trim();
    busy(button, alert, async () => {
      try {
        ctx.authDone(await ctx.api.post(`${ctx.api.AUTH}/password/setup`, body));
      } catch (err) {
        if (err.code === 'bootstrap_required') {
          const first = tokenField.hidden;
          tokenField.hidden = false;
          token.focus();
          throw new Error(first ? 'This page is opened from another machine: enter the bootstrap token, then set the password again.' : err.message);
        }
        if (err.code === 'password_already_configured') { ctx.logout(); return; }
        throw err;
      }
    });
  });
  ctx.paint(card(ctx, 'Welcome to Codex-LB', 'Set the dashboard password to begin.', form));
  ctx.ready();
  password.focus();
}

export async function login(ctx) {
  const { h, field, alertBox, busy } = ctx.ui;
  const password = h('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true });
  const alert = alertBox();
  const button = h('button', { class: 'btn primary', type: 'submit' }, 'Log in');
  const form = h('form', { class: 'stack' }, ctx.ui.username(), field('Password', password), alert, button);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(button, alert, async () => {
      const state = await ctx.api.post(`${ctx.api.AUTH}/password/login`, { password: password.value });
      ctx.authDone(state);
    }).then(() => { if (!alert.hidden) { password.select(); password.focus(); } });
  });
  ctx.paint(card(ctx, 'Log in', null, form));
  ctx.ready();
  password.focus();
}

export async function totp(ctx) {
  const { h, field, alertBox, busy, codeInput } = ctx.ui;
  const digits = ctx.config.limits.totpDigits;
  const code = codeInput('totp-code', digits);
  const alert = alertBox();
  const button = h('button', { class: 'btn primary', type: 'submit' }, 'Verify');
  const cancel = h('button', { class: 'btn ghost', type: 'button', onclick: () => ctx.logout() }, 'Log out');
  const form = h('form', { class: 'stack' }, field('Authentication code', code, `The ${digits}-digit code from your authenticator app.`),
    alert, h('div', { class: 'row' }, button, cancel));
  let sending = false;
  const submit = () => {
    if (sending) return;
    if (code.value.length !== digits) { alert.show(`Enter the ${digits} digits of the code.`); code.focus(); return; }
    sending = true;
    busy(button, alert, async () => {
      ctx.authDone(await ctx.api.post(`${ctx.api.AUTH}/totp/verify`, { code: code.value }));
    }).then(() => {
      sending = false;
      if (!alert.hidden) { code.value = ''; code.focus(); }
    });
  };
  code.addEventListener('input', () => { // after codeInput's own listener has kept the digits
    if (code.value.length === digits) submit();
    else alert.clear();
  });
  form.addEventListener('submit', (event) => { event.preventDefault(); submit(); });
  ctx.paint(card(ctx, 'Two-factor authentication', 'Enter the code from your authenticator app.', form));
  ctx.ready();
  code.focus();
}
