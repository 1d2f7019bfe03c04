// The rooms the reader is in, each with its own state (members, the
// messages seen in their current state, history paging, read marker and
// unread count, who is typing, messages on their way, moderation notices),
// which one is shown, the joins not yet answered, and the server's list of
// active rooms. Plain data, no DOM and no network: frames.js, history.js,
// membership.js, composer.js, pending.js, reading.js and moderation.js
// change it, render.js shows it.

import { store, load, LS_ROOMS, LS_CURRENT, LS_DMS } from './storage.js';
import { ROOM_RE } from './protocol.js';

const DEFAULT_ROOM = 'general';

export const rooms = new Map(); // name -> Room, in the order joined
export const joinRefs = new Map(); // ref of a join -> room name

// Direct-message rooms the reader is one of the two users of and has not
// joined on this page: learnt from GET /api/dms at sign-in and from
// `direct` notices since (DMs the other user opened, say).
// name -> {with, lastId, unread}. Shown under "Direct messages" beside the
// joined ones; a click joins with `dm`. At most MAX_KNOWN_DMS.
export const knownDms = new Map();
const MAX_KNOWN_DMS = 200;

let current = null; // the shown room's name
let active = []; // last GET /api/rooms

// `dm`: for a direct-message room, the other user (joined with `dm`).
export function newRoom(name, dm = null) {
  return {
    name,
    dm,
    status: 'joining', // 'joining' | 'joined'
    joinedOnce: false, // after the first history: rejoins use `since`
    messages: [], // chats, sorted by id, each in its current state
    byId: new Map(), // id -> message of `messages`
    lastId: 0, // highest id seen, of a chat or a change (the rejoin's `since`)
    lastRead: 0, // the reader's read marker (the server's, or what we sent)
    readSent: 0, // the highest id a `read` was sent for
    seenUpTo: 0, // the newest chat the reader has seen here (the next `read`)
    serverCounts: false, // the server's history says `unread` (else the page counts)
    dividerAfter: null, // the "new messages" line goes after this id (from the join)
    typing: new Map(), // user -> time (ms) their typing line expires
    changes: 0, // changes applied so far (each message notes its last)
    moreOlder: false,
    loadingOlder: false,
    catchingUp: false,
    members: [],
    unread: 0,
    pending: [], // {ref, key, text, replyTo, node, afterId, sentOn}: see pending.js
    leaving: false,
    notices: [], // moderation notices, sorted by id: see moderation.js
    mutedUntil: 0, // the reader's mute here ends then (ms), as last heard
    removedBy: null, // 'kick' | 'ban': the reader was put out (the `leave` follows)
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
  const dms = {};
  for (const room of rooms.values()) if (room.dm) dms[room.name] = room.dm;
  store(localStorage, LS_DMS, JSON.stringify(dms));
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
  let dms = null;
  try { dms = JSON.parse(load(localStorage, LS_DMS)); } catch (_) { dms = null; }
  if (!dms || typeof dms !== 'object') dms = {};
  for (const name of saved) {
    const other = typeof dms[name] === 'string' ? dms[name] : null;
    rooms.set(name, newRoom(name, other));
  }
  const shown = load(localStorage, LS_CURRENT);
  current = rooms.has(shown) ? shown : (saved[0] ?? null);
}

// Notes the DM `name` with `other`, its newest chat `lastId` and `unread`
// count, unless what is known of it is newer. The least recently active
// is forgotten past MAX_KNOWN_DMS.
export function knowDm(name, other, lastId, unread) {
  const known = knownDms.get(name);
  if (known && known.lastId > lastId) return;
  knownDms.delete(name);
  knownDms.set(name, { with: other, lastId, unread });
  if (knownDms.size > MAX_KNOWN_DMS) {
    let oldest = null;
    for (const [n, dm] of knownDms) if (!oldest || dm.lastId < knownDms.get(oldest).lastId) oldest = n;
    knownDms.delete(oldest);
  }
}

// Every room forgotten (signing out), not what is remembered for next time.
export function forgetRooms() {
  rooms.clear();
  knownDms.clear();
  current = null;
}

// A history item or live frame `m` (a chat) as the page keeps it: text
// and reactions in their current state.
function messageOf(m) {
  const reactions = new Map();
  if (m.reactions && typeof m.reactions === 'object') {
    for (const [emoji, users] of Object.entries(m.reactions)) {
      if (Array.isArray(users) && users.length > 0) reactions.set(emoji, users.map(String).sort(byCodePoint));
    }
  }
  return {
    id: m.id,
    user: String(m.user),
    text: m.deleted === true ? '' : String(m.text),
    timestamp: String(m.timestamp),
    editedAt: typeof m.edited_at === 'string' ? m.edited_at : null,
    deleted: m.deleted === true,
    reactions, // emoji -> users who gave it, sorted
    replyTo: typeof m.reply_to === 'number' ? m.reply_to : null,
    changedAt: 0, // room.changes when a change was last applied to it
  };
}

export function byCodePoint(a, b) { return a < b ? -1 : a > b ? 1 : 0; }

// Adds chat `m` to `room` in id order, once. Its index in room.messages
// when it was new, else -1.
export function addMessage(room, m) {
  if (typeof m.id !== 'number' || room.byId.has(m.id)) return -1;
  const msg = messageOf(m);
  room.byId.set(msg.id, msg);
  let i = room.messages.length;
  while (i > 0 && room.messages[i - 1].id > msg.id) i -= 1;
  room.messages.splice(i, 0, msg);
  if (msg.id > room.lastId) room.lastId = msg.id;
  return i;
}

// Applies a change (an `edit`, `delete` or `reaction` frame or history
// item, or a moderator's delete) to the chat it targets. The changed
// message, or null when it is not loaded here (it comes in its current
// state if it is loaded later) or the frame is not a change.
export function applyChange(room, c) {
  if (typeof c.id === 'number' && c.id > room.lastId) room.lastId = c.id;
  const msg = typeof c.target === 'number' ? room.byId.get(c.target) : undefined;
  if (!msg) return null;
  const changed = changeOf(msg, c);
  if (changed) {
    room.changes += 1;
    msg.changedAt = room.changes;
  }
  return changed;
}

// A chat `m` in its current state (a REST page) replaces the state of the
// message with its id, unless a change was applied to it after the
// room's change count `since`. The message when it changed, else null.
export function updateMessage(room, m, since) {
  const msg = typeof m.id === 'number' ? room.byId.get(m.id) : undefined;
  if (!msg || (msg.changedAt || 0) > since) return null;
  const now = messageOf(m);
  const same = now.text === msg.text && now.editedAt === msg.editedAt && now.deleted === msg.deleted
    && JSON.stringify([...now.reactions]) === JSON.stringify([...msg.reactions]);
  if (same) return null;
  msg.text = now.text;
  msg.editedAt = now.editedAt;
  msg.deleted = now.deleted;
  msg.reactions = now.reactions;
  return msg;
}

function changeOf(msg, c) {
  switch (c.type) {
    case 'edit':
      if (msg.deleted || typeof c.text !== 'string') return null;
      msg.text = c.text;
      msg.editedAt = typeof c.timestamp === 'string' ? c.timestamp : msg.editedAt;
      return msg;
    case 'delete':
      msg.deleted = true;
      msg.text = '';
      msg.reactions.clear();
      return msg;
    case 'moderation':
      if (c.action !== 'delete') return null;
      msg.deleted = true;
      msg.text = '';
      msg.reactions.clear();
      return msg;
    case 'reaction': {
      if (typeof c.emoji !== 'string' || typeof c.user !== 'string') return null;
      const users = (msg.reactions.get(c.emoji) || []).filter((u) => u !== c.user);
      if (c.on !== false) {
        users.push(c.user);
        users.sort(byCodePoint);
      }
      if (users.length > 0) msg.reactions.set(c.emoji, users);
      else msg.reactions.delete(c.emoji);
      return msg;
    }
    default:
      return null;
  }
}
