// Sending what the reader typed, and the messages on their way. The text
// is checked by the protocol's rules first (a refusal keeps it in the box);
// a sent message shows as pending until its echo comes back with its ref.
// One that cannot have gone out returns to the box with an error saying why.

import { $ } from './dom.js';
import { session } from './session.js';
import { isBlank, wellFormed, nextRef, chatFrame } from './protocol.js';
import { isOpen, send, connectCount } from './connection.js';
import { autosize, scrollToBottom, showPending, renderEmptyNote } from './render.js';
import { showError } from './notices.js';

// Sends the message box's text to `room` (the shown room, or none).
export function sendMessage(room) {
  const box = $('composer-input');
  const text = box.value;
  if (!room) { showError('Join a room first.', 'no_room'); return; }
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
  const ref = nextRef('m');
  if (!send(chatFrame(room.name, text, ref))) return;
  const p = { ref, text, afterId: room.lastId, sentOn: connectCount(), node: null };
  room.pending.push(p);
  showPending(p);
  renderEmptyNote(room);
  box.value = '';
  autosize();
  scrollToBottom();
}

// The pending message of `room` whose echo or error carries `ref`, if any.
export const pendingWithRef = (room, ref) => room.pending.find((x) => x.ref === ref);

export function removePending(room, p) {
  room.pending = room.pending.filter((x) => x !== p);
  if (p.node) p.node.remove();
  p.node = null;
}

// A message that did not go out: its text returns to the message box.
export function failPending(p, why) {
  const box = $('composer-input');
  // Failures arrive in the order sent; appending keeps that order.
  box.value = box.value.trim() === '' ? p.text : `${box.value}\n${p.text}`;
  autosize();
  showError(`Not sent: ${why} Your text is back in the message box.`, 'not_sent');
}

// Messages sent just before the connection dropped have no echo. Once the
// rejoin has brought everything stored, the ones found there (same author,
// same text, newer than when sent) were delivered; the rest were not, and
// their text goes back into the message box.
export function settlePending(room) {
  if (room.catchingUp || room.status !== 'joined') return;
  const unsettled = room.pending.filter((p) => p.sentOn !== connectCount());
  if (unsettled.length === 0) return;
  const claimed = new Set();
  for (const p of unsettled) {
    const found = room.messages.find((m) => m.id > p.afterId && m.user === session.user
      && m.text === p.text && !claimed.has(m.id));
    removePending(room, p);
    if (found) claimed.add(found.id);
    else failPending(p, 'The connection dropped before this message was sent.');
  }
}
