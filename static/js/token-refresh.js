// Keeping a token connection alive past its token's expiry. Before the
// token expires the page asks the integrator's TOKEN_REFRESH_URL (told in
// /health) for a fresh one: GET with the browser's credentials, answered
// with JSON {"token": "..."} for the same user. The fresh token is sent over
// the open socket (`refresh`, answered `refreshed`) and used for later
// reconnects. Without such a URL, or when it fails, the reader is told to
// sign in again before the token runs out.

import { session } from './session.js';
import { connect, send, isOpen } from './connection.js';
import { showError, clearErrors } from './notices.js';
import { store, SS_TOKEN } from './storage.js';
// Refresh this long before exp (at most a quarter of what is left).
const REFRESH_LEAD_MS = 60000;
// After a failed refresh, try again this often while time remains.
const RETRY_MS = 15000;

let timer = null;
let counter = 0;
let pendingRef = null;

// The `exp` of a token in milliseconds, or null.
function expiryOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part));
    return Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
  } catch (_) { return null; }
}

function subjectOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part)).sub;
  } catch (_) { return null; }
}

function timeOf(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

// Says that the reader must sign in again before `exp`; stays until a
// refresh succeeds or the reader signs out.
function warnSignIn(exp) {
  clearErrors('token-expiring');
  showError(`Your sign-in ends at ${timeOf(exp)}. Sign out and sign in again with a new token `
    + 'before then to stay connected.', 'token-expiring', true);
}

// (Re)plans the refresh of the current token. Called on sign-in, on a
// fresh token, and after each refresh attempt.
export function scheduleRefresh() {
  clearTimeout(timer);
  timer = null;
  if (session.authMode !== 'token' || !session.user || !session.token) return;
  const exp = expiryOf(session.token);
  if (exp === null) return;
  const left = exp - Date.now();
  const lead = Math.min(REFRESH_LEAD_MS, Math.max(0, left / 4));
  timer = setTimeout(refreshNow, Math.max(0, left - lead));
}

// Fetches a fresh token and hands it to the connection; on any failure,
// warns and tries again later while the token still lives.
export async function refreshNow() {
  timer = null;
  const exp = expiryOf(session.token || '');
  if (!session.refreshUrl) { if (exp) warnSignIn(exp); return; }
  let token = null;
  try {
    const response = await fetch(session.refreshUrl, { credentials: 'include', cache: 'no-store' });
    const body = response.ok ? await response.json() : null;
    if (body && typeof body.token === 'string' && subjectOf(body.token) === session.user) {
      token = body.token;
    }
  } catch (_) { /* said below */ }
  if (!session.user) return; // signed out meanwhile
  if (!token) { failed(exp); return; }
  useToken(token);
}

function failed(exp) {
  if (exp) warnSignIn(exp);
  if (exp && exp - Date.now() > RETRY_MS) {
    clearTimeout(timer);
    timer = setTimeout(refreshNow, RETRY_MS);
  }
}

// A fresh token for the signed-in user (from the refresh URL, or a
// `#token=` link): kept for reconnects and sent over the open socket so
// the connection lives on.
export function useToken(token) {
  session.token = token;
  store(sessionStorage, SS_TOKEN, token);
  if (isOpen()) {
    counter += 1;
    pendingRef = `refresh-${counter}`;
    send({ type: 'refresh', token, ref: pendingRef });
  } else {
    // Used when the socket opens again (at once, after a 4001 close).
    clearErrors('token-expiring');
    clearErrors('token-expired');
    scheduleRefresh();
    connect();
  }
}

// The server took the token: the warning goes, the next refresh is planned.
export function onRefreshed(frame) {
  if (frame.ref === pendingRef) pendingRef = null;
  clearErrors('token-expiring');
  clearErrors('token-expired');
  scheduleRefresh();
}

// The server refused the token sent (`invalid_token`): the connection
// keeps the old one; warn, and try again later.
export function onRefreshRefused(frame) {
  if (frame.ref !== pendingRef) return false;
  pendingRef = null;
  failed(expiryOf(session.token || ''));
  return true;
}

// The server closed the connection because the token expired (4001).
export function onExpiredClose() {
  clearErrors('token-expiring');
  showError('Your sign-in has expired. Sign out and sign in again with a new token.',
    'token-expired', true);
}

export function stopRefresh() {
  clearTimeout(timer);
  timer = null;
  pendingRef = null;
  clearErrors('token-expiring');
  clearErrors('token-expired');
}
