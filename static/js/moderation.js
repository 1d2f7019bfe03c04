// Moderation as the page sees it (docs/PROTOCOL.md, "Moderation"): who
// moderates which room (the token's `mod` claim, decoded here, never
// trusted: the server checks every action, the page only hides what it
// would refuse), what a `moderation` frame says to the reader (a notice in
// the room's timeline, live or from a rejoin's `since` replay; to its
// target, why they were put out of a room, in a notice that stays), and
// the answers to a moderator's own actions (moderate-dialog.js sends them).

import { el } from './dom.js';
import { session, tokenClaims } from './session.js';
import { FRIENDLY } from './protocol.js';
import { formatTime } from './message-view.js';
import { showError } from './notices.js';

const MAX_NOTICES = 200; // per room; the oldest go first
const MAX_WAITING = 64; // actions sent and not answered yet (a drop loses answers)

// ---- who moderates ------------------------------------------------------------

let decoded = { token: null, mod: null };

// The signed-in token's `mod` claim (true, or room patterns), or null.
function modClaim() {
  if (session.authMode !== 'token' || !session.token) return null;
  if (decoded.token !== session.token) {
    const claims = tokenClaims(session.token);
    decoded = { token: session.token, mod: claims ? claims.mod : null };
  }
  return decoded.mod;
}

// A room pattern of a claim: a room name, or a prefix followed by `*`.
export function matchesPattern(pattern, room) {
  if (typeof pattern !== 'string') return false;
  return pattern.endsWith('*') ? room.startsWith(pattern.slice(0, -1)) : room === pattern;
}

// Whether the reader's token makes them a moderator of room `name`.
// Without AUTH_SECRET (names not verified) nobody is.
export function moderates(name) {
  const claim = modClaim();
  if (claim === true) return true;
  return Array.isArray(claim) && claim.some((p) => matchesPattern(p, name));
}

// ---- what a moderation frame says -------------------------------------------------

const until = (m) => (typeof m.until === 'string' ? formatTime(m.until) : null);

// A `moderation` frame or history item in the reader's words: "bob was
// muted by mod until 14:05: spam"; null for an action the page does not know.
export function noticeText(m) {
  const me = m.user === session.user;
  const who = me ? 'You' : m.user;
  const was = me ? 'were' : 'was';
  const by = typeof m.by === 'string' ? m.by : 'a moderator';
  const end = until(m);
  let text;
  switch (m.action) {
    case 'kick': text = `${who} ${was} kicked from the room by ${by}`; break;
    case 'mute': text = `${who} ${was} muted by ${by}${end ? ` until ${end}` : ''}`; break;
    case 'ban': text = `${who} ${was} banned from the room by ${by} ${end ? `until ${end}` : 'until unbanned'}`; break;
    case 'unban': text = `${by} lifted ${me ? 'your' : `${m.user}'s`} ban and mute`; break;
    case 'delete':
      text = `${me ? 'Your message' : `A message by ${m.user}`} was deleted by a moderator (${by})`;
      break;
    default: return null;
  }
  return typeof m.reason === 'string' && m.reason !== '' && m.action !== 'unban'
    ? `${text}: ${m.reason}` : text;
}

// Adds the notice of moderation `m` to `room`'s timeline, once per id.
// The notice, or null when it was there already or says nothing.
export function addNotice(room, m) {
  if (typeof m.id !== 'number' || typeof m.user !== 'string') return null;
  if (room.notices.some((n) => n.id === m.id)) return null;
  const text = noticeText(m);
  if (!text) return null;
  const notice = {
    id: m.id, action: m.action, user: m.user, text, timestamp: String(m.timestamp),
  };
  let i = room.notices.length;
  while (i > 0 && room.notices[i - 1].id > notice.id) i -= 1;
  room.notices.splice(i, 0, notice);
  if (room.notices.length > MAX_NOTICES) room.notices.shift();
  return notice;
}

// The node of a notice in the message list: not a message (no controls,
// not reached by the arrow keys), a line between them in id order.
export function noticeNode(notice) {
  const li = el('li', 'notice');
  li.dataset.noticeId = String(notice.id);
  li.dataset.kind = notice.action;
  li.dataset.user = notice.user;
  if (notice.user === session.user) li.classList.add('about-me');
  li.appendChild(el('span', 'notice-text', notice.text));
  const time = el('time', 'notice-time', formatTime(notice.timestamp));
  time.dateTime = notice.timestamp;
  li.appendChild(time);
  return li;
}

// ---- the reader as the target ---------------------------------------------------

// Bans of the reader seen on this page: room name -> end (ms), or null for
// one until unbanned. Says when a refused join (`banned`) ends.
const myBans = new Map();

// Moderation `m` of `room` concerns the reader: a mute is noted (a refused
// chat says until when); live, a kick or a ban is said in a toast that
// stays (the room then leaves the page with the `leave` that follows).
export function aboutMe(room, m, live) {
  if (m.user !== session.user) return;
  const end = typeof m.until === 'string' ? Date.parse(m.until) : NaN;
  switch (m.action) {
    case 'mute':
      room.mutedUntil = Number.isNaN(end) ? 0 : end;
      break;
    case 'unban':
      room.mutedUntil = 0;
      myBans.delete(room.name);
      break;
    case 'kick':
    case 'ban': {
      if (!live) break;
      if (m.action === 'ban') myBans.set(room.name, Number.isNaN(end) ? null : end);
      room.removedBy = m.action;
      const reason = typeof m.reason === 'string' && m.reason !== '' ? `: ${m.reason}` : '';
      const text = m.action === 'kick'
        ? `You were kicked from ${room.name} by ${m.by}${reason}. You may join it again.`
        : `You were banned from ${room.name} by ${m.by} ${until(m) ? `until ${until(m)}` : 'until a moderator lifts the ban'}${reason}.`;
      showError(text, `removed-${m.action}`, true);
      break;
    }
    default:
      break;
  }
}

// Why a chat in `room` was refused with `muted`, with the end when known.
export function mutedText(room) {
  if (room && room.mutedUntil > Date.now()) {
    return `You are muted in ${room.name} until ${formatTime(new Date(room.mutedUntil).toISOString())}.`;
  }
  return FRIENDLY.muted;
}

// Why a join of room `name` was refused with `banned`.
export function bannedText(name) {
  if (!myBans.has(name)) return FRIENDLY.banned;
  const end = myBans.get(name);
  if (end === null) return 'You are banned from it until a moderator lifts the ban.';
  if (end <= Date.now()) return FRIENDLY.banned;
  return `You are banned from it until ${formatTime(new Date(end).toISOString())}.`;
}

// ---- the moderator's own actions ----------------------------------------------------

const waiting = new Map(); // ref -> what was asked, in words ("ban bob")

// An action sent with `ref`; `what` names it in an error ("kick bob").
export function track(ref, what) {
  waiting.set(ref, what);
  while (waiting.size > MAX_WAITING) waiting.delete(waiting.keys().next().value);
}

// The server's `moderation` answer to the reader's own action.
export function settle(ref) {
  waiting.delete(ref);
}

const REFUSED = {
  forbidden: 'you are not a moderator of this room.',
  not_joined: 'you are not in this room.',
};

// An `error` for one of the reader's actions: said, naming the action.
// False when `frame` answers something else.
export function actionRefused(frame) {
  const what = typeof frame.ref === 'string' ? waiting.get(frame.ref) : undefined;
  if (what === undefined) return false;
  waiting.delete(frame.ref);
  const code = typeof frame.code === 'string' ? frame.code : 'error';
  const why = REFUSED[code] || FRIENDLY[code] || (typeof frame.message === 'string' ? frame.message : code);
  showError(`Could not ${what}: ${why}`, code);
  return true;
}
