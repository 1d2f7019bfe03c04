// Signing in and out. The server says on /health whether it wants a name
// or a signed access token (a JWT); the form asks for that one and checks
// it before connecting. A token may come in the address (`#token=...`, on
// load or while the page is open): it is taken once and removed from the
// address bar; one for another user than the signed-in one is asked about
// first, never switched to silently. The name (localStorage) or the token
// (sessionStorage) is remembered for the next load.

import { $ } from './dom.js';
import { session, tokenClaims } from './session.js';
import { store, load, LS_NAME, SS_TOKEN } from './storage.js';
import { NAME_RE, nameProblem } from './protocol.js';
import { health } from './api.js';
import { restoreRooms, forgetRooms } from './rooms.js';
import { restorePending } from './pending.js';
import { cancelMode } from './composer.js';
import { connect, disconnect, forgetRefusal } from './connection.js';
import { pollRooms, stopPolling } from './membership.js';
import { renderJoined, renderRoom } from './render.js';
import { showError } from './notices.js';
import { scheduleRefresh, stopRefresh, useToken } from './token-refresh.js';

// ---- tokens --------------------------------------------------------------

function tokenProblem(token) {
  if (token.length === 0) return 'Paste your access token.';
  const claims = tokenClaims(token);
  if (!claims) return 'This does not look like an access token (a JWT has three parts separated by dots).';
  if (typeof claims.sub !== 'string' || !NAME_RE.test(claims.sub)) {
    return 'The token does not carry a valid user name.';
  }
  // The server refuses a token without an expiry time: say so here rather
  // than retrying a connection that can never open.
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) {
    return 'This token has no expiry time (exp), so the server will refuse it. Ask for a new one.';
  }
  if (claims.exp * 1000 <= Date.now()) {
    return 'This token has expired. Ask for a new one.';
  }
  return null;
}

// A token handed over in the address (`#token=...`) is taken once and
// removed from the address bar, so it is not left in history or bookmarks.
export function tokenFromFragment() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, '', location.pathname + location.search);
  try { return decodeURIComponent(match[1]); } catch (_) { return match[1]; }
}

// ---- the form, signing in and out ----------------------------------------

function showLogin(message) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('name-mode').hidden = session.authMode === 'token';
  $('token-mode').hidden = session.authMode !== 'token';
  const error = $('name-error');
  error.textContent = message || '';
  error.hidden = !message;
  const field = session.authMode === 'token' ? $('token-input') : $('name-input');
  field.setAttribute('aria-invalid', message ? 'true' : 'false');
  field.focus();
}

function start(user) {
  session.user = user;
  forgetRefusal();
  $('me-name').textContent = user;
  $('me-name').title = user; // the name may be cut short on a narrow screen
  $('logout').textContent = session.authMode === 'token' ? 'Sign out' : 'Change name';
  $('login').hidden = true;
  $('app').hidden = false;
  restoreRooms();
  restorePending();
  renderJoined();
  renderRoom();
  connect();
  scheduleRefresh();
  pollRooms();
  $('composer-input').focus();
}

export function signOut() {
  const user = session.user;
  session.user = null;
  forgetRefusal();
  stopRefresh();
  stopPolling();
  disconnect();
  cancelMode();
  forgetRooms();
  if (session.authMode === 'token') {
    session.token = null;
    store(sessionStorage, SS_TOKEN, null);
    $('token-input').value = '';
  } else {
    $('name-input').value = user || '';
  }
  showLogin();
}

export function submitLogin(event) {
  event.preventDefault();
  if (session.authMode === 'token') {
    const token = $('token-input').value.trim();
    const problem = tokenProblem(token);
    if (problem) { showLogin(problem); return; }
    session.token = token;
    store(sessionStorage, SS_TOKEN, token);
    start(tokenClaims(token).sub);
    return;
  }
  const name = $('name-input').value.trim();
  const problem = nameProblem(name);
  if (problem) { showLogin(problem); return; }
  store(localStorage, LS_NAME, name);
  start(name);
}

// Reads /health once on load: answers the auth mode (`"auth": "token"`
// when the server wants signed tokens) and takes the server's message
// length from `limits`. Without them: names, and the default length.
async function readHealth() {
  try {
    const answer = await health();
    const max = answer && answer.limits && answer.limits.max_message_len;
    if (Number.isSafeInteger(max) && max > 0) session.maxTextChars = max;
    session.refreshUrl = answer && typeof answer.token_refresh_url === 'string'
      ? answer.token_refresh_url : null;
    if (answer && answer.auth === 'token') return 'token';
  } catch (_) { /* server away: assume names; the connection line will show it */ }
  return 'none';
}

// A token handed over (a `#token=` link) while the page may already be
// signed in. Nobody signed in: sign in with it. The same user: a fresh
// token replaces the old one quietly (the open connection stays). Another
// user: ask first, and keep the current one unless the person agrees.
// A token that cannot work is said, and the current user stays.
export function offerToken(token) {
  if (!session.user) {
    session.authMode = 'token';
    signInWithToken(token);
    return;
  }
  const problem = tokenProblem(token);
  if (problem) {
    showError(`The link's token was not used: ${problem}`, 'link-token');
    return;
  }
  const user = tokenClaims(token).sub;
  if (user === session.user && session.authMode === 'token') {
    useToken(token); // and the open connection is refreshed with it
    return;
  }
  if (user === session.user) { // signed in by name: now with a token, as the server asks
    switchToToken(token);
    return;
  }
  askToSwitch(token, user);
}

function switchToToken(token) {
  signOut();
  session.authMode = 'token';
  signInWithToken(token);
}

function askToSwitch(token, user) {
  const dialog = $('switch-user');
  // A second link while asking replaces the first.
  dialog.dataset.token = token;
  $('switch-text').textContent =
    `This link signs in as ${user}. You are signed in as ${session.user}. Switch to ${user}?`;
  $('switch-keep').textContent = `Stay as ${session.user}`;
  $('switch-accept').textContent = `Switch to ${user}`;
  dialog.returnValue = '';
  if (!dialog.open) dialog.showModal();
  $('switch-keep').focus();
}

// The "Switch user?" dialog closed: switched only if "Switch" closed it.
export function answerSwitch() {
  const dialog = $('switch-user');
  const token = dialog.dataset.token;
  delete dialog.dataset.token;
  if (dialog.returnValue === 'switch' && token) switchToToken(token);
}

// Signs in with `token`, or shows the token form with what is wrong.
function signInWithToken(token) {
  const problem = tokenProblem(token);
  if (problem) {
    $('token-input').value = token;
    showLogin(problem);
    return;
  }
  session.token = token;
  store(sessionStorage, SS_TOKEN, token);
  start(tokenClaims(token).sub);
}

// On load: signs in with what the address or the browser holds, or shows
// the form.
export async function begin() {
  const fragmentToken = tokenFromFragment();
  session.authMode = await readHealth();
  // A token in the address means this server wants tokens, even when
  // /health could not be read just now (the server may be restarting).
  if (fragmentToken) session.authMode = 'token';
  if (session.user) { // a hashchange signed in meanwhile
    if (fragmentToken) offerToken(fragmentToken);
    return;
  }
  if (session.authMode === 'token') {
    // This tab was signed in (its token is in sessionStorage) and is
    // loaded again with a link: the link is offered, as in a running tab.
    const saved = load(sessionStorage, SS_TOKEN);
    if (saved && !tokenProblem(saved) && fragmentToken) {
      signInWithToken(saved);
      offerToken(fragmentToken);
      return;
    }
    const token = fragmentToken || saved;
    if (token) { signInWithToken(token); return; }
    showLogin();
    return;
  }
  const saved = load(localStorage, LS_NAME);
  if (saved && NAME_RE.test(saved)) {
    start(saved);
    return;
  }
  showLogin();
}
