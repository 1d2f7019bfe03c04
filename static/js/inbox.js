// The direct messages the reader has not joined on this page: the list
// GET /api/dms gives at sign-in and after each reconnect (DMs the other
// user opened included), and the `direct` notices the server sends while
// a chat arrives in one of them (docs/PROTOCOL.md). Both go into
// rooms.knownDms, which render.js shows with its unread count; a click
// joins the room with `dm` (membership.startDm).

import { session } from './session.js';
import { rooms, knownDms, knowDm } from './rooms.js';
import { NAME_RE, ROOM_RE } from './protocol.js';
import { directMessages } from './api.js';
import { renderJoined } from './render.js';
import { isDmRoom } from './direct.js';

const count = (n) => (Number.isSafeInteger(n) && n >= 0 ? n : 0);

// Asks the server for the reader's DMs and merges them with what the page
// knows. Token mode only (there are no DMs otherwise); a failure is
// silent (the connection line says when the server is away).
export async function loadDms() {
  const { user, token } = session;
  if (session.authMode !== 'token' || !user || !token) return;
  let body;
  try { body = await directMessages(token); } catch (_) { return; }
  // Signed out, or in as someone else, meanwhile.
  if (session.user !== user || !body || !Array.isArray(body.rooms)) return;
  for (const dm of body.rooms) {
    if (!dm || typeof dm.room !== 'string' || !ROOM_RE.test(dm.room) || !isDmRoom(dm.room)) continue;
    if (typeof dm.with !== 'string' || !NAME_RE.test(dm.with) || rooms.has(dm.room)) continue;
    knowDm(dm.room, dm.with, count(dm.last_id), count(dm.unread));
  }
  renderJoined();
}

// `direct`: `with` wrote chat `id` in a DM this connection is not in. A
// room joined here counts its own unread (from its join's history).
export function onDirect(frame) {
  const { room, with: other, id } = frame;
  if (typeof room !== 'string' || !ROOM_RE.test(room) || !isDmRoom(room)) return;
  if (typeof other !== 'string' || !NAME_RE.test(other) || !Number.isSafeInteger(id)) return;
  if (rooms.has(room)) return;
  const known = knownDms.get(room);
  if (known && id <= known.lastId) return; // the listing counted it already
  knowDm(room, other, id, (known ? known.unread : 0) + 1);
  renderJoined();
}
