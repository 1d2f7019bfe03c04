// The message box: sending what the reader typed (a new chat, a reply, or
// the new text of a message being edited), after checking it by the
// protocol's rules (a refusal keeps it in the box). Above the box, a line
// says what the box is doing besides a new message ("Replying to bob: …",
// "Editing your message"), with a button to cancel it (Escape too).
// Chats on their way are pending.js's.

import { $, el } from './dom.js';
import { session } from './session.js';
import { rooms, currentRoom } from './rooms.js';
import { isBlank, wellFormed, nextRef, editFrame } from './protocol.js';
import { isOpen, send } from './connection.js';
import { sendChat } from './pending.js';
import { excerpt } from './message-view.js';
import { autosize, scrollToBottom, renderEmptyNote } from './render.js';
import { clearDivider } from './reading.js';
import { showError } from './notices.js';

// What the box is for besides a new chat: null, or
// {kind: 'reply' | 'edit', room: name, id, draft (the edit's saved text)}.
let mode = null;

const HINT = 'Enter sends, Shift+Enter adds a line';

// Sends the message box's text to `room` (the shown room, or none).
export function sendMessage(room) {
  const box = $('composer-input');
  const text = box.value;
  if (!room) { showError('Join a room first.', 'no_room'); return; }
  if (mode && mode.room !== room.name) cancelMode();
  if (isBlank(text)) return;
  if (!wellFormed(text)) {
    showError('This message contains a broken character (half of an emoji or other symbol) '
      + 'and cannot be sent. Remove it and try again; your text is kept.', 'ill_formed');
    return;
  }
  const chars = [...text].length;
  if (chars > session.maxTextChars) {
    showError(`Messages are at most ${session.maxTextChars} characters; this one has ${chars}.`, 'too_long');
    return;
  }
  if (!isOpen()) {
    showError('Not connected right now. Your message is kept; send it again once connected.', 'offline');
    return;
  }
  if (room.status !== 'joined') {
    showError(`Still joining ${room.name}. Your message is kept; send it again in a moment.`, 'joining');
    return;
  }
  if (mode && mode.kind === 'edit') {
    const msg = room.byId.get(mode.id);
    if (!msg || msg.deleted) {
      showError('That message is gone; your text is kept.', 'not_found');
      endMode(false);
      return;
    }
    if (msg.text !== text && !send(editFrame(room.name, mode.id, text, nextRef('e')))) return;
    endMode(true);
    return;
  }
  const replyTo = mode && mode.kind === 'reply' ? mode.id : null;
  if (!sendChat(room, text, replyTo)) return;
  clearDivider(room);
  if (mode) endMode(false);
  renderEmptyNote(room);
  box.value = '';
  autosize();
  scrollToBottom();
}

// The box now answers message `msg` of `room`.
export function startReply(room, msg) {
  if (mode && mode.kind === 'edit') endMode(true);
  mode = { kind: 'reply', room: room.name, id: msg.id };
  renderMode();
  $('composer-input').focus();
}

// The box now holds the text of the reader's message `msg`, to change it;
// what was typed before comes back when the edit ends.
export function startEdit(room, msg) {
  const box = $('composer-input');
  const draft = mode && mode.kind === 'edit' ? mode.draft : box.value;
  mode = { kind: 'edit', room: room.name, id: msg.id, draft };
  box.value = msg.text;
  autosize();
  renderMode();
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
}

// Escape or the cancel button: back to a new message (an edit's draft back).
export function cancelMode() {
  if (!mode) return false;
  endMode(mode.kind === 'edit');
  return true;
}

// The reply or edit of message `id` in `room` ends (the message was deleted).
export function forgetTarget(room, id) {
  if (mode && mode.room === room.name && mode.id === id) cancelMode();
}

// Another room is shown: a reply or edit of this one ends.
export function roomChanged() {
  if (mode && mode.room !== (currentRoom() || {}).name) cancelMode();
  else renderMode();
}

function endMode(restoreDraft) {
  const box = $('composer-input');
  if (restoreDraft && mode && mode.kind === 'edit') {
    box.value = mode.draft;
    autosize();
  }
  mode = null;
  renderMode();
}

// The line above the box: what it is replying to or editing, or nothing.
export function renderMode() {
  const line = $('composer-mode');
  line.replaceChildren();
  const room = mode && rooms.get(mode.room);
  if (!mode || !room) {
    line.hidden = true;
    delete line.dataset.kind;
    $('composer-hint').textContent = HINT;
    $('send').textContent = 'Send';
    return;
  }
  $('send').textContent = mode.kind === 'edit' ? 'Save' : 'Send';
  line.hidden = false;
  line.dataset.kind = mode.kind;
  const msg = room.byId.get(mode.id);
  const what = el('span', 'mode-text');
  if (mode.kind === 'edit') {
    what.textContent = 'Editing your message';
  } else {
    what.appendChild(document.createTextNode('Replying to '));
    what.appendChild(el('strong', null, msg ? msg.user : 'a message'));
    if (msg && !msg.deleted) what.appendChild(el('span', 'mode-quote', `: ${excerpt(msg.text)}`));
  }
  line.appendChild(what);
  const cancel = el('button', 'link-btn', 'Cancel');
  cancel.type = 'button';
  cancel.id = 'composer-mode-cancel';
  cancel.title = 'Cancel (Escape)';
  cancel.addEventListener('click', () => { cancelMode(); $('composer-input').focus(); });
  line.appendChild(cancel);
  $('composer-hint').textContent = mode.kind === 'edit'
    ? 'Enter saves, Escape cancels' : 'Enter sends, Escape cancels the reply';
}
