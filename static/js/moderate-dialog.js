// The moderator's dialog: kick, mute (for a chosen time), ban (for a time,
// or until unbanned) or unban a user of a room, with an optional reason
// shown to the room. Opened from a member ("moderate" in the member list),
// from a message's author (its Moderate control) or from the room header
// (any user name, to unban someone no longer there). A ban asks once more
// before it goes. It is a modal <dialog>: focus stays in it, Escape closes
// it, and focus goes back to what opened it. The server decides (and
// answers a refusal, said by moderation.js); the notice comes with the
// room's `moderation` frame.

import { $ } from './dom.js';
import { NAME_RE, nextRef, moderationFrame } from './protocol.js';
import { isOpen, send } from './connection.js';
import { track } from './moderation.js';

const MAX_REASON_CHARS = 256;

// What each action offers for "For" (seconds; null: until unbanned).
const DURATIONS = {
  mute: [[60, '1 minute'], [600, '10 minutes'], [3600, '1 hour'], [86400, '1 day'], [604800, '1 week']],
  ban: [[null, 'until unbanned'], [3600, '1 hour'], [86400, '1 day'], [604800, '1 week'], [2592000, '30 days']],
};
const DEFAULT_DURATION = { mute: 600, ban: null };

const VERBS = {
  kick: 'Kick', mute: 'Mute', ban: 'Ban', unban: 'Unban',
};

// The dialog's room (its name), what to focus when it closes, and whether
// the ban shown has been confirmed once.
const state = { room: null, opener: null, confirming: false };

const action = () => $('mod-form').querySelector('input[name="mod-action"]:checked').value;

function showDurations() {
  const kind = action();
  const select = $('mod-duration');
  const options = DURATIONS[kind];
  $('mod-duration-row').hidden = !options;
  $('mod-reason-row').hidden = kind === 'unban';
  if (!options || select.dataset.kind === kind) return;
  select.dataset.kind = kind;
  select.replaceChildren();
  for (const [seconds, label] of options) {
    const option = document.createElement('option');
    option.value = seconds === null ? '' : String(seconds);
    option.textContent = label;
    option.selected = seconds === DEFAULT_DURATION[kind];
    select.appendChild(option);
  }
}

// The submit button's words, and the confirmation of a ban undone:
// anything changed is asked about again.
function refresh() {
  showDurations();
  state.confirming = false;
  $('mod-confirm').hidden = true;
  $('mod-error').hidden = true;
  const user = $('mod-user').value.trim();
  $('mod-submit').textContent = user ? `${VERBS[action()]} ${user}` : VERBS[action()];
}

// Opens the dialog for `user` (may be empty) in `room`; `opener` gets the
// focus back when it closes.
export function openModerate(room, user, opener) {
  const dialog = $('moderate');
  if (dialog.open) dialog.close();
  state.room = room.name;
  state.opener = opener || null;
  $('mod-room').textContent = `in ${room.dm ? `@ ${room.dm}` : `# ${room.name}`}`;
  $('mod-user').value = user || '';
  $('mod-reason').value = '';
  $('mod-form').querySelector('input[value="kick"]').checked = true;
  $('mod-duration').dataset.kind = '';
  refresh();
  dialog.showModal();
  (user ? $('mod-form').querySelector('input[name="mod-action"]:checked') : $('mod-user')).focus();
}

function fail(text, field) {
  const error = $('mod-error');
  error.textContent = text;
  error.hidden = false;
  if (field) field.focus();
}

function submit(event) {
  event.preventDefault();
  const kind = action();
  const user = $('mod-user').value.trim();
  const reason = kind === 'unban' ? '' : $('mod-reason').value.trim();
  if (!NAME_RE.test(user)) {
    fail('Type the user\'s name (1 to 32 letters, digits, _ - or .).', $('mod-user'));
    return;
  }
  if ([...reason].length > MAX_REASON_CHARS) {
    fail(`A reason is at most ${MAX_REASON_CHARS} characters.`, $('mod-reason'));
    return;
  }
  const chosen = $('mod-duration').value;
  const seconds = DURATIONS[kind] && chosen !== '' ? Number(chosen) : null;
  if (kind === 'ban' && !state.confirming) {
    // A ban puts the user out and keeps them out: asked once more.
    const label = $('mod-duration').selectedOptions[0]?.textContent || 'until unbanned';
    const confirm = $('mod-confirm');
    confirm.textContent = `Ban ${user} ${seconds === null ? label : `for ${label}`}? `
      + 'They leave the room now and cannot join it again until the ban ends.';
    confirm.hidden = false;
    state.confirming = true;
    $('mod-submit').textContent = `Yes, ban ${user}`;
    $('mod-submit').focus();
    return;
  }
  if (!isOpen()) {
    fail('Not connected right now. Try again once connected.', null);
    return;
  }
  const ref = nextRef('mod');
  if (!send(moderationFrame(kind, state.room, user, seconds, reason, ref))) return;
  track(ref, `${kind} ${user}`);
  $('moderate').close();
}

// The dialog's own controls (main.js calls this once).
export function wireModerateDialog() {
  $('mod-form').addEventListener('submit', submit);
  $('mod-form').addEventListener('change', refresh);
  $('mod-user').addEventListener('input', refresh);
  $('mod-cancel').addEventListener('click', () => $('moderate').close());
  $('moderate').addEventListener('close', () => {
    const back = state.opener;
    state.opener = null;
    if (back && back.isConnected) back.focus();
  });
}
