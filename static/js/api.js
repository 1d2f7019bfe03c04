// The server's HTTP API (docs/PROTOCOL.md): /health, the active rooms,
// pages of a room's stored history, and the reader's direct messages. Every answer is read fresh (no cache);
// a failure throws an Error whose message is the server's own `error`.

async function getJson(path, headers = {}) {
  const response = await fetch(path, { cache: 'no-store', headers });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new Error(body && typeof body.error === 'string' ? body.error : `HTTP ${response.status}`);
  }
  return body;
}

export const health = () => getJson('/health');

export const activeRooms = () => getJson('/api/rooms');

// Up to `limit` messages of `room` older than id `before`, oldest first.
export const messagesBefore = (room, before, limit) => getJson(
  `/api/rooms/${encodeURIComponent(room)}/messages?before=${before}&limit=${limit}`);

// Up to `limit` messages of `room` newer than id `after`, oldest first.
export const messagesAfter = (room, after, limit) => getJson(
  `/api/rooms/${encodeURIComponent(room)}/messages?after=${after}&limit=${limit}`);

// The direct-message rooms `token`'s user is in, whoever opened them:
// {rooms: [{room, with, last_id, unread}]}, the most recently active first.
export const directMessages = (token) => getJson('/api/dms', { Authorization: `Bearer ${token}` });
