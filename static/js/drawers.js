// The narrow layout's slide-in panels: the room sidebar and the member
// list, opened by their buttons in the top bar. While one is open the rest
// of the page is inert; Escape, the scrim, choosing a room or a window
// grown past the narrow layout closes it.

import { $ } from './dom.js';

export function closeDrawers() {
  document.body.classList.remove('show-rooms', 'show-members');
  $('toggle-rooms').setAttribute('aria-expanded', 'false');
  $('toggle-members').setAttribute('aria-expanded', 'false');
  $('scrim').hidden = true;
  for (const node of $('app').children) node.inert = false;
}

export function toggleDrawer(cls, button, drawer) {
  const open = !document.body.classList.contains(cls);
  closeDrawers();
  if (open) {
    document.body.classList.add(cls);
    button.setAttribute('aria-expanded', 'true');
    $('scrim').hidden = false;
    // Focus stays in the open drawer: everything behind it is inert
    // (Escape or the scrim closes it).
    for (const node of $('app').children) node.inert = node !== drawer && node.id !== 'scrim';
    // The stylesheet makes an opening drawer visible at once; if the
    // browser has not applied that yet, try again on the next frame.
    const focusFirst = () => {
      // The member list has no controls: the drawer itself takes focus.
      const first = drawer.querySelector('button, input') || drawer;
      first.focus();
      return drawer.contains(document.activeElement);
    };
    if (!focusFirst()) requestAnimationFrame(() => { if (document.body.classList.contains(cls)) focusFirst(); });
  }
}

// The button that opened the drawer now open, or null.
function openerOfOpenDrawer() {
  return document.body.classList.contains('show-rooms') ? $('toggle-rooms')
    : document.body.classList.contains('show-members') ? $('toggle-members') : null;
}

// Escape: closes any drawer, and focus returns to its button.
export function closeOnEscape(event) {
  if (event.key !== 'Escape') return;
  // Escape in a dialog closes the dialog only (it may have been opened
  // from a drawer, which stays open under it).
  if (event.target instanceof Element && event.target.closest('dialog')) return;
  const opener = openerOfOpenDrawer();
  closeDrawers();
  if (opener) opener.focus();
}

// A drawer left open when the window grows past the narrow layout (its
// toggle is gone) would leave the rest of the page inert: close it.
export function closeDrawerIfWide() {
  const opener = openerOfOpenDrawer();
  if (opener && getComputedStyle(opener).display === 'none') closeDrawers();
}
