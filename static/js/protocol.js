// The wire contract (docs/PROTOCOL.md) as the page needs it: the rules for
// names, room names and message text (checked here before anything is
// sent), the frames the page sends, reading the frames the server sends,
// and what the server's error codes mean to the reader.

export const NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
export const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
// The server's MAX_MESSAGE_LEN when /health does not say it (its default).
export const DEFAULT_MAX_TEXT_CHARS = 4096;
// Text made only of these (Unicode White_Space, as the server's Rust
// char::is_whitespace) is refused as blank. Not JS \s or trim(): those
// also take U+FEFF, which the server accepts, and miss U+0085.
const BLANK_RE = /^[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;
// A UTF-16 surrogate without its other half cannot be sent as UTF-8.
const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/;

export const isBlank = (text) => BLANK_RE.test(text);

export const wellFormed = (text) => (typeof text.isWellFormed === 'function'
  ? text.isWellFormed() : !LONE_SURROGATE_RE.test(text));

// What is wrong with `name` as a user name, in words; null when nothing.
export function nameProblem(name) {
  if (name.length === 0) return 'Type a name.';
  const bad = [...name].find((c) => !/[A-Za-z0-9_.-]/.test(c));
  if (bad !== undefined) {
    const shown = bad === ' ' ? 'a space' : `"${bad}"`;
    return `Names cannot contain ${shown}. Use 1 to 32 letters (A-Z, a-z), digits, _ - or .`;
  }
  if (name.length > 32) return `Names are at most 32 characters (this one has ${name.length}).`;
  return NAME_RE.test(name) ? null : 'Use 1 to 32 letters (A-Z, a-z), digits, _ - or .';
}

// What is wrong with `room` as a room name, in words; null when nothing.
export function roomProblem(room) {
  if (room.length === 0) return 'Type a room name.';
  const bad = [...room].find((c) => !/[A-Za-z0-9_-]/.test(c));
  if (bad !== undefined) {
    const shown = bad === ' ' ? 'a space' : `"${bad}"`;
    return `Room names cannot contain ${shown}. Use 1 to 64 letters (A-Z, a-z), digits, _ or -`;
  }
  if (room.length > 64) return `Room names are at most 64 characters (this one has ${room.length}).`;
  return ROOM_RE.test(room) ? null : 'Use 1 to 64 letters (A-Z, a-z), digits, _ or -';
}

// ---- frames the page sends -------------------------------------------------

let seq = 0;

// A `ref` unique to this page: the server's answer (an echo, a history, an
// error) carries it back, tying it to the frame that asked.
export const nextRef = (prefix) => `${prefix}${++seq}-${Date.now().toString(36)}`;

// A join; `since` (the last id seen, or null) asks only for what came after.
export function joinFrame(room, ref, since) {
  const frame = { type: 'join', room, ref };
  if (since !== null) frame.since = since;
  return frame;
}

export const leaveFrame = (room, ref) => ({ type: 'leave', room, ref });

// A chat; `key` makes it idempotent (a resend with the same key is not
// stored twice), `replyTo` (an id, or null) quotes an earlier chat.
export function chatFrame(room, text, ref, key, replyTo) {
  const frame = { type: 'chat', room, text, ref };
  if (key) frame.key = key;
  if (replyTo !== null && replyTo !== undefined) frame.reply_to = replyTo;
  return frame;
}

export const editFrame = (room, target, text, ref) => ({ type: 'edit', room, target, text, ref });

export const deleteFrame = (room, target, ref) => ({ type: 'delete', room, target, ref });

export const reactFrame = (room, target, emoji, on, ref) => ({
  type: 'react', room, target, emoji, on, ref,
});

// A moderator's `kick`, `mute`, `ban` or `unban` of `user` in `room`;
// `seconds` (or null) for a mute or a timed ban, `reason` (or '') for all
// but an unban.
export function moderationFrame(action, room, user, seconds, reason, ref) {
  const frame = { type: action, room, user, ref };
  if (seconds !== null && (action === 'mute' || action === 'ban')) frame.seconds = seconds;
  if (reason && action !== 'unban') frame.reason = reason;
  return frame;
}

export const typingFrame = (room) => ({ type: 'typing', room });

export const readFrame = (room, id, ref) => ({ type: 'read', room, id, ref });

// A key for an idempotent chat: random (not only a counter, since keys
// outlive the page: a reload resends with the same key, and other tabs of
// the same user make keys too) and at most 64 characters. getRandomValues,
// not randomUUID, which only exists on https and localhost.
const KEY_PREFIX = (() => {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
})();
let keySeq = 0;
export const nextKey = () => `${KEY_PREFIX}-${Date.now().toString(36)}-${++keySeq}`;

// ---- frames the server sends ---------------------------------------------

// A text frame from the server as an object with a string `type`; null for
// anything else (such a frame is ignored).
export function parseFrame(data) {
  let frame;
  try { frame = JSON.parse(data); } catch (_) { return null; }
  return frame && typeof frame.type === 'string' ? frame : null;
}

// The server's error codes in the reader's words; a code not here is shown
// with the server's own message.
export const FRIENDLY = {
  rate_limited: 'You are sending messages too fast. Wait a moment and try again.',
  invalid_text: 'That message cannot be sent (empty, only spaces, or too long).',
  too_many_rooms: 'You are in as many rooms as allowed. Leave one first.',
  invalid_room: 'That room name is not allowed.',
  not_joined: 'You are not in that room.',
  store_failed: 'The server could not save that message. Try again.',
  overloaded: 'The server is busy right now. Wait a moment and try again.',
  not_found: 'That message is gone (deleted, or not in this room).',
  forbidden: 'You can only change your own messages.',
  muted: 'You are muted in this room for now.',
  banned: 'You are banned from this room.',
  invalid_token: 'The server did not take the new sign-in token.',
};
