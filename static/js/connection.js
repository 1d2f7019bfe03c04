// The one WebSocket to the server: opening it as the signed-in user (name
// or token), reconnecting after a drop with exponential backoff and jitter
// (or at once: "Retry now", the browser back online), and the connection
// line in the top bar. What frames mean is not its business: each frame,
// and each time the socket opens or closes, goes to the handlers main.js
// gives it (membership.js rejoins every room with `since`, frames.js reads).

import { $ } from './dom.js';
import { session } from './session.js';
import { parseFrame } from './protocol.js';
import { health } from './api.js';
import { showError, clearErrors } from './notices.js';
import { refreshComposer } from './render.js';

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30000;
const CONNECT_TIMEOUT_MS = 10000; // a handshake not done by then is retried

const state = {
  ws: null,
  attempt: 0, // failed attempts since the last successful open
  connects: 0, // successful opens, for the status line (and the tests)
  retryTimer: null,
  retryAt: 0,
  tickTimer: null,
  refusalShown: false, // the token hint is shown once per sign-in
  refused: false, // the server is up but refuses this token: said until sign-out or success
};

// opened(): the socket is open; frame(f): a frame from the server (see
// protocol.parseFrame); closed(): it closed, before any retry is planned;
// expired(): the server closed it because the token expired (4001).
let handlers = { opened() {}, frame() {}, closed() {}, expired() {} };

// The close code of a connection whose token expired (CLOSE_EXPIRED).
const EXPIRED_CLOSE = 4001;

export function setHandlers(given) { handlers = given; }

// The socket in use, null between connections: a caller compares it
// before and after waiting to tell whether the connection was replaced.
export const socket = () => state.ws;

export const isOpen = () => !!state.ws && state.ws.readyState === WebSocket.OPEN;

// How many times a connection has opened since the page loaded.
export const connectCount = () => state.connects;

export function send(frame) {
  if (!isOpen()) return false;
  state.ws.send(JSON.stringify(frame));
  return true;
}

function setConn(kind) {
  const conn = $('conn');
  conn.dataset.state = kind;
  conn.dataset.connects = String(state.connects);
  conn.dataset.retryAt = String(kind === 'reconnecting' ? Math.round(state.retryAt) : 0);
  $('retry-now').hidden = kind !== 'reconnecting';
  let text;
  let countdown = '';
  if (kind === 'online') text = 'Connected';
  else if (state.refused && kind !== 'offline') {
    // Stays while retrying, until sign-out or a connection that opens.
    text = 'The server refuses this token — sign out and paste a new one';
    if (kind === 'reconnecting') {
      const secs = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
      countdown = `(next try in ${secs} s)`;
    }
  } else if (kind === 'connecting') text = state.connects ? 'Reconnecting…' : 'Connecting…';
  else if (kind === 'reconnecting') {
    // Nothing was lost if no connection ever opened.
    text = state.connects ? 'Connection lost, reconnecting' : 'Cannot reach the server, retrying';
    const secs = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
    countdown = `(next try in ${secs} s)`;
  } else text = 'Offline';
  // The status line is announced by screen readers: change it only when
  // the state changes; the ticking countdown beside it is not announced.
  if ($('conn-text').textContent !== text) $('conn-text').textContent = text;
  $('conn-countdown').textContent = countdown;
  refreshComposer();
}

function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = session.authMode === 'token'
    ? `token=${encodeURIComponent(session.token)}`
    : `user=${encodeURIComponent(session.user)}`;
  return `${proto}//${location.host}/ws?${query}`;
}

export function connect() {
  clearTimeout(state.retryTimer);
  clearInterval(state.tickTimer);
  state.retryTimer = null;
  if (!session.user || state.ws) return;
  setConn('connecting');
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (_) {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  let opened = false;
  const giveUp = setTimeout(() => {
    if (ws.readyState === WebSocket.CONNECTING) ws.close();
  }, CONNECT_TIMEOUT_MS);
  ws.onopen = () => {
    clearTimeout(giveUp);
    if (state.ws !== ws) return;
    opened = true;
    state.attempt = 0;
    state.connects += 1;
    if (state.refused) { state.refused = false; clearErrors('refused'); }
    setConn('online');
    handlers.opened();
  };
  ws.onmessage = (event) => {
    if (state.ws !== ws) return;
    const frame = parseFrame(event.data);
    if (frame) handlers.frame(frame);
  };
  ws.onclose = (event) => {
    clearTimeout(giveUp);
    if (state.ws !== ws) return;
    state.ws = null;
    handlers.closed();
    if (!session.user) { setConn('offline'); return; }
    // Retrying with the expired token would be refused: wait for a new
    // one (token-refresh.useToken connects again).
    if (event.code === EXPIRED_CLOSE) { setConn('offline'); handlers.expired(); return; }
    if (!opened && session.authMode === 'token' && state.attempt >= 2) explainRefusal();
    scheduleReconnect();
  };
  ws.onerror = () => { /* onclose follows and handles it */ };
}

// A try now, with the backoff started over ("Retry now", back online).
export function retryNow() {
  state.attempt = 0;
  connect();
}

// The browser does not tell why an upgrade failed. When the server is up
// and still refuses a token connection, the token is the likely cause.
async function explainRefusal() {
  if (state.refusalShown) return;
  try {
    await health();
  } catch (_) {
    return; // the server is away: nothing to say about the token
  }
  if (!session.user || session.authMode !== 'token') return; // signed out meanwhile
  state.refusalShown = true;
  state.refused = true;
  showError('The server is up but refuses the connection: your token may be wrong or expired. '
    + 'Sign out and paste a new one.', 'refused', true);
  if ($('conn').dataset.state === 'reconnecting') setConn('reconnecting');
}

// A new sign-in (or a sign-out): whatever was said about a refused token
// is withdrawn, and may be said again.
export function forgetRefusal() {
  state.refusalShown = false;
  state.refused = false;
  clearErrors('refused');
}

// Exponential backoff with "equal jitter": half the step is fixed, half random,
// so a server restart is not met by every client at the same instant.
function scheduleReconnect() {
  const step = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
  const delay = step / 2 + Math.random() * (step / 2);
  state.attempt += 1;
  state.retryAt = Date.now() + delay;
  state.retryTimer = setTimeout(connect, delay);
  setConn('reconnecting');
  clearInterval(state.tickTimer);
  state.tickTimer = setInterval(() => {
    if ($('conn').dataset.state === 'reconnecting') setConn('reconnecting');
  }, 1000);
}

export function disconnect() {
  clearTimeout(state.retryTimer);
  clearInterval(state.tickTimer);
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close(1000);
  setConn('offline');
}
