// Which rooms the reader is in: joining (from the field or the active-room
// list), rejoining every room with `since` after a reconnect, leaving,
// choosing the room shown, and keeping the list of active rooms fresh
// (GET /api/rooms, every few seconds and after each join or leave).

import { $ } from './dom.js';
import { session } from './session.js';
import {
  rooms, joinRefs, newRoom, isCurrent, currentName, setCurrent, setActiveRooms, saveRooms,
  knownDms,
} from './rooms.js';
import { roomProblem, nextRef, joinFrame, leaveFrame } from './protocol.js';
import { send } from './connection.js';
import { activeRooms } from './api.js';
import {
  renderRoom, renderJoined, renderRoomList, refreshComposer, showLeaving,
} from './render.js';
import { closeDrawers } from './drawers.js';
import { savePending } from './pending.js';
import { roomChanged } from './composer.js';
import { markRead } from './reading.js';
import { dmRoom } from './direct.js';

const ROOMS_POLL_MS = 5000;

let pollTimer = null;

function sendJoin(room) {
  const ref = nextRef('j');
  // A rejoin asks for what came after the last message seen; the room's
  // history frame then holds exactly what was missed.
  const frame = joinFrame(room.name, ref, room.joinedOnce ? room.lastId : null);
  // A direct-message room is always joined with `dm`: by name the server
  // lets its users in only while it is open (docs/PROTOCOL.md).
  if (room.dm) {
    delete frame.room;
    frame.dm = room.dm;
  }
  room.status = 'joining';
  room.sentSince = room.joinedOnce ? room.lastId : null;
  if (send(frame)) joinRefs.set(ref, room.name);
}

// A connection opened: every room is joined on it.
export function rejoinAll() {
  for (const room of rooms.values()) sendJoin(room);
}

// The connection closed. A leave without its acknowledgement is complete:
// the server drops a closed connection from its rooms. Everything else is
// rejoined once a connection opens again.
export function connectionLost() {
  for (const room of [...rooms.values()]) {
    if (room.leaving) dropRoom(room);
    else room.status = 'joining';
  }
  joinRefs.clear();
  renderJoined();
  refreshComposer();
}

export function joinRoom(name, select) {
  let room = rooms.get(name);
  if (!room) {
    room = newRoom(name);
    rooms.set(name, room);
    sendJoin(room);
    saveRooms();
  }
  if (select) selectRoom(name);
  else renderJoined();
}

// Opens (or shows) the direct messages with `user`.
export function startDm(user) {
  const name = dmRoom(session.user, user);
  knownDms.delete(name); // joined from here on: the room counts its unread
  if (!rooms.has(name)) {
    const room = newRoom(name, user);
    rooms.set(name, room);
    sendJoin(room);
    saveRooms();
  }
  selectRoom(name);
}

// The "Join a room" field: a name the protocol refuses is said under it.
export function submitJoin(event) {
  event.preventDefault();
  const input = $('join-input');
  const name = input.value.trim();
  const problem = roomProblem(name);
  const error = $('join-error');
  error.textContent = problem || '';
  error.hidden = !problem;
  input.setAttribute('aria-invalid', problem ? 'true' : 'false');
  if (problem) { input.focus(); return; }
  input.value = '';
  joinRoom(name, true);
  $('composer-input').focus();
}

export function leaveRoom(room) {
  // A second click before the acknowledgement would be refused (not_joined).
  if (room.leaving) return;
  room.leaving = true;
  if (isCurrent(room)) showLeaving();
  if (!send(leaveFrame(room.name, nextRef('l')))) dropRoom(room);
}

// The room is left (or could not be joined): forgotten, and another shown.
export function dropRoom(room) {
  rooms.delete(room.name);
  if (currentName() === room.name) {
    const next = rooms.keys().next();
    setCurrent(next.done ? null : next.value);
    renderRoom();
    roomChanged();
  }
  saveRooms();
  savePending();
  renderJoined();
  if (session.user) pollRooms();
}

export function selectRoom(name) {
  const room = rooms.get(name);
  if (!room) return;
  setCurrent(name);
  saveRooms();
  renderRoom();
  roomChanged();
  markRead(room);
  renderJoined();
  closeDrawers();
}

export async function pollRooms() {
  clearTimeout(pollTimer);
  try {
    const body = await activeRooms();
    if (body && Array.isArray(body.rooms)) {
      setActiveRooms(body.rooms);
      renderRoomList();
    }
  } catch (_) { /* the connection line already says when the server is away */ }
  // Several polls may overlap (one is started after each join): keep one timer.
  clearTimeout(pollTimer);
  if (session.user) pollTimer = setTimeout(pollRooms, ROOMS_POLL_MS);
}

export function stopPolling() {
  clearTimeout(pollTimer);
}
