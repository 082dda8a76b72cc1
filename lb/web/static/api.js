// The JSON API: fetch, the error envelope, and the 401 hook the shell installs.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    // true when the shell is taking the user to the login / TOTP screen: callers show nothing.
    this.auth = status === 401 && (code === 'authentication_required' || code === 'totp_required');
  }
}

// The dashboard's own sign-in API: the session, the password, TOTP.
export const AUTH = '/api/dashboard-auth';

let authHandler = null;
export const onAuthRequired = (fn) => { authHandler = fn; };

function url(path, query) {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

// Resolves {status, data}; rejects with ApiError.
export async function request(method, path, { body, query } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url(path, query), init);
  } catch {
    throw new ApiError(0, 'network_error', 'Cannot reach the server. Check the connection and try again.');
  }
  let data = null;
  const text = res.status === 204 ? '' : await res.text().catch(() => '');
  if (text) { try { data = JSON.parse(text); } catch { data = null; } }
  if (res.ok) return { status: res.status, data };
  const e = (data && data.error) || {};
  let message = e.message || `The server answered ${res.status} ${res.statusText}`.trim();
  if (res.status === 429) {
    const wait = res.headers.get('Retry-After');
    if (wait) message += ` (try again in ${wait} s)`;
  }
  const err = new ApiError(res.status, e.code || `http_${res.status}`, message);
  if (err.auth && authHandler) authHandler(err.code);
  throw err;
}

const call = (method) => (path, opts) => request(method, path, opts).then((r) => r.data);
export const get = (path, query) => call('GET')(path, { query });
export const post = (path, body) => call('POST')(path, { body });
export const patch = (path, body) => call('PATCH')(path, { body });
export const del = (path) => call('DELETE')(path);
