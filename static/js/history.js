// A room's stored history beyond what the join brought: older pages when
// the reader scrolls to the top, and, after a rejoin whose history was cut
// short, the pages missed while away (over REST, docs/PROTOCOL.md). Every
// message, from here or live, goes into its room through insertMessage:
// once each, in id order.

import { session } from './session.js';
import {
  rooms, addMessage, updateMessage, isCurrent,
} from './rooms.js';
import { messagesBefore, messagesAfter } from './api.js';
import { socket } from './connection.js';
import {
  atBottom, scrollToBottom, showNewMarker, holdScroll, showInserted, renderOlderControls, renderJoined,
  refreshMessage,
} from './render.js';
import { showError } from './notices.js';

const OLDER_PAGE = 50;
const CATCH_UP_PAGE = 200;
const CATCH_UP_TRIES = 4;

// Adds a message to its room, in id order, once. True when it was new.
export function insertMessage(room, m) {
  const i = addMessage(room, m);
  if (i < 0) return false;
  if (isCurrent(room)) showInserted(room, i);
  return true;
}

export async function loadOlder(room) {
  if (room.loadingOlder || !room.moreOlder || room.messages.length === 0) return;
  room.loadingOlder = true;
  renderOlderControls(room);
  try {
    const before = room.messages[0].id;
    const page = await messagesBefore(room.name, before, OLDER_PAGE);
    const restoreScroll = holdScroll();
    for (const m of page.messages) insertMessage(room, m);
    room.moreOlder = page.more === true;
    if (isCurrent(room)) restoreScroll();
  } catch (err) {
    showError(`Could not load older messages: ${err.message}`, 'older');
  } finally {
    room.loadingOlder = false;
    if (isCurrent(room)) renderOlderControls(room);
  }
}

// After a rejoin whose history was cut at MAX_HISTORY: page forward over
// REST until nothing newer is left. Live messages may arrive meanwhile;
// insertMessage keeps the list sorted and free of duplicates. The changes
// cut off may be edits, deletes or reactions of messages the page already
// shows, which REST does not list as changes: so the paging starts at the
// first message shown, and each one shown takes its current state from
// REST (unless a live change came after the paging began: that is newer).
export async function catchUp(room, cursor) {
  room.catchingUp = true;
  const connection = socket();
  const changesBefore = room.changes;
  if (room.messages.length > 0) cursor = Math.min(cursor, room.messages[0].id - 1);
  let failures = 0;
  try {
    for (;;) {
      let page;
      try {
        page = await messagesAfter(room.name, cursor, CATCH_UP_PAGE);
      } catch (err) {
        failures += 1;
        if (failures >= CATCH_UP_TRIES || socket() !== connection) throw err;
        await new Promise((resolve) => setTimeout(resolve, 1000 * failures));
        continue;
      }
      if (rooms.get(room.name) !== room) return;
      const stick = isCurrent(room) && atBottom();
      let added = 0;
      for (const m of page.messages) {
        if (insertMessage(room, m)) {
          added += 1;
          if (!room.serverCounts && !isCurrent(room) && m.user !== session.user) room.unread += 1;
        } else {
          const msg = updateMessage(room, m, changesBefore);
          if (msg) refreshMessage(room, msg);
        }
        if (m.id > cursor) cursor = m.id;
      }
      if (isCurrent(room) && added) {
        if (stick) scrollToBottom();
        else showNewMarker();
      }
      renderJoined();
      if (!page.more || page.messages.length === 0) break;
    }
  } catch (err) {
    showError(`Could not load the messages you missed in ${room.name}: ${err.message}`, 'catch_up');
  } finally {
    room.catchingUp = false;
  }
}
