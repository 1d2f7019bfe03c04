// One message as the reader sees it: author and time, the quote of the
// message it replies to, its text (or "message deleted" in its place),
// "(edited …)", its reactions (emoji, count, who in the title, the
// reader's own highlighted) and its controls (reply, react, and edit and
// delete on the reader's own; delete and moderate on others' for a
// moderator of the room). Builds nodes from rooms.js data; what a control
// does is message-actions.js's (by its data-action).

import { el } from './dom.js';
import { session } from './session.js';
import { moderates } from './moderation.js';

const GROUP_MS = 5 * 60 * 1000; // same author within this: one group
const QUOTE_CHARS = 80; // the start of a replied message shown in its quote

// The emoji offered for a reaction (any short string is allowed; these
// are the page's choice).
export const PRESET_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢'];

export function sameGroup(prev, msg) {
  if (!prev || prev.user !== msg.user) return false;
  return Math.abs(Date.parse(msg.timestamp) - Date.parse(prev.timestamp)) < GROUP_MS;
}

// Distinct, readable-under-white-text colours; a name always gets the same one.
const AVATAR_COLORS = ['#1971c2', '#9c36b5', '#0c8599', '#e8590c', '#c2255c', '#5f3dc4', '#2f9e44', '#862e9c'];

export function avatarColor(name) {
  let h = 7;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return AVATAR_COLORS[h % AVATAR_COLORS.length];
}

export function formatTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

function timeNode(className, text, ts) {
  const time = el('time', className, text);
  time.dateTime = ts;
  const d = new Date(ts);
  if (!Number.isNaN(d.getTime())) time.title = d.toLocaleString();
  return time;
}

function actionButton(action, label, title) {
  const b = el('button', 'msg-action', label);
  b.type = 'button';
  b.dataset.action = action;
  b.title = title;
  b.setAttribute('aria-label', title);
  return b;
}

// The start of a text, cut at QUOTE_CHARS characters, on one line.
export function excerpt(text) {
  const chars = [...text.replace(/\s+/g, ' ')];
  return chars.length > QUOTE_CHARS ? `${chars.slice(0, QUOTE_CHARS).join('')}…` : chars.join('');
}

// The quote of message `replyTo` (an id) above a reply: its author and the
// start of its text, "deleted", or "an earlier message" when not loaded.
function quoteNode(room, replyTo) {
  const quote = el('div', 'quote');
  quote.dataset.replyTo = String(replyTo);
  const original = room && room.byId.get(replyTo);
  if (!original) {
    quote.classList.add('unknown');
    quote.appendChild(el('span', 'quote-text', 'an earlier message'));
    return quote;
  }
  quote.appendChild(el('span', 'quote-user', original.user));
  if (original.deleted) {
    quote.classList.add('deleted');
    quote.appendChild(el('span', 'quote-text', 'deleted'));
  } else {
    quote.appendChild(el('span', 'quote-text', excerpt(original.text)));
  }
  quote.title = 'Show the message replied to';
  return quote;
}

function reactionsNode(msg) {
  const box = el('div', 'reactions');
  for (const [emoji, users] of msg.reactions) {
    const mine = users.includes(session.user);
    const b = el('button', 'reaction', `${emoji} ${users.length}`);
    b.type = 'button';
    b.dataset.action = 'toggle-reaction';
    b.dataset.emoji = emoji;
    b.dataset.count = String(users.length);
    if (mine) b.classList.add('mine');
    b.setAttribute('aria-pressed', mine ? 'true' : 'false');
    b.title = users.join(', ');
    b.setAttribute('aria-label', `${emoji} ${users.length}: ${users.join(', ')}`);
    box.appendChild(b);
  }
  return box;
}

// The controls of a confirmed message that is not deleted.
function actionsNode(room, msg) {
  const bar = el('div', 'msg-actions');
  bar.appendChild(actionButton('reply', 'Reply', 'Reply to this message'));
  bar.appendChild(actionButton('react', 'React', 'Add a reaction'));
  if (msg.user === session.user) {
    bar.appendChild(actionButton('edit', 'Edit', 'Edit this message'));
    bar.appendChild(actionButton('delete', 'Delete', 'Delete this message'));
  } else if (room && moderates(room.name)) {
    bar.appendChild(actionButton('delete', 'Delete', `Delete ${msg.user}'s message (as a moderator)`));
    bar.appendChild(actionButton('moderate', 'Moderate', `Moderate ${msg.user} (kick, mute, ban)`));
  }
  return bar;
}

function pickerNode(msg) {
  const picker = el('div', 'react-picker');
  picker.hidden = true;
  picker.setAttribute('role', 'group');
  picker.setAttribute('aria-label', 'Reactions');
  for (const emoji of PRESET_EMOJI) {
    const b = el('button', 'pick', emoji);
    b.type = 'button';
    b.dataset.action = 'toggle-reaction';
    b.dataset.emoji = emoji;
    const mine = (msg.reactions.get(emoji) || []).includes(session.user);
    b.setAttribute('aria-pressed', mine ? 'true' : 'false');
    if (mine) b.classList.add('mine');
    b.title = mine ? `Remove ${emoji}` : `React with ${emoji}`;
    picker.appendChild(b);
  }
  return picker;
}

// The node of message `msg` of `room`; `prev` is the message shown before
// it (same author shortly before: no second header). `pending`: one of the
// reader's on its way, no id yet.
export function messageNode(room, msg, prev, pending) {
  const own = msg.user === session.user;
  const li = el('li', 'msg');
  if (own) li.classList.add('own');
  if (msg.id !== undefined) li.dataset.id = String(msg.id);
  li.dataset.user = msg.user;
  if (!pending && sameGroup(prev, msg)) li.classList.add('cont');
  const avatar = el('span', 'avatar', [...msg.user][0].toUpperCase());
  avatar.style.background = avatarColor(msg.user);
  avatar.setAttribute('aria-hidden', 'true');
  const bubble = el('div', 'bubble');
  const meta = el('div', 'meta');
  meta.appendChild(el('span', 'msg-user', msg.user));
  if (pending) {
    li.classList.add('pending');
    li.dataset.pending = 'true';
    meta.appendChild(el('span', 'msg-time', 'sending…'));
  } else {
    meta.appendChild(timeNode('msg-time', formatTime(msg.timestamp), msg.timestamp));
  }
  bubble.appendChild(meta);
  if (msg.replyTo !== null && msg.replyTo !== undefined && !msg.deleted) {
    bubble.appendChild(quoteNode(room, msg.replyTo));
  }
  const body = el('div', 'msg-body');
  if (msg.deleted) {
    li.classList.add('deleted');
    li.dataset.deleted = 'true';
    body.appendChild(el('span', 'msg-text', 'message deleted'));
  } else {
    body.appendChild(el('span', 'msg-text', msg.text));
    if (msg.editedAt) {
      body.appendChild(document.createTextNode(' '));
      const edited = timeNode('edited', `(edited ${formatTime(msg.editedAt)})`, msg.editedAt);
      edited.title = `Edited ${edited.title}`;
      body.appendChild(edited);
    }
  }
  bubble.appendChild(body);
  if (!pending && !msg.deleted && msg.reactions.size > 0) bubble.appendChild(reactionsNode(msg));
  li.appendChild(avatar);
  li.appendChild(bubble);
  if (!pending && !msg.deleted) {
    li.appendChild(actionsNode(room, msg));
    li.appendChild(pickerNode(msg));
  }
  // Reached with the arrow keys from the list (message-actions.js): a
  // focused message shows its controls, and Tab goes into them.
  if (!pending) li.tabIndex = -1;
  return li;
}
