// "alice is typing…": the reader's own typing is told to the room (a
// `typing` frame at most every TYPING_EVERY_MS while the box has text, the
// server's own throttle: sending a message does not restart it, since the
// server would drop a frame sooner), and other people's is shown for
// TYPING_SHOW_MS after their last `typing` frame, or until their message
// arrives.

import { $ } from './dom.js';
import { session } from './session.js';
import { rooms, isCurrent } from './rooms.js';
import { isBlank, typingFrame } from './protocol.js';
import { isOpen, send } from './connection.js';
import { renderTyping } from './render.js';

const TYPING_EVERY_MS = 2000;
const TYPING_SHOW_MS = 3000;

const lastSent = new Map(); // room name -> when its last typing frame went out
let expiryTimer = null;

// The reader changed the text in the box while `room` is shown.
export function userTyped(room) {
  if (!room || room.status !== 'joined' || !isOpen()) return;
  if (isBlank($('composer-input').value)) return;
  const now = Date.now();
  if (now - (lastSent.get(room.name) || 0) < TYPING_EVERY_MS) return;
  if (send(typingFrame(room.name))) lastSent.set(room.name, now);
}

// A `typing` frame: that user is typing in that room.
export function onTyping(frame) {
  const room = rooms.get(frame.room);
  if (!room || typeof frame.user !== 'string' || frame.user === session.user) return;
  room.typing.set(frame.user, Date.now() + TYPING_SHOW_MS);
  if (isCurrent(room)) renderTyping();
  scheduleExpiry();
}

// `user`'s message arrived in `room`: they are done typing it.
export function stoppedTyping(room, user) {
  if (room.typing.delete(user) && isCurrent(room)) renderTyping();
}

// Takes the typing lines whose time is up off, then waits for the next.
function scheduleExpiry() {
  clearTimeout(expiryTimer);
  const now = Date.now();
  let next = Infinity;
  for (const room of rooms.values()) {
    let changed = false;
    for (const [user, until] of room.typing) {
      if (until <= now) { room.typing.delete(user); changed = true; } else next = Math.min(next, until);
    }
    if (changed && isCurrent(room)) renderTyping();
  }
  if (next < Infinity) expiryTimer = setTimeout(scheduleExpiry, next - now + 20);
}
