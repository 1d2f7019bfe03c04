// Read markers and unread counts. While a room is shown in a visible,
// focused window, the page tells the server it has read the room up to its
// newest message (`read`); the server keeps the marker per user and room
// and tells the user's other tabs, which then clear their count. A join's
// history brings the marker (`last_read`) and the unread count; the
// marker at the join places the "new messages" line, which stays until the
// reader sends a message in that room.

import { session } from './session.js';
import { rooms, currentRoom, isCurrent } from './rooms.js';
import { nextRef, readFrame } from './protocol.js';
import { send } from './connection.js';
import { placeDivider, renderJoined } from './render.js';

// The window is on screen and has the keyboard (another window or tab in
// front: messages arriving now are unread).
export const windowSeen = () => document.visibilityState === 'visible' && document.hasFocus();

// The reader sees `room` now.
export const roomSeen = (room) => isCurrent(room) && windowSeen();

const READ_DELAY_MS = 300;
const readTimers = new Map(); // room name -> timer of its next `read`

const newestChat = (room) => (room.messages.length ? room.messages[room.messages.length - 1].id : 0);

// Marks `room` read up to its newest message, if the reader sees it. The
// count goes at once; the `read` frame waits READ_DELAY_MS, so that a busy
// room costs one frame for a burst of messages, not one each.
export function markRead(room) {
  if (!room || room.status !== 'joined' || !roomSeen(room)) return;
  if (room.unread > 0) {
    room.unread = 0;
    renderJoined();
  }
  // What the reader has seen now: by the time the frame goes out, the
  // room may be out of sight and have newer messages, unread.
  room.seenUpTo = Math.max(room.seenUpTo, newestChat(room));
  if (readTimers.has(room.name)) return;
  readTimers.set(room.name, setTimeout(() => {
    readTimers.delete(room.name);
    if (rooms.get(room.name) !== room || room.status !== 'joined') return;
    const id = room.seenUpTo;
    if (id <= Math.max(room.lastRead, room.readSent)) return;
    if (send(readFrame(room.name, id, nextRef('r')))) room.readSent = id;
  }, READ_DELAY_MS));
}

// The window came back into view or got the focus.
export function windowShown() {
  markRead(currentRoom());
}

// A `history`: the stored marker and unread count (they count what a
// rejoin's paging over REST brings too). At the first join of this page
// the marker also places the "new messages" line. A server without read
// markers: the chats of others new to the page count, on a rejoin.
export function readStateFromHistory(room, frame, rejoin, addedOthers) {
  const lastRead = Number.isSafeInteger(frame.last_read) && frame.last_read > 0 ? frame.last_read : 0;
  if (lastRead > room.lastRead) room.lastRead = lastRead;
  if (!rejoin) room.dividerAfter = lastRead > 0 ? lastRead : null;
  room.serverCounts = Number.isSafeInteger(frame.unread) && frame.unread >= 0;
  if (room.serverCounts) room.unread = frame.unread;
  else if (rejoin && !roomSeen(room)) room.unread += addedOthers;
  if (isCurrent(room)) placeDivider(room);
}

// A chat from someone else arrived in `room`: unread unless seen.
export function chatArrived(room, frame) {
  if (roomSeen(room)) { markRead(room); return; }
  // Mine, or read already (another tab's `read` came first).
  if (frame.user === session.user || frame.id <= room.lastRead) return;
  room.unread += 1;
  renderJoined();
}

// A `read` from the server: the reader's marker moved (this tab's own
// acknowledgement, or another tab or device read the room).
export function onRead(frame) {
  const room = rooms.get(frame.room);
  if (!room || !Number.isSafeInteger(frame.id)) return;
  if (frame.id > room.lastRead) room.lastRead = frame.id;
  if (frame.id > room.readSent) room.readSent = frame.id;
  const left = room.messages.filter((m) => m.id > room.lastRead && m.user !== session.user).length;
  if (left < room.unread) {
    room.unread = left;
    renderJoined();
  }
}

// The reader wrote in `room`: the "new messages" line has done its job.
export function clearDivider(room) {
  if (room.dividerAfter === null) return;
  room.dividerAfter = null;
  placeDivider(room);
}
