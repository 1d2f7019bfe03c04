// Who is signed in, and what the server said about itself when the page
// loaded (its auth mode and its message length limit). Plain data: signin.js
// writes it, the other modules read it (the token's claims through
// tokenClaims: its `sub`, `exp`, and `mod` for moderation.js).

import { DEFAULT_MAX_TEXT_CHARS } from './protocol.js';

export const session = {
  authMode: 'none', // 'token' when /health says so
  maxTextChars: DEFAULT_MAX_TEXT_CHARS, // /health's limits.max_message_len
  user: null, // the signed-in name; null on the sign-in form
  token: null, // the access token, when authMode is 'token'
  refreshUrl: null, // /health's token_refresh_url: where fresh tokens come from
};

// A JWT's payload, decoded (not verified: the server does that).
export function tokenClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch (_) {
    return null;
  }
}
