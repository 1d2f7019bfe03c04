// Who is signed in, and what the server said about itself when the page
// loaded (its auth mode and its message length limit). Plain data: signin.js
// writes it, the other modules read it.

import { DEFAULT_MAX_TEXT_CHARS } from './protocol.js';

export const session = {
  authMode: 'none', // 'token' when /health says so
  maxTextChars: DEFAULT_MAX_TEXT_CHARS, // /health's limits.max_message_len
  user: null, // the signed-in name; null on the sign-in form
  token: null, // the access token, when authMode is 'token'
  refreshUrl: null, // /health's token_refresh_url: where fresh tokens come from
};
