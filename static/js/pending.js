// The reader's chats on their way: each goes out with a `key` (so the
// server stores it once however often it is sent) and a `ref` (its echo
// carries it back), and shows as "sending…" until that echo. The ones
// without an echo when the connection drops are sent again, with the same
// key, as soon as their room is joined on the next connection; the server
// answers a key it already stored with the original message, which the
// page already has by id, so nothing shows twice and nothing is dropped.
// They are kept in sessionStorage, so a reload sends them again too.

import { $ } from './dom.js';
import { session } from './session.js';
import { store, load, SS_PENDING } from './storage.js';
import { rooms, isCurrent } from './rooms.js';
import { nextRef, nextKey, chatFrame } from './protocol.js';
import { send, connectCount } from './connection.js';
import { autosize, showPending } from './render.js';
import { showError } from './notices.js';

// Sends `text` to `room` (joined, the connection open) as a new chat,
// replying to `replyTo` (an id, or null). False when it could not go out.
export function sendChat(room, text, replyTo) {
  const ref = nextRef('m');
  const key = nextKey();
  if (!send(chatFrame(room.name, text, ref, key, replyTo))) return false;
  const p = {
    ref, key, text, replyTo, afterId: room.lastId, sentOn: connectCount(), node: null, hidden: false,
  };
  room.pending.push(p);
  if (isCurrent(room)) showPending(room, p);
  savePending();
  return true;
}

// The pending message of `room` whose echo or error carries `ref`, if any.
export const pendingWithRef = (room, ref) => room.pending.find((x) => x.ref === ref);

export function removePending(room, p) {
  room.pending = room.pending.filter((x) => x !== p);
  if (p.node) p.node.remove();
  p.node = null;
  savePending();
}

// A message the server refused: its text returns to the message box.
export function failPending(p, why) {
  const box = $('composer-input');
  // Failures arrive in the order sent; appending keeps that order.
  box.value = box.value.trim() === '' ? p.text : `${box.value}\n${p.text}`;
  autosize();
  showError(`Not sent: ${why} Your text is back in the message box.`, 'not_sent');
}

// `room` has just been joined on this connection (its history is in):
// every pending message not sent on this connection goes out again with
// its key. One whose text is already among what the history brought (the
// server stored it, its echo was lost) is hidden meanwhile, so that it
// does not show twice until the server's answer settles it.
export function resendPending(room) {
  const now = connectCount();
  const claimed = new Set();
  for (const p of room.pending) {
    if (p.sentOn === now) continue;
    const found = room.messages.find((m) => m.id > p.afterId && m.user === session.user
      && m.text === p.text && !claimed.has(m.id));
    if (found) claimed.add(found.id);
    p.hidden = !!found;
    if (p.node) p.node.hidden = p.hidden;
    if (!send(chatFrame(room.name, p.text, p.ref, p.key, p.replyTo))) return;
    p.sentOn = now;
  }
}

// ---- kept across a reload (sessionStorage, this tab) -----------------------------

export function savePending() {
  if (!session.user) return;
  const list = [];
  for (const room of rooms.values()) {
    for (const p of room.pending) {
      list.push({
        room: room.name, ref: p.ref, key: p.key, text: p.text, replyTo: p.replyTo, afterId: p.afterId,
      });
    }
  }
  store(sessionStorage, SS_PENDING + session.user, list.length ? JSON.stringify(list) : null);
}

// After a sign-in (rooms restored): the messages this tab had on their way
// when it was last closed or reloaded, pending again in their rooms.
export function restorePending() {
  let list = null;
  try { list = JSON.parse(load(sessionStorage, SS_PENDING + session.user)); } catch (_) { list = null; }
  if (!Array.isArray(list)) return;
  for (const item of list) {
    const room = item && rooms.get(item.room);
    if (!room || typeof item.text !== 'string' || typeof item.key !== 'string') continue;
    room.pending.push({
      ref: typeof item.ref === 'string' ? item.ref : nextRef('m'),
      key: item.key,
      text: item.text,
      replyTo: typeof item.replyTo === 'number' ? item.replyTo : null,
      afterId: typeof item.afterId === 'number' ? item.afterId : 0,
      sentOn: 0, // never on this page's connections: sent when the room is joined
      node: null,
      hidden: false,
    });
  }
}
