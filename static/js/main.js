// The chatterbox page's entry point (the only <script> of index.html):
// ties the modules together and to the page's controls, then signs in.
// The page speaks docs/PROTOCOL.md over one WebSocket (connection.js);
// every piece of text from the server or the user goes into the page
// through textContent, never as HTML (dom.js).

import { $ } from './dom.js';
import { session } from './session.js';
import { currentRoom } from './rooms.js';
import * as connection from './connection.js';
import { handleFrame } from './frames.js';
import { loadDms } from './inbox.js';
import { onExpiredClose } from './token-refresh.js';
import {
  rejoinAll, connectionLost, joinRoom, leaveRoom, selectRoom, startDm, submitJoin,
} from './membership.js';
import { loadOlder } from './history.js';
import { sendMessage, cancelMode } from './composer.js';
import { userTyped } from './typing.js';
import { windowShown } from './reading.js';
import {
  onMessageClick, onMessageKey, onPageClick, onListFocus,
} from './message-actions.js';
import {
  atBottom, autosize, onRoomClicks, refreshComposer, scrollToBottom,
} from './render.js';
import {
  closeDrawerIfWide, closeDrawers, closeOnEscape, toggleDrawer,
} from './drawers.js';
import { openModerate, wireModerateDialog } from './moderate-dialog.js';
import {
  answerSwitch, begin, offerToken, signOut, submitLogin, tokenFromFragment,
} from './signin.js';

// On every (re)connect: rejoin, and ask which DMs the reader is in (the
// `direct` notices missed while away are in that list).
connection.setHandlers({
  opened: () => { rejoinAll(); loadDms(); },
  frame: handleFrame,
  closed: connectionLost,
  expired: onExpiredClose,
});
onRoomClicks({ select: selectRoom, join: joinRoom, dm: startDm });

$('name-form').addEventListener('submit', submitLogin);
// A token is one line: Enter in its box signs in, as in the name field.
$('token-input').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('name-form').requestSubmit();
  }
});
$('logout').addEventListener('click', signOut);
$('retry-now').addEventListener('click', connection.retryNow);
$('join-form').addEventListener('submit', submitJoin);
$('join-input').addEventListener('input', () => {
  $('join-error').hidden = true;
  $('join-input').setAttribute('aria-invalid', 'false');
});
$('leave-room').addEventListener('click', () => {
  const room = currentRoom();
  if (room) leaveRoom(room);
});
$('moderate-room').addEventListener('click', (event) => {
  const room = currentRoom();
  if (room) openModerate(room, '', event.currentTarget);
});
wireModerateDialog();
$('composer').addEventListener('submit', (event) => { event.preventDefault(); sendMessage(currentRoom()); });
const box = $('composer-input');
box.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendMessage(currentRoom());
  }
});
box.addEventListener('keydown', (event) => {
  // Escape ends a reply or an edit (and, with neither, closes a drawer).
  if (event.key === 'Escape' && cancelMode()) event.stopPropagation();
});
box.addEventListener('input', () => {
  autosize();
  userTyped(currentRoom());
});
$('messages').addEventListener('click', onMessageClick);
$('messages').addEventListener('keydown', onMessageKey);
$('messages').addEventListener('focus', onListFocus);
document.addEventListener('click', onPageClick);
window.addEventListener('focus', windowShown);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') windowShown();
});
const scroller = $('scroller');
scroller.addEventListener('scroll', () => {
  if (atBottom()) $('new-marker').hidden = true;
  const room = currentRoom();
  if (room && scroller.scrollTop < 80) loadOlder(room);
}, { passive: true });
$('load-older').addEventListener('click', () => {
  const room = currentRoom();
  if (room) loadOlder(room);
});
$('new-marker').addEventListener('click', scrollToBottom);
$('toggle-rooms').addEventListener('click',
  (e) => toggleDrawer('show-rooms', e.currentTarget, $('sidebar')));
$('toggle-members').addEventListener('click',
  (e) => toggleDrawer('show-members', e.currentTarget, $('member-panel')));
$('scrim').addEventListener('click', closeDrawers);
document.addEventListener('keydown', closeOnEscape);
window.addEventListener('resize', () => { refreshComposer(); closeDrawerIfWide(); });
window.addEventListener('online', () => {
  if (session.user && !connection.socket()) connection.retryNow();
});

// A token handed over while the page is already open (a second
// `#token=` link opened in this tab): see signin.offerToken.
window.addEventListener('hashchange', () => {
  const token = tokenFromFragment();
  if (token) offerToken(token);
});
$('switch-user').addEventListener('close', answerSwitch);

begin();
