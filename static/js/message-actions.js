// What the controls on a message do (message-view.js draws them, each with
// a data-action): reply, react (a picker of preset emoji; a reaction shown
// under a message toggles the reader's own), on the reader's own
// messages edit and delete, and for a moderator of the room delete and
// moderate (moderate-dialog.js) on others' messages. A tap on a message shows its controls (there
// is no hover on a phone); a tap on a quote shows the message it quotes.
// From the keyboard, the message list is one Tab stop: focusing it focuses
// the newest message, the arrow keys move between messages, and Tab goes
// into the focused message's controls.

import { $ } from './dom.js';
import { session } from './session.js';
import { currentRoom } from './rooms.js';
import { nextRef, deleteFrame, reactFrame } from './protocol.js';
import { isOpen, send } from './connection.js';
import { startReply, startEdit, forgetTarget } from './composer.js';
import { showError } from './notices.js';
import { moderates, track } from './moderation.js';
import { openModerate } from './moderate-dialog.js';

function closePickers(except) {
  for (const p of $('messages').querySelectorAll('.react-picker:not([hidden])')) {
    if (p !== except) p.hidden = true;
  }
}

function sendChange(frame) {
  if (!isOpen()) {
    showError('Not connected right now. Try again once connected.', 'offline');
    return false;
  }
  return send(frame);
}

export function onMessageClick(event) {
  const room = currentRoom();
  const li = event.target.closest('li.msg');
  if (!room || !li || !li.dataset.id) return;
  const msg = room.byId.get(Number(li.dataset.id));
  if (!msg) return;
  const control = event.target.closest('[data-action]');
  const quote = event.target.closest('.quote');
  if (!control) {
    if (quote) { showQuoted(Number(quote.dataset.replyTo)); return; }
    // A click that selected text is not a tap.
    const selection = window.getSelection();
    if (selection && !selection.isCollapsed) return;
    for (const other of $('messages').querySelectorAll('li.show-actions')) {
      if (other !== li) other.classList.remove('show-actions');
    }
    li.classList.toggle('show-actions');
    if (!li.classList.contains('show-actions')) closePickers(null);
    return;
  }
  // Done with this message's controls (React opens its picker instead).
  if (control.dataset.action !== 'react') li.classList.remove('show-actions');
  switch (control.dataset.action) {
    case 'reply':
      closePickers(null);
      startReply(room, msg);
      break;
    case 'react': {
      const picker = li.querySelector('.react-picker');
      closePickers(picker);
      if (picker) {
        picker.hidden = !picker.hidden;
        if (!picker.hidden) picker.querySelector('button').focus();
      }
      break;
    }
    case 'toggle-reaction': {
      const emoji = control.dataset.emoji;
      const mine = (msg.reactions.get(emoji) || []).includes(session.user);
      closePickers(null);
      sendChange(reactFrame(room.name, msg.id, emoji, !mine, nextRef('x')));
      break;
    }
    case 'edit':
      closePickers(null);
      if (msg.user === session.user && !msg.deleted) startEdit(room, msg);
      break;
    case 'delete': {
      closePickers(null);
      if (msg.deleted) break;
      const own = msg.user === session.user;
      if (!own && !moderates(room.name)) break;
      const ref = nextRef('d');
      if (!sendChange(deleteFrame(room.name, msg.id, ref))) break;
      if (own) forgetTarget(room, msg.id);
      else track(ref, `delete ${msg.user}'s message`);
      break;
    }
    case 'moderate':
      closePickers(null);
      if (msg.user !== session.user && moderates(room.name)) openModerate(room, msg.user, li);
      break;
    default:
      break;
  }
}

// A click anywhere but in a picker or on a React button closes the pickers.
export function onPageClick(event) {
  if (!(event.target instanceof Element)) return;
  if (event.target.closest('.react-picker, [data-action="react"]')) return;
  closePickers(null);
}

const messageNodes = () => [...$('messages').querySelectorAll('li.msg[tabindex]')];

// Escape in the message list closes an open reaction picker; the arrow
// keys (and Home, End) move between messages.
export function onMessageKey(event) {
  if (event.key === 'Escape') {
    if ($('messages').querySelector('.react-picker:not([hidden])')) {
      closePickers(null);
      event.stopPropagation();
    }
    return;
  }
  const moves = { ArrowUp: -1, ArrowDown: 1, Home: -Infinity, End: Infinity };
  if (!(event.key in moves) || !(event.target instanceof Element)) return;
  if (event.target.closest('.react-picker')) return;
  const nodes = messageNodes();
  if (nodes.length === 0) return;
  const here = nodes.indexOf(event.target.closest('li.msg'));
  const step = moves[event.key];
  let next;
  if (Number.isFinite(step)) next = here < 0 ? nodes.length - 1 : here + step;
  else next = step < 0 ? 0 : nodes.length - 1;
  next = Math.max(0, Math.min(nodes.length - 1, next));
  event.preventDefault();
  nodes[next].focus();
}

// The list itself took the focus (Tab from before it): the newest message
// takes it instead. Coming back from inside the list (Shift+Tab), the list
// keeps it, so the next Shift+Tab leaves.
export function onListFocus(event) {
  const list = $('messages');
  if (event.target !== list || list.contains(event.relatedTarget)) return;
  const nodes = messageNodes();
  if (nodes.length) nodes[nodes.length - 1].focus();
}

// Scrolls to the message a quote is of, and marks it for a moment.
function showQuoted(id) {
  const node = $('messages').querySelector(`li[data-id="${id}"]`);
  if (!node) return;
  node.scrollIntoView({ block: 'center' });
  node.classList.add('flash');
  setTimeout(() => node.classList.remove('flash'), 1500);
}
