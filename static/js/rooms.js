// The rooms the reader is in, each with its own state (members, the
// messages seen, history paging, unread count, messages on their way),
// which one is shown, the joins not yet answered, and the server's list of
// active rooms. Plain data, no DOM and no network: frames.js, history.js,
// membership.js and composer.js change it, render.js shows it.

import { store, load, LS_ROOMS, LS_CURRENT } from './storage.js';
import { ROOM_RE } from './protocol.js';

const DEFAULT_ROOM = 'general';

export const rooms = new Map(); // name -> Room, in the order joined
export const joinRefs = new Map(); // ref of a join -> room name

let current = null; // the shown room's name
let active = []; // last GET /api/rooms

export function newRoom(name) {
  return {
    name,
    status: 'joining', // 'joining' | 'joined'
    joinedOnce: false, // after the first history: rejoins use `since`
    messages: [], // sorted by id
    ids: new Set(),
    lastId: 0, // highest id seen
    moreOlder: false,
    loadingOlder: false,
    catchingUp: false,
    members: [],
    unread: 0,
    pending: [], // {ref, text, node, afterId, sentOn}
    leaving: false,
  };
}

export const currentName = () => current;

export function setCurrent(name) { current = name; }

// The shown room, or a falsy value when none is.
export const currentRoom = () => current && rooms.get(current);

export function isCurrent(room) { return current === room.name; }

export const activeRooms = () => active;

export function setActiveRooms(list) { active = list; }

export function saveRooms() {
  store(localStorage, LS_ROOMS, JSON.stringify([...rooms.keys()]));
  store(localStorage, LS_CURRENT, current);
}

// The rooms remembered from the last visit (each to be joined afresh), and
// the room that was shown.
export function restoreRooms() {
  rooms.clear();
  // `general` only on a first visit: a saved empty list means the user
  // left every room, and stays that way after a reload.
  const stored = load(localStorage, LS_ROOMS);
  let saved = null;
  try { saved = JSON.parse(stored); } catch (_) { saved = null; }
  saved = Array.isArray(saved) ? saved.filter((r) => typeof r === 'string' && ROOM_RE.test(r)) : null;
  if (saved === null) saved = [DEFAULT_ROOM];
  for (const name of saved) rooms.set(name, newRoom(name));
  const shown = load(localStorage, LS_CURRENT);
  current = rooms.has(shown) ? shown : (saved[0] ?? null);
}

// Every room forgotten (signing out), not what is remembered for next time.
export function forgetRooms() {
  rooms.clear();
  current = null;
}

// Adds message `m` to `room` in id order, once. Its index in
// room.messages when it was new, else -1.
export function addMessage(room, m) {
  if (typeof m.id !== 'number' || room.ids.has(m.id)) return -1;
  const msg = {
    id: m.id,
    user: String(m.user),
    text: String(m.text),
    timestamp: String(m.timestamp),
  };
  room.ids.add(msg.id);
  let i = room.messages.length;
  while (i > 0 && room.messages[i - 1].id > msg.id) i -= 1;
  room.messages.splice(i, 0, msg);
  if (msg.id > room.lastId) room.lastId = msg.id;
  return i;
}
