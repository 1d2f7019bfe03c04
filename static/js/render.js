// The chat's DOM: the shown room's messages (grouped by author, own ones
// marked, pending ones until their echo; each drawn by message-view.js and
// drawn again when it changes) with the moderation notices between them in
// id order, the "new messages" line, who is typing,
// its members, the joined and active room lists with their counts, the
// "load older" controls, the scroll position, and the message box's state.
// It reads rooms.js and session.js and changes nothing in them but a
// pending message's node.

import { $, el } from './dom.js';
import { session } from './session.js';
import {
  rooms, knownDms, currentRoom, isCurrent, activeRooms,
} from './rooms.js';
import { messageNode, sameGroup, avatarColor } from './message-view.js';
import { moderates, noticeNode } from './moderation.js';
import { openModerate } from './moderate-dialog.js';

const STICK_PX = 48; // closer than this to the bottom counts as "at the bottom"

// What a click on a room in the sidebar does (membership.js, wired by main.js).
const actions = { select: () => {}, join: () => {}, dm: () => {} };

export function onRoomClicks({ select, join, dm }) {
  actions.select = select;
  actions.join = join;
  actions.dm = dm;
}

// How a room is named on the page: a direct-message room by the other user.
export const roomLabel = (room) => (room.dm ? `@ ${room.dm}` : `# ${room.name}`);

// ---- scrolling -------------------------------------------------------------

export function atBottom() {
  const s = $('scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_PX;
}

export function scrollToBottom() {
  const s = $('scroller');
  s.scrollTop = s.scrollHeight;
  $('new-marker').hidden = true;
}

// The "New messages" button, for a reader scrolled up.
export function showNewMarker() {
  $('new-marker').hidden = false;
}

// Notes the distance from the bottom of the message pane; the function
// returned scrolls back to it (messages put in above stay out of sight).
export function holdScroll() {
  const scroller = $('scroller');
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  return () => { scroller.scrollTop = scroller.scrollHeight - fromBottom; };
}

// ---- messages ----------------------------------------------------------------

function groupWith(node, prev, msg) {
  node.classList.toggle('cont', sameGroup(prev, msg));
}

// The node of a message of the reader's on its way (its `ref` awaits the echo).
function pendingNode(room, p) {
  const node = messageNode(room, { user: session.user, text: p.text, replyTo: p.replyTo }, null, true);
  node.dataset.ref = p.ref;
  if (p.hidden) node.hidden = true;
  return node;
}

// Shows pending message `p` at the end of the shown room.
export function showPending(room, p) {
  p.node = pendingNode(room, p);
  $('messages').appendChild(p.node);
}

// The notices shown right before `node` (or at the end of the confirmed
// messages, `node` null) with an id above `id` are after `id`'s place:
// the node to insert something of id `id` before.
function pastNotices(node, id) {
  const list = $('messages');
  let before = node;
  for (;;) {
    // (`node` null: there is no pending message, the end is the last node.)
    const prev = before ? before.previousElementSibling : list.lastElementChild;
    if (!prev || !prev.classList.contains('notice') || Number(prev.dataset.noticeId) < id) return before;
    before = prev;
  }
}

// Shows room.messages[i], just added to the shown room, in its place.
export function showInserted(room, i) {
  const msg = room.messages[i];
  const list = $('messages');
  const next = room.messages[i + 1];
  const after = next ? list.querySelector(`li[data-id="${next.id}"]`) : list.querySelector('li.pending');
  const before = pastNotices(after, msg.id);
  const node = messageNode(room, msg, room.messages[i - 1]);
  list.insertBefore(node, before);
  if (next && after) groupWith(after, msg, next);
  $('empty-room').hidden = true;
  refreshReplies(room, msg.id);
  placeDivider(room);
}

// Shows moderation notice `notice` of `room`, just added, in its place.
export function showNotice(room, notice) {
  if (!isCurrent(room)) return;
  const list = $('messages');
  const next = room.messages.find((m) => m.id > notice.id);
  const after = next ? list.querySelector(`li[data-id="${next.id}"]`) : list.querySelector('li.pending');
  list.insertBefore(noticeNode(notice), pastNotices(after, notice.id));
}

// Shows message `msg` of the shown room again after a change (edited,
// deleted, reacted to), and the quotes of the replies to it.
export function refreshMessage(room, msg) {
  if (!isCurrent(room)) return;
  const old = $('messages').querySelector(`li[data-id="${msg.id}"]`);
  if (old) {
    const i = room.messages.indexOf(msg);
    const node = messageNode(room, msg, room.messages[i - 1]);
    if (old.classList.contains('show-actions')) node.classList.add('show-actions');
    old.replaceWith(node);
  }
  refreshReplies(room, msg.id);
}

// The replies to message `id` shown, drawn again (their quote changed).
function refreshReplies(room, id) {
  for (const node of $('messages').querySelectorAll(`.quote[data-reply-to="${id}"]`)) {
    const li = node.closest('li.msg');
    if (!li || !li.dataset.id) continue;
    const msg = room.byId.get(Number(li.dataset.id));
    if (msg && msg !== room.byId.get(id)) refreshMessage(room, msg);
  }
}

// The "new messages" line above the first message of someone else newer
// than the read marker the room had when the page joined it.
export function placeDivider(room) {
  if (!isCurrent(room)) return;
  const list = $('messages');
  const old = list.querySelector('li.new-divider');
  const first = room.dividerAfter === null ? null
    : room.messages.find((m) => m.id > room.dividerAfter && m.user !== session.user);
  const node = first ? list.querySelector(`li[data-id="${first.id}"]`) : null;
  if (!node) { if (old) old.remove(); return; }
  if (old && old.nextElementSibling === node) return;
  const line = old || el('li', 'new-divider');
  if (!old) {
    line.setAttribute('role', 'separator');
    line.appendChild(el('span', null, 'New messages'));
  }
  list.insertBefore(line, node);
}

// "alice is typing…" under the messages of the shown room.
export function renderTyping() {
  const room = currentRoom();
  const now = Date.now();
  const names = room ? [...room.typing].filter(([, until]) => until > now).map(([u]) => u).sort() : [];
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`;
  const line = $('typing');
  if (line.textContent !== text) line.textContent = text;
  line.dataset.users = names.join(',');
}

// "No messages yet" while a joined room shows none.
export function renderEmptyNote(room) {
  $('empty-room').hidden = room.messages.length + room.pending.length > 0 || room.status !== 'joined';
}

export function renderOlderControls(room) {
  const button = $('load-older');
  const status = $('older-status');
  button.hidden = !room.moreOlder || room.loadingOlder;
  status.hidden = !room.loadingOlder && (room.moreOlder || room.messages.length === 0);
  status.textContent = room.loadingOlder ? 'Loading older messages…' : 'This is the start of the room.';
}

// ---- the shown room ------------------------------------------------------------

export function renderRoom() {
  const room = currentRoom();
  const list = $('messages');
  list.replaceChildren();
  $('new-marker').hidden = true;
  $('leave-room').hidden = !room;
  $('leave-room').disabled = !!room && room.leaving;
  $('moderate-room').hidden = !room || !moderates(room.name);
  $('current-room').textContent = room ? roomLabel(room) : 'No room';
  if (!room) {
    renderTyping();
    $('empty-room').hidden = true;
    $('load-older').hidden = true;
    $('older-status').hidden = true;
    $('room-users').textContent = '';
    renderMembers();
    refreshComposer();
    return;
  }
  let prev = null;
  let n = 0; // the next notice to show, in id order among the messages
  for (const m of room.messages) {
    for (; n < room.notices.length && room.notices[n].id < m.id; n += 1) {
      list.appendChild(noticeNode(room.notices[n]));
    }
    list.appendChild(messageNode(room, m, prev));
    prev = m;
  }
  for (; n < room.notices.length; n += 1) list.appendChild(noticeNode(room.notices[n]));
  for (const p of room.pending) {
    p.node = pendingNode(room, p);
    list.appendChild(p.node);
  }
  placeDivider(room);
  renderTyping();
  renderEmptyNote(room);
  renderOlderControls(room);
  renderMembers();
  refreshComposer();
  scrollToBottom();
}

// A second click on "Leave room" before the server answers does nothing.
export function showLeaving() {
  $('leave-room').disabled = true;
}

export function renderMembers() {
  const room = currentRoom();
  const list = $('members');
  list.replaceChildren();
  const members = room ? room.members : [];
  for (const user of members) {
    const li = el('li', 'member');
    li.dataset.user = user;
    const dot = el('span', 'avatar small');
    dot.textContent = [...user][0].toUpperCase();
    dot.style.background = avatarColor(user);
    dot.setAttribute('aria-hidden', 'true');
    li.appendChild(dot);
    li.appendChild(el('span', 'member-name', user));
    if (user === session.user) li.appendChild(el('span', 'muted small', '(you)'));
    else if (session.authMode === 'token' && !room.dm) {
      // Direct messages need verified names: offered only with tokens.
      const message = el('button', 'link-btn small dm-btn', 'message');
      message.type = 'button';
      message.setAttribute('aria-label', `Message ${user} directly`);
      message.addEventListener('click', () => actions.dm(user));
      li.appendChild(message);
    }
    if (user !== session.user && moderates(room.name)) {
      const moderate = el('button', 'link-btn small mod-btn', 'moderate');
      moderate.type = 'button';
      moderate.setAttribute('aria-label', `Moderate ${user} (kick, mute, ban)`);
      moderate.addEventListener('click', (event) => openModerate(room, user, event.currentTarget));
      li.appendChild(moderate);
    }
    list.appendChild(li);
  }
  $('member-count').textContent = room ? `(${members.length})` : '';
  $('room-users').textContent = room
    ? `${members.length} ${members.length === 1 ? 'member' : 'members'}` : '';
}

// ---- the room lists --------------------------------------------------------------

// The unread badge of a room's button, when there is anything unread.
function appendBadge(button, unread) {
  if (unread <= 0) return;
  const badge = el('span', 'badge', unread > 99 ? '99+' : unread);
  badge.dataset.unread = String(unread);
  badge.setAttribute('aria-label', `${unread} unread`);
  button.appendChild(badge);
}

export function renderJoined() {
  const list = $('joined-rooms');
  const dmList = $('dm-rooms');
  list.replaceChildren();
  dmList.replaceChildren();
  let total = 0;
  for (const room of rooms.values()) {
    const li = el('li');
    li.dataset.room = room.name;
    const button = el('button', 'room-btn');
    button.type = 'button';
    if (isCurrent(room)) {
      button.classList.add('current');
      button.setAttribute('aria-current', 'true');
    }
    button.appendChild(el('span', 'room-name', roomLabel(room)));
    if (room.status === 'joining') button.appendChild(el('span', 'muted small', 'joining…'));
    appendBadge(button, room.unread);
    button.addEventListener('click', () => actions.select(room.name));
    li.appendChild(button);
    (room.dm ? dmList : list).appendChild(li);
    total += room.unread;
  }
  // The DMs not joined here (see inbox.js): a click joins with `dm`.
  for (const [name, dm] of knownDms) {
    if (rooms.has(name)) continue;
    const li = el('li');
    li.dataset.room = name;
    li.dataset.known = 'true';
    const button = el('button', 'room-btn');
    button.type = 'button';
    button.appendChild(el('span', 'room-name', `@ ${dm.with}`));
    appendBadge(button, dm.unread);
    button.addEventListener('click', () => actions.dm(dm.with));
    li.appendChild(button);
    dmList.appendChild(li);
    total += dm.unread;
  }
  $('joined-empty').hidden = list.children.length > 0;
  $('dm-empty').hidden = dmList.children.length > 0;
  document.title = total > 0 ? `(${total}) chatterbox` : 'chatterbox';
  renderRoomList();
}

export function renderRoomList() {
  const list = $('room-list');
  list.replaceChildren();
  for (const entry of activeRooms()) {
    if (!entry || typeof entry.name !== 'string') continue;
    const li = el('li');
    li.dataset.room = entry.name;
    li.dataset.users = String(entry.users);
    const button = el('button', 'room-btn');
    button.type = 'button';
    button.appendChild(el('span', 'room-name', `# ${entry.name}`));
    const count = el('span', 'count', entry.users);
    count.setAttribute('aria-label', `${entry.users} ${entry.users === 1 ? 'user' : 'users'}`);
    button.appendChild(count);
    if (rooms.has(entry.name)) button.classList.add('joined');
    button.addEventListener('click', () => actions.join(entry.name, true));
    li.appendChild(button);
    list.appendChild(li);
  }
  $('room-list-empty').hidden = list.children.length > 0;
}

// ---- the message box ---------------------------------------------------------------

export function refreshComposer() {
  const room = currentRoom();
  const box = $('composer-input');
  box.disabled = !room;
  $('send').disabled = !room;
  box.placeholder = fitOneLine(box, room ? `Message ${roomLabel(room)}` : 'Join a room to chat');
}

// `text`, cut with an ellipsis so that it fits on one line of `box`
// (a long room name would otherwise wrap the placeholder over lines).
let measureCanvas = null;
function fitOneLine(box, text) {
  const style = getComputedStyle(box);
  const width = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 2;
  if (!(width > 0)) return text;
  measureCanvas = measureCanvas || document.createElement('canvas');
  const ctx = measureCanvas.getContext('2d');
  if (!ctx) return text;
  ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  if (ctx.measureText(text).width <= width) return text;
  const chars = [...text];
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) { // the longest prefix that fits with the ellipsis
    const mid = Math.ceil((lo + hi) / 2);
    if (ctx.measureText(`${chars.slice(0, mid).join('')}…`).width <= width) lo = mid;
    else hi = mid - 1;
  }
  return `${chars.slice(0, lo).join('')}…`;
}

// The message box grows with its text, up to 200 px.
export function autosize() {
  const box = $('composer-input');
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}
