// What the page remembers in the browser: the name, the rooms joined and
// the room shown (localStorage, across visits), and the access token and
// the messages sent but not yet acknowledged (sessionStorage: this tab
// only, gone when it closes).

export const LS_NAME = 'chatterbox.name';
export const LS_ROOMS = 'chatterbox.rooms';
export const LS_CURRENT = 'chatterbox.current';
export const LS_DMS = 'chatterbox.dms'; // direct-message room name -> the other user
export const SS_TOKEN = 'chatterbox.token';
export const SS_PENDING = 'chatterbox.pending.'; // followed by the user name

// `kind` is localStorage or sessionStorage; `null` forgets the key.
export function store(kind, key, value) {
  try {
    if (value === null) kind.removeItem(key);
    else kind.setItem(key, value);
  } catch (_) { /* private mode or quota: remembering is best effort */ }
}

export function load(kind, key) {
  try { return kind.getItem(key); } catch (_) { return null; }
}
