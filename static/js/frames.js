// What each frame from the server does to the rooms and the page
// (protocol.js says what a frame is): a join's history (chats, and after a
// reconnect the edits, deletes and reactions missed, applied in order),
// presence, members coming and going, chat messages (the reader's own echo
// settles its pending message), edits, deletes and reactions, typing, read
// markers, moderation (a notice in the timeline; moderation.js says what
// it means), and errors (a refused join, a refused message, a refused
// moderator's action, or a toast). Frames about rooms the reader is not in
// are ignored.

import { session } from './session.js';
import {
  rooms, joinRefs, isCurrent, applyChange, byCodePoint,
} from './rooms.js';
import { FRIENDLY } from './protocol.js';
import { insertMessage, catchUp } from './history.js';
import { dropRoom, pollRooms } from './membership.js';
import {
  pendingWithRef, removePending, failPending, resendPending,
} from './pending.js';
import { forgetTarget, renderMode } from './composer.js';
import { onTyping, stoppedTyping } from './typing.js';
import {
  readStateFromHistory, markRead, chatArrived, onRead,
} from './reading.js';
import {
  atBottom, scrollToBottom, showNewMarker, renderEmptyNote, renderOlderControls, renderMembers,
  renderJoined, refreshComposer, refreshMessage, showNotice,
} from './render.js';
import { showError, announce } from './notices.js';
import { onRefreshed, onRefreshRefused } from './token-refresh.js';
import {
  addNotice, aboutMe, settle, actionRefused, mutedText, bannedText,
} from './moderation.js';
import { onDirect } from './inbox.js';

export function handleFrame(frame) {
  switch (frame.type) {
    case 'history': return onHistory(frame);
    case 'presence': return onPresence(frame);
    case 'join': return onMemberJoin(frame);
    case 'leave': return onMemberLeave(frame);
    case 'chat': return onChat(frame);
    case 'edit':
    case 'delete':
    case 'reaction': return onChange(frame);
    case 'moderation': return onModeration(frame);
    case 'typing': return onTyping(frame);
    case 'read': return onRead(frame);
    case 'refreshed': return onRefreshed(frame);
    case 'direct': return onDirect(frame);
    case 'error': return onError(frame);
    default: return undefined;
  }
}

// A chat or a change from a history or a live frame, applied to `room`
// (a moderation also shows its notice). True when a chat was new to the page.
function applyItem(room, m, live) {
  const type = typeof m.type === 'string' ? m.type : 'chat';
  if (type === 'chat') return insertMessage(room, m);
  const msg = applyChange(room, m);
  if (msg) {
    refreshMessage(room, msg);
    if (msg.deleted) forgetTarget(room, msg.id);
    if (type === 'edit' || msg.deleted) renderMode();
  }
  if (type === 'moderation') {
    const notice = addNotice(room, m);
    if (notice) showNotice(room, notice);
    // (A kick or ban of the reader is said in a toast, an alert.)
    const toasted = m.user === session.user && (m.action === 'kick' || m.action === 'ban');
    if (notice && live && isCurrent(room) && !toasted) announce(`${room.name}: ${notice.text}`);
    aboutMe(room, m, live);
  }
  return false;
}

function onHistory(frame) {
  const room = rooms.get(frame.room);
  if (!room || !Array.isArray(frame.messages)) return;
  for (const [ref, name] of joinRefs) if (name === room.name) joinRefs.delete(ref);
  const rejoin = room.sentSince !== null && room.sentSince !== undefined;
  const stick = isCurrent(room) && atBottom();
  let cursor = rejoin ? room.sentSince : 0;
  let added = 0;
  let addedOthers = 0;
  for (const m of frame.messages) {
    if (!m || typeof m !== 'object') continue;
    if (applyItem(room, m, false)) {
      added += 1;
      if (m.user !== session.user) addedOthers += 1;
    }
    if (m.id > cursor) cursor = m.id;
  }
  readStateFromHistory(room, frame, rejoin, addedOthers);
  room.status = 'joined';
  if (!rejoin) {
    room.moreOlder = frame.more === true;
    room.joinedOnce = true;
  }
  if (isCurrent(room)) {
    renderOlderControls(room);
    renderEmptyNote(room);
    if (!rejoin || stick) scrollToBottom();
    else if (added) showNewMarker();
  }
  if (rejoin && frame.more === true) catchUp(room, cursor);
  resendPending(room);
  markRead(room);
  renderJoined();
  refreshComposer();
  if (!rejoin) pollRooms(); // the room list shows the new member count now
}

function onPresence(frame) {
  const room = rooms.get(frame.room);
  if (!room || !Array.isArray(frame.users)) return;
  room.members = frame.users.filter((u) => typeof u === 'string');
  if (isCurrent(room)) renderMembers();
}

function onMemberJoin(frame) {
  const room = rooms.get(frame.room);
  if (!room || typeof frame.user !== 'string') return;
  if (!room.members.includes(frame.user)) {
    room.members.push(frame.user);
    room.members.sort(byCodePoint);
  }
  if (isCurrent(room)) renderMembers();
}

function onMemberLeave(frame) {
  const room = rooms.get(frame.room);
  if (!room) return;
  if (frame.user === session.user) {
    // Our own leave, or the server put this connection out of the room
    // (a kick or a ban, said by the moderation frame before it; or a
    // refreshed token whose `rooms` no longer allow it).
    if (!room.leaving && !room.removedBy) {
      showError(`You are no longer in ${room.name}.`, 'removed', true);
    }
    dropRoom(room);
    return;
  }
  room.members = room.members.filter((u) => u !== frame.user);
  if (isCurrent(room)) renderMembers();
}

function onChat(frame) {
  const room = rooms.get(frame.room);
  if (!room || typeof frame.id !== 'number') return;
  if (typeof frame.ref === 'string') {
    const p = pendingWithRef(room, frame.ref);
    if (p) removePending(room, p);
  }
  stoppedTyping(room, frame.user);
  const stick = isCurrent(room) && atBottom();
  const added = insertMessage(room, frame);
  if (!added) return;
  if (isCurrent(room)) {
    if (stick || frame.user === session.user) scrollToBottom();
    else showNewMarker();
    if (frame.user !== session.user) announce(`${frame.user} in ${room.name}: ${frame.text}`);
  }
  chatArrived(room, frame);
}

// An edit, delete or reaction (or a moderator's delete), live. (The
// answer to a reaction that changed nothing may come without an id.)
function onChange(frame) {
  const room = rooms.get(frame.room);
  if (!room) return;
  const stick = isCurrent(room) && atBottom();
  applyItem(room, frame, true);
  if (stick) scrollToBottom();
}

// A moderator's action, live: the change (a delete) and its notice; the
// reader's own action is settled, and the reader as its target told.
function onModeration(frame) {
  if (typeof frame.ref === 'string') settle(frame.ref);
  onChange(frame);
}

function onError(frame) {
  const code = typeof frame.code === 'string' ? frame.code : 'error';
  const serverText = typeof frame.message === 'string' ? frame.message : '';
  const ref = typeof frame.ref === 'string' ? frame.ref : null;
  // Only a server older than the page answers this (to `typing` or
  // `read`, say): the reader can do nothing about it, and chat still works.
  if (code === 'unknown_type') return;
  if (code === 'invalid_token' && onRefreshRefused(frame)) return;
  if (actionRefused(frame)) return;
  if (ref && joinRefs.has(ref)) {
    const name = joinRefs.get(ref);
    joinRefs.delete(ref);
    const room = rooms.get(name);
    if (code === 'already_joined') return; // harmless: we are in it
    if (room) dropRoom(room);
    // A ban is not over in a few seconds: its toast stays.
    const why = code === 'banned' ? bannedText(name) : FRIENDLY[code] || serverText;
    showError(`Could not join ${name}: ${why}`, code, code === 'banned');
    return;
  }
  if (ref) {
    for (const room of rooms.values()) {
      const p = pendingWithRef(room, ref);
      if (p) {
        removePending(room, p);
        failPending(p, code === 'muted' ? mutedText(room) : FRIENDLY[code] || serverText);
        return;
      }
    }
  }
  const room = code === 'muted' ? rooms.get(frame.room) : null;
  const text = code === 'muted' ? mutedText(room) : FRIENDLY[code];
  showError(text || serverText || `Error: ${code}`, code);
}
