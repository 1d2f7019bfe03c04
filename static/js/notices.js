// What the page tells the reader outside the chat itself: error toasts
// (a few at a time, each dismissed by a click, most gone after a while)
// and the polite live region screen readers announce new messages from.

import { $, el } from './dom.js';

const ERROR_SHOW_MS = 6000;

// A sticky error stays until dismissed or removed by clearErrors(code).
export function showError(text, code, sticky) {
  const box = $('errors');
  // The same error again (a burst of rate_limited, say) shows once.
  for (const old of [...box.children]) if (old.dataset.text === text) old.remove();
  const toast = el('div', 'toast');
  toast.appendChild(el('span', 'toast-text', text));
  toast.dataset.text = text;
  toast.setAttribute('role', 'alert');
  if (code) toast.dataset.code = code;
  // A click or tap anywhere on it dismisses it (it may cover something).
  const close = el('button', 'toast-close', '×');
  close.type = 'button';
  close.setAttribute('aria-label', 'Dismiss');
  toast.appendChild(close);
  toast.title = 'Click to dismiss';
  toast.addEventListener('click', () => toast.remove());
  box.appendChild(toast);
  while (box.children.length > 3) box.firstElementChild.remove();
  if (sticky) toast.dataset.sticky = 'true';
  else setTimeout(() => toast.remove(), ERROR_SHOW_MS);
}

export function clearErrors(code) {
  for (const old of [...$('errors').children]) if (old.dataset.code === code) old.remove();
}

export function announce(text) {
  const live = $('announcer');
  live.appendChild(el('p', null, text));
  while (live.children.length > 5) live.firstElementChild.remove();
}
