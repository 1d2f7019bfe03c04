// chatterbox browser client. Speaks docs/PROTOCOL.md over one WebSocket.
// Every piece of text from the server or the user goes into the page through
// textContent, never as HTML.
'use strict';

(() => {
  const NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
  const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
  // The server's MAX_MESSAGE_LEN when /health does not say it (its default).
  const DEFAULT_MAX_TEXT_CHARS = 4096;
  // Text made only of these (Unicode White_Space, as the server's Rust
  // char::is_whitespace) is refused as blank. Not JS \s or trim(): those
  // also take U+FEFF, which the server accepts, and miss U+0085.
  const BLANK_RE = /^[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;
  // A UTF-16 surrogate without its other half cannot be sent as UTF-8.
  const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/;
  const wellFormed = (text) => (typeof text.isWellFormed === 'function'
    ? text.isWellFormed() : !LONE_SURROGATE_RE.test(text));
  const ROOMS_POLL_MS = 5000;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const CONNECT_TIMEOUT_MS = 10000; // a handshake not done by then is retried
  const OLDER_PAGE = 50;
  const CATCH_UP_PAGE = 200;
  const CATCH_UP_TRIES = 4;
  const ERROR_SHOW_MS = 6000;
  const STICK_PX = 48; // closer than this to the bottom counts as "at the bottom"
  const GROUP_MS = 5 * 60 * 1000; // same author within this: one group
  const DEFAULT_ROOM = 'general';
  const LS_NAME = 'chatterbox.name';
  const LS_ROOMS = 'chatterbox.rooms';
  const LS_CURRENT = 'chatterbox.current';
  const SS_TOKEN = 'chatterbox.token';

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function store(kind, key, value) {
    try {
      if (value === null) kind.removeItem(key);
      else kind.setItem(key, value);
    } catch (_) { /* private mode or quota: remembering is best effort */ }
  }

  function load(kind, key) {
    try { return kind.getItem(key); } catch (_) { return null; }
  }

  // ---- state -------------------------------------------------------------

  const state = {
    authMode: 'none', // 'token' when /health says so
    maxTextChars: DEFAULT_MAX_TEXT_CHARS, // /health's limits.max_message_len
    user: null,
    token: null,
    ws: null,
    attempt: 0, // failed attempts since the last successful open
    connects: 0, // successful opens, for the status line (and the tests)
    retryTimer: null,
    retryAt: 0,
    tickTimer: null,
    rooms: new Map(), // name -> Room, in the order joined
    current: null,
    joinRefs: new Map(), // ref of a join -> room name
    seq: 0,
    pollTimer: null,
    refusalShown: false, // the token hint is shown once per sign-in
    refused: false, // the server is up but refuses this token: said until sign-out or success
    activeRooms: [], // last GET /api/rooms
  };

  function newRoom(name) {
    return {
      name,
      status: 'joining', // 'joining' | 'joined'
      joinedOnce: false, // after the first history: rejoins use `since`
      messages: [], // sorted by id
      ids: new Set(),
      lastId: 0, // highest id seen
      moreOlder: false,
      loadingOlder: false,
      catchingUp: false,
      members: [],
      unread: 0,
      pending: [], // {ref, text, node, afterId}
      leaving: false,
    };
  }

  const nextRef = (prefix) => `${prefix}${++state.seq}-${Date.now().toString(36)}`;

  // ---- validation (the protocol's rules) ---------------------------------

  function nameProblem(name) {
    if (name.length === 0) return 'Type a name.';
    const bad = [...name].find((c) => !/[A-Za-z0-9_.-]/.test(c));
    if (bad !== undefined) {
      const shown = bad === ' ' ? 'a space' : `"${bad}"`;
      return `Names cannot contain ${shown}. Use 1 to 32 letters (A-Z, a-z), digits, _ - or .`;
    }
    if (name.length > 32) return `Names are at most 32 characters (this one has ${name.length}).`;
    return NAME_RE.test(name) ? null : 'Use 1 to 32 letters (A-Z, a-z), digits, _ - or .';
  }

  function roomProblem(room) {
    if (room.length === 0) return 'Type a room name.';
    const bad = [...room].find((c) => !/[A-Za-z0-9_-]/.test(c));
    if (bad !== undefined) {
      const shown = bad === ' ' ? 'a space' : `"${bad}"`;
      return `Room names cannot contain ${shown}. Use 1 to 64 letters (A-Z, a-z), digits, _ or -`;
    }
    if (room.length > 64) return `Room names are at most 64 characters (this one has ${room.length}).`;
    return ROOM_RE.test(room) ? null : 'Use 1 to 64 letters (A-Z, a-z), digits, _ or -';
  }

  // A JWT's payload, decoded (not verified: the server does that).
  function tokenClaims(token) {
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

  function tokenProblem(token) {
    if (token.length === 0) return 'Paste your access token.';
    const claims = tokenClaims(token);
    if (!claims) return 'This does not look like an access token (a JWT has three parts separated by dots).';
    if (typeof claims.sub !== 'string' || !NAME_RE.test(claims.sub)) {
      return 'The token does not carry a valid user name.';
    }
    // The server refuses a token without an expiry time: say so here rather
    // than retrying a connection that can never open.
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) {
      return 'This token has no expiry time (exp), so the server will refuse it. Ask for a new one.';
    }
    if (claims.exp * 1000 <= Date.now()) {
      return 'This token has expired. Ask for a new one.';
    }
    return null;
  }

  // ---- errors and announcements -------------------------------------------

  const FRIENDLY = {
    rate_limited: 'You are sending messages too fast. Wait a moment and try again.',
    invalid_text: 'That message cannot be sent (empty, only spaces, or too long).',
    too_many_rooms: 'You are in as many rooms as allowed. Leave one first.',
    invalid_room: 'That room name is not allowed.',
    not_joined: 'You are not in that room.',
    store_failed: 'The server could not save that message. Try again.',
  };

  // A sticky error stays until dismissed or removed by clearErrors(code).
  function showError(text, code, sticky) {
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

  function clearErrors(code) {
    for (const old of [...$('errors').children]) if (old.dataset.code === code) old.remove();
  }

  function announce(text) {
    const live = $('announcer');
    live.appendChild(el('p', null, text));
    while (live.children.length > 5) live.firstElementChild.remove();
  }

  // ---- connection ----------------------------------------------------------

  function setConn(kind) {
    const conn = $('conn');
    conn.dataset.state = kind;
    conn.dataset.connects = String(state.connects);
    conn.dataset.retryAt = String(kind === 'reconnecting' ? Math.round(state.retryAt) : 0);
    $('retry-now').hidden = kind !== 'reconnecting';
    let text;
    let countdown = '';
    if (kind === 'online') text = 'Connected';
    else if (state.refused && kind !== 'offline') {
      // Stays while retrying, until sign-out or a connection that opens.
      text = 'The server refuses this token — sign out and paste a new one';
      if (kind === 'reconnecting') {
        const secs = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
        countdown = `(next try in ${secs} s)`;
      }
    } else if (kind === 'connecting') text = state.connects ? 'Reconnecting…' : 'Connecting…';
    else if (kind === 'reconnecting') {
      // Nothing was lost if no connection ever opened.
      text = state.connects ? 'Connection lost, reconnecting' : 'Cannot reach the server, retrying';
      const secs = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
      countdown = `(next try in ${secs} s)`;
    } else text = 'Offline';
    // The status line is announced by screen readers: change it only when
    // the state changes; the ticking countdown beside it is not announced.
    if ($('conn-text').textContent !== text) $('conn-text').textContent = text;
    $('conn-countdown').textContent = countdown;
    refreshComposer();
  }

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const query = state.authMode === 'token'
      ? `token=${encodeURIComponent(state.token)}`
      : `user=${encodeURIComponent(state.user)}`;
    return `${proto}//${location.host}/ws?${query}`;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.tickTimer);
    state.retryTimer = null;
    if (!state.user || state.ws) return;
    setConn('connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (_) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    let opened = false;
    const giveUp = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(giveUp);
      if (state.ws !== ws) return;
      opened = true;
      state.attempt = 0;
      state.connects += 1;
      if (state.refused) { state.refused = false; clearErrors('refused'); }
      setConn('online');
      for (const room of state.rooms.values()) sendJoin(room);
    };
    ws.onmessage = (event) => {
      if (state.ws !== ws) return;
      let frame;
      try { frame = JSON.parse(event.data); } catch (_) { return; }
      if (frame && typeof frame.type === 'string') handleFrame(frame);
    };
    ws.onclose = () => {
      clearTimeout(giveUp);
      if (state.ws !== ws) return;
      state.ws = null;
      // A leave without its acknowledgement is complete: the server drops a
      // closed connection from its rooms. Everything else is rejoined.
      for (const room of [...state.rooms.values()]) {
        if (room.leaving) dropRoom(room);
        else room.status = 'joining';
      }
      state.joinRefs.clear();
      renderJoined();
      refreshComposer();
      if (!state.user) { setConn('offline'); return; }
      if (!opened && state.authMode === 'token' && state.attempt >= 2) explainRefusal();
      scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows and handles it */ };
  }

  // The browser does not tell why an upgrade failed. When the server is up
  // and still refuses a token connection, the token is the likely cause.
  async function explainRefusal() {
    if (state.refusalShown) return;
    try {
      await getJson('/health');
    } catch (_) {
      return; // the server is away: nothing to say about the token
    }
    if (!state.user || state.authMode !== 'token') return; // signed out meanwhile
    state.refusalShown = true;
    state.refused = true;
    showError('The server is up but refuses the connection: your token may be wrong or expired. '
      + 'Sign out and paste a new one.', 'refused', true);
    if ($('conn').dataset.state === 'reconnecting') setConn('reconnecting');
  }

  // Exponential backoff with "equal jitter": half the step is fixed, half random,
  // so a server restart is not met by every client at the same instant.
  function scheduleReconnect() {
    const step = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
    const delay = step / 2 + Math.random() * (step / 2);
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    state.retryTimer = setTimeout(connect, delay);
    setConn('reconnecting');
    clearInterval(state.tickTimer);
    state.tickTimer = setInterval(() => {
      if ($('conn').dataset.state === 'reconnecting') setConn('reconnecting');
    }, 1000);
  }

  function disconnect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.tickTimer);
    const ws = state.ws;
    state.ws = null;
    if (ws) ws.close(1000);
    setConn('offline');
  }

  function send(frame) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function sendJoin(room) {
    const ref = nextRef('j');
    const frame = { type: 'join', room: room.name, ref };
    // A rejoin asks for what came after the last message seen; the room's
    // history frame then holds exactly what was missed.
    if (room.joinedOnce) frame.since = room.lastId;
    room.status = 'joining';
    room.sentSince = room.joinedOnce ? room.lastId : null;
    if (send(frame)) state.joinRefs.set(ref, room.name);
  }

  // ---- frames from the server ----------------------------------------------

  function handleFrame(frame) {
    switch (frame.type) {
      case 'history': return onHistory(frame);
      case 'presence': return onPresence(frame);
      case 'join': return onMemberJoin(frame);
      case 'leave': return onMemberLeave(frame);
      case 'chat': return onChat(frame);
      case 'error': return onError(frame);
      default: return undefined;
    }
  }

  function onHistory(frame) {
    const room = state.rooms.get(frame.room);
    if (!room || !Array.isArray(frame.messages)) return;
    for (const [ref, name] of state.joinRefs) if (name === room.name) state.joinRefs.delete(ref);
    const rejoin = room.sentSince !== null && room.sentSince !== undefined;
    const stick = isCurrent(room) && atBottom();
    let cursor = rejoin ? room.sentSince : 0;
    let added = 0;
    for (const m of frame.messages) {
      if (insertMessage(room, m)) {
        added += 1;
        if (rejoin && !isCurrent(room) && m.user !== state.user) room.unread += 1;
      }
      if (m.id > cursor) cursor = m.id;
    }
    room.status = 'joined';
    if (!rejoin) {
      room.moreOlder = frame.more === true;
      room.joinedOnce = true;
    }
    if (isCurrent(room)) {
      renderOlderControls(room);
      $('empty-room').hidden = room.messages.length + room.pending.length > 0;
      if (!rejoin || stick) scrollToBottom();
      else if (added) $('new-marker').hidden = false;
    }
    if (rejoin && frame.more === true) catchUp(room, cursor);
    else settlePending(room);
    renderJoined();
    refreshComposer();
    if (!rejoin) pollRooms(); // the room list shows the new member count now
  }

  // After a rejoin whose history was cut at MAX_HISTORY: page forward over
  // REST until nothing newer is left. Live messages may arrive meanwhile;
  // insertMessage keeps the list sorted and free of duplicates.
  async function catchUp(room, cursor) {
    room.catchingUp = true;
    const connection = state.ws;
    let failures = 0;
    try {
      for (;;) {
        let page;
        try {
          page = await getJson(
            `/api/rooms/${encodeURIComponent(room.name)}/messages?after=${cursor}&limit=${CATCH_UP_PAGE}`);
        } catch (err) {
          failures += 1;
          if (failures >= CATCH_UP_TRIES || state.ws !== connection) throw err;
          await new Promise((resolve) => setTimeout(resolve, 1000 * failures));
          continue;
        }
        if (state.rooms.get(room.name) !== room) return;
        const stick = isCurrent(room) && atBottom();
        let added = 0;
        for (const m of page.messages) {
          if (insertMessage(room, m)) {
            added += 1;
            if (!isCurrent(room) && m.user !== state.user) room.unread += 1;
          }
          if (m.id > cursor) cursor = m.id;
        }
        if (isCurrent(room) && added) {
          if (stick) scrollToBottom();
          else $('new-marker').hidden = false;
        }
        renderJoined();
        if (!page.more || page.messages.length === 0) break;
      }
    } catch (err) {
      showError(`Could not load the messages you missed in ${room.name}: ${err.message}`, 'catch_up');
    } finally {
      room.catchingUp = false;
    }
    settlePending(room);
  }

  // Messages sent just before the connection dropped have no echo. Once the
  // rejoin has brought everything stored, the ones found there (same author,
  // same text, newer than when sent) were delivered; the rest were not, and
  // their text goes back into the message box.
  function settlePending(room) {
    if (room.catchingUp || room.status !== 'joined') return;
    const unsettled = room.pending.filter((p) => p.sentOn !== state.connects);
    if (unsettled.length === 0) return;
    const claimed = new Set();
    for (const p of unsettled) {
      const found = room.messages.find((m) => m.id > p.afterId && m.user === state.user
        && m.text === p.text && !claimed.has(m.id));
      removePending(room, p);
      if (found) claimed.add(found.id);
      else failPending(p, 'The connection dropped before this message was sent.');
    }
  }

  function onPresence(frame) {
    const room = state.rooms.get(frame.room);
    if (!room || !Array.isArray(frame.users)) return;
    room.members = frame.users.filter((u) => typeof u === 'string');
    if (isCurrent(room)) renderMembers();
  }

  function onMemberJoin(frame) {
    const room = state.rooms.get(frame.room);
    if (!room || typeof frame.user !== 'string') return;
    if (!room.members.includes(frame.user)) {
      room.members.push(frame.user);
      room.members.sort(byCodePoint);
    }
    if (isCurrent(room)) renderMembers();
  }

  function onMemberLeave(frame) {
    const room = state.rooms.get(frame.room);
    if (!room) return;
    if (frame.user === state.user && room.leaving) {
      dropRoom(room);
      return;
    }
    room.members = room.members.filter((u) => u !== frame.user);
    if (isCurrent(room)) renderMembers();
  }

  function onChat(frame) {
    const room = state.rooms.get(frame.room);
    if (!room || typeof frame.id !== 'number') return;
    if (typeof frame.ref === 'string') {
      const p = room.pending.find((x) => x.ref === frame.ref);
      if (p) removePending(room, p);
    }
    const stick = isCurrent(room) && atBottom();
    const added = insertMessage(room, frame);
    if (!added) return;
    if (isCurrent(room)) {
      if (stick || frame.user === state.user) scrollToBottom();
      else $('new-marker').hidden = false;
      if (frame.user !== state.user) announce(`${frame.user} in ${room.name}: ${frame.text}`);
    } else if (frame.user !== state.user) {
      room.unread += 1;
      renderJoined();
    }
  }

  function onError(frame) {
    const code = typeof frame.code === 'string' ? frame.code : 'error';
    const serverText = typeof frame.message === 'string' ? frame.message : '';
    const ref = typeof frame.ref === 'string' ? frame.ref : null;
    if (ref && state.joinRefs.has(ref)) {
      const name = state.joinRefs.get(ref);
      state.joinRefs.delete(ref);
      const room = state.rooms.get(name);
      if (code === 'already_joined') return; // harmless: we are in it
      if (room) dropRoom(room);
      showError(`Could not join ${name}: ${FRIENDLY[code] || serverText}`, code);
      return;
    }
    if (ref) {
      for (const room of state.rooms.values()) {
        const p = room.pending.find((x) => x.ref === ref);
        if (p) {
          removePending(room, p);
          failPending(p, FRIENDLY[code] || serverText);
          return;
        }
      }
    }
    showError(FRIENDLY[code] || serverText || `Error: ${code}`, code);
  }

  // ---- rooms ----------------------------------------------------------------

  function isCurrent(room) { return state.current === room.name; }

  function byCodePoint(a, b) { return a < b ? -1 : a > b ? 1 : 0; }

  function saveRooms() {
    store(localStorage, LS_ROOMS, JSON.stringify([...state.rooms.keys()]));
    store(localStorage, LS_CURRENT, state.current);
  }

  function joinRoom(name, select) {
    let room = state.rooms.get(name);
    if (!room) {
      room = newRoom(name);
      state.rooms.set(name, room);
      sendJoin(room);
      saveRooms();
    }
    if (select) selectRoom(name);
    else renderJoined();
  }

  function leaveRoom(room) {
    // A second click before the acknowledgement would be refused (not_joined).
    if (room.leaving) return;
    room.leaving = true;
    if (isCurrent(room)) $('leave-room').disabled = true;
    if (!send({ type: 'leave', room: room.name, ref: nextRef('l') })) dropRoom(room);
  }

  function dropRoom(room) {
    state.rooms.delete(room.name);
    if (state.current === room.name) {
      const next = state.rooms.keys().next();
      state.current = next.done ? null : next.value;
      renderRoom();
    }
    saveRooms();
    renderJoined();
    if (state.user) pollRooms();
  }

  function selectRoom(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    state.current = name;
    room.unread = 0;
    saveRooms();
    renderRoom();
    renderJoined();
    closeDrawers();
  }

  async function loadOlder(room) {
    if (room.loadingOlder || !room.moreOlder || room.messages.length === 0) return;
    room.loadingOlder = true;
    renderOlderControls(room);
    try {
      const before = room.messages[0].id;
      const page = await getJson(
        `/api/rooms/${encodeURIComponent(room.name)}/messages?before=${before}&limit=${OLDER_PAGE}`);
      const scroller = $('scroller');
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      for (const m of page.messages) insertMessage(room, m);
      room.moreOlder = page.more === true;
      if (isCurrent(room)) scroller.scrollTop = scroller.scrollHeight - fromBottom;
    } catch (err) {
      showError(`Could not load older messages: ${err.message}`, 'older');
    } finally {
      room.loadingOlder = false;
      if (isCurrent(room)) renderOlderControls(room);
    }
  }

  async function getJson(path) {
    const response = await fetch(path, { cache: 'no-store' });
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      throw new Error(body && typeof body.error === 'string' ? body.error : `HTTP ${response.status}`);
    }
    return body;
  }

  async function pollRooms() {
    clearTimeout(state.pollTimer);
    try {
      const body = await getJson('/api/rooms');
      if (body && Array.isArray(body.rooms)) {
        state.activeRooms = body.rooms;
        renderRoomList();
      }
    } catch (_) { /* the connection line already says when the server is away */ }
    // Several polls may overlap (one is started after each join): keep one timer.
    clearTimeout(state.pollTimer);
    if (state.user) state.pollTimer = setTimeout(pollRooms, ROOMS_POLL_MS);
  }

  // ---- messages ---------------------------------------------------------------

  // Adds a message to its room, in id order, once. True when it was new.
  function insertMessage(room, m) {
    if (typeof m.id !== 'number' || room.ids.has(m.id)) return false;
    const msg = {
      id: m.id,
      user: String(m.user),
      text: String(m.text),
      timestamp: String(m.timestamp),
    };
    room.ids.add(msg.id);
    let i = room.messages.length;
    while (i > 0 && room.messages[i - 1].id > msg.id) i -= 1;
    room.messages.splice(i, 0, msg);
    if (msg.id > room.lastId) room.lastId = msg.id;
    if (isCurrent(room)) {
      const list = $('messages');
      const next = room.messages[i + 1];
      const before = next ? list.querySelector(`li[data-id="${next.id}"]`) : list.querySelector('li.pending');
      const node = messageNode(msg, room.messages[i - 1]);
      list.insertBefore(node, before);
      if (next && before) groupWith(before, msg, next);
      $('empty-room').hidden = true;
    }
    return true;
  }

  function sameGroup(prev, msg) {
    if (!prev || prev.user !== msg.user) return false;
    return Math.abs(Date.parse(msg.timestamp) - Date.parse(prev.timestamp)) < GROUP_MS;
  }

  function groupWith(node, prev, msg) {
    node.classList.toggle('cont', sameGroup(prev, msg));
  }

  // Distinct, readable-under-white-text colours; a name always gets the same one.
  const AVATAR_COLORS = ['#1971c2', '#9c36b5', '#0c8599', '#e8590c', '#c2255c', '#5f3dc4', '#2f9e44', '#862e9c'];

  function avatarColor(name) {
    let h = 7;
    for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
    return AVATAR_COLORS[h % AVATAR_COLORS.length];
  }

  function formatTime(ts) {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return '';
    const now = new Date();
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === now.toDateString()) return time;
    return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
  }

  function messageNode(msg, prev, pending) {
    const own = msg.user === state.user;
    const li = el('li', 'msg');
    if (own) li.classList.add('own');
    if (msg.id !== undefined) li.dataset.id = String(msg.id);
    li.dataset.user = msg.user;
    if (!pending && sameGroup(prev, msg)) li.classList.add('cont');
    const avatar = el('span', 'avatar', [...msg.user][0].toUpperCase());
    avatar.style.background = avatarColor(msg.user);
    avatar.setAttribute('aria-hidden', 'true');
    const body = el('div', 'bubble');
    const meta = el('div', 'meta');
    meta.appendChild(el('span', 'msg-user', msg.user));
    if (pending) {
      li.classList.add('pending');
      li.dataset.pending = 'true';
      meta.appendChild(el('span', 'msg-time', 'sending…'));
    } else {
      const time = el('time', 'msg-time', formatTime(msg.timestamp));
      time.dateTime = msg.timestamp;
      const d = new Date(msg.timestamp);
      if (!Number.isNaN(d.getTime())) time.title = d.toLocaleString();
      meta.appendChild(time);
    }
    body.appendChild(meta);
    body.appendChild(el('div', 'msg-text', msg.text));
    li.appendChild(avatar);
    li.appendChild(body);
    return li;
  }

  function removePending(room, p) {
    room.pending = room.pending.filter((x) => x !== p);
    if (p.node) p.node.remove();
    p.node = null;
  }

  // A message that did not go out: its text returns to the message box.
  function failPending(p, why) {
    const box = $('composer-input');
    // Failures arrive in the order sent; appending keeps that order.
    box.value = box.value.trim() === '' ? p.text : `${box.value}\n${p.text}`;
    autosize();
    showError(`Not sent: ${why} Your text is back in the message box.`, 'not_sent');
  }

  function sendMessage() {
    const box = $('composer-input');
    const text = box.value;
    const room = state.current && state.rooms.get(state.current);
    if (!room) { showError('Join a room first.', 'no_room'); return; }
    if (BLANK_RE.test(text)) return;
    if (!wellFormed(text)) {
      showError('This message contains a broken character (half of an emoji or other symbol) '
        + 'and cannot be sent. Remove it and try again; your text is kept.', 'ill_formed');
      return;
    }
    const chars = [...text].length;
    if (chars > state.maxTextChars) {
      showError(`Messages are at most ${state.maxTextChars} characters; this one has ${chars}.`, 'too_long');
      return;
    }
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      showError('Not connected right now. Your message is kept; send it again once connected.', 'offline');
      return;
    }
    if (room.status !== 'joined') {
      showError(`Still joining ${room.name}. Your message is kept; send it again in a moment.`, 'joining');
      return;
    }
    const ref = nextRef('m');
    if (!send({ type: 'chat', room: room.name, text, ref })) return;
    const p = { ref, text, afterId: room.lastId, sentOn: state.connects, node: null };
    p.node = messageNode({ user: state.user, text }, null, true);
    p.node.dataset.ref = ref;
    room.pending.push(p);
    $('messages').appendChild(p.node);
    $('empty-room').hidden = true;
    box.value = '';
    autosize();
    scrollToBottom();
  }

  // ---- rendering --------------------------------------------------------------

  function atBottom() {
    const s = $('scroller');
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_PX;
  }

  function scrollToBottom() {
    const s = $('scroller');
    s.scrollTop = s.scrollHeight;
    $('new-marker').hidden = true;
  }

  function renderOlderControls(room) {
    const button = $('load-older');
    const status = $('older-status');
    button.hidden = !room.moreOlder || room.loadingOlder;
    status.hidden = !room.loadingOlder && (room.moreOlder || room.messages.length === 0);
    status.textContent = room.loadingOlder ? 'Loading older messages…' : 'This is the start of the room.';
  }

  function renderRoom() {
    const room = state.current && state.rooms.get(state.current);
    const list = $('messages');
    list.replaceChildren();
    $('new-marker').hidden = true;
    $('leave-room').hidden = !room;
    $('leave-room').disabled = !!room && room.leaving;
    $('current-room').textContent = room ? `# ${room.name}` : 'No room';
    if (!room) {
      $('empty-room').hidden = true;
      $('load-older').hidden = true;
      $('older-status').hidden = true;
      $('room-users').textContent = '';
      renderMembers();
      refreshComposer();
      return;
    }
    let prev = null;
    for (const m of room.messages) {
      list.appendChild(messageNode(m, prev));
      prev = m;
    }
    for (const p of room.pending) {
      p.node = messageNode({ user: state.user, text: p.text }, null, true);
      p.node.dataset.ref = p.ref;
      list.appendChild(p.node);
    }
    $('empty-room').hidden = room.messages.length + room.pending.length > 0 || room.status !== 'joined';
    renderOlderControls(room);
    renderMembers();
    refreshComposer();
    scrollToBottom();
  }

  function renderMembers() {
    const room = state.current && state.rooms.get(state.current);
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
      if (user === state.user) li.appendChild(el('span', 'muted small', '(you)'));
      list.appendChild(li);
    }
    $('member-count').textContent = room ? `(${members.length})` : '';
    $('room-users').textContent = room
      ? `${members.length} ${members.length === 1 ? 'member' : 'members'}` : '';
  }

  function renderJoined() {
    const list = $('joined-rooms');
    list.replaceChildren();
    let total = 0;
    for (const room of state.rooms.values()) {
      const li = el('li');
      li.dataset.room = room.name;
      const button = el('button', 'room-btn');
      button.type = 'button';
      if (isCurrent(room)) {
        button.classList.add('current');
        button.setAttribute('aria-current', 'true');
      }
      button.appendChild(el('span', 'room-name', `# ${room.name}`));
      if (room.status === 'joining') button.appendChild(el('span', 'muted small', 'joining…'));
      if (room.unread > 0) {
        const badge = el('span', 'badge', room.unread > 99 ? '99+' : room.unread);
        badge.dataset.unread = String(room.unread);
        badge.setAttribute('aria-label', `${room.unread} unread`);
        button.appendChild(badge);
      }
      button.addEventListener('click', () => selectRoom(room.name));
      li.appendChild(button);
      list.appendChild(li);
      total += room.unread;
    }
    $('joined-empty').hidden = state.rooms.size > 0;
    document.title = total > 0 ? `(${total}) chatterbox` : 'chatterbox';
    renderRoomList();
  }

  function renderRoomList() {
    const list = $('room-list');
    list.replaceChildren();
    for (const entry of state.activeRooms) {
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
      if (state.rooms.has(entry.name)) button.classList.add('joined');
      button.addEventListener('click', () => joinRoom(entry.name, true));
      li.appendChild(button);
      list.appendChild(li);
    }
    $('room-list-empty').hidden = list.children.length > 0;
  }

  function refreshComposer() {
    const room = state.current && state.rooms.get(state.current);
    const box = $('composer-input');
    box.disabled = !room;
    $('send').disabled = !room;
    box.placeholder = fitOneLine(box, room ? `Message # ${room.name}` : 'Join a room to chat');
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

  function autosize() {
    const box = $('composer-input');
    box.style.height = 'auto';
    box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
  }

  function closeDrawers() {
    document.body.classList.remove('show-rooms', 'show-members');
    $('toggle-rooms').setAttribute('aria-expanded', 'false');
    $('toggle-members').setAttribute('aria-expanded', 'false');
    $('scrim').hidden = true;
    for (const node of $('app').children) node.inert = false;
  }

  function toggleDrawer(cls, button, drawer) {
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

  // A drawer left open when the window grows past the narrow layout (its
  // toggle is gone) would leave the rest of the page inert: close it.
  function closeDrawerIfWide() {
    const opener = document.body.classList.contains('show-rooms') ? $('toggle-rooms')
      : document.body.classList.contains('show-members') ? $('toggle-members') : null;
    if (opener && getComputedStyle(opener).display === 'none') closeDrawers();
  }

  // ---- sign in and out ----------------------------------------------------------

  function showLogin(message) {
    $('app').hidden = true;
    $('login').hidden = false;
    $('name-mode').hidden = state.authMode === 'token';
    $('token-mode').hidden = state.authMode !== 'token';
    const error = $('name-error');
    error.textContent = message || '';
    error.hidden = !message;
    const field = state.authMode === 'token' ? $('token-input') : $('name-input');
    field.setAttribute('aria-invalid', message ? 'true' : 'false');
    field.focus();
  }

  function start(user) {
    state.user = user;
    state.refusalShown = false;
    state.refused = false;
    clearErrors('refused');
    $('me-name').textContent = user;
    $('me-name').title = user; // the name may be cut short on a narrow screen
    $('logout').textContent = state.authMode === 'token' ? 'Sign out' : 'Change name';
    $('login').hidden = true;
    $('app').hidden = false;
    state.rooms.clear();
    // `general` only on a first visit: a saved empty list means the user
    // left every room, and stays that way after a reload.
    const stored = load(localStorage, LS_ROOMS);
    let saved = null;
    try { saved = JSON.parse(stored); } catch (_) { saved = null; }
    saved = Array.isArray(saved) ? saved.filter((r) => typeof r === 'string' && ROOM_RE.test(r)) : null;
    if (saved === null) saved = [DEFAULT_ROOM];
    for (const name of saved) state.rooms.set(name, newRoom(name));
    const current = load(localStorage, LS_CURRENT);
    state.current = state.rooms.has(current) ? current : (saved[0] ?? null);
    renderJoined();
    renderRoom();
    connect();
    pollRooms();
    $('composer-input').focus();
  }

  function signOut() {
    const user = state.user;
    state.user = null;
    state.refused = false;
    clearErrors('refused');
    clearTimeout(state.pollTimer);
    disconnect();
    state.rooms.clear();
    state.current = null;
    if (state.authMode === 'token') {
      state.token = null;
      store(sessionStorage, SS_TOKEN, null);
      $('token-input').value = '';
    } else {
      $('name-input').value = user || '';
    }
    showLogin();
  }

  function submitLogin(event) {
    event.preventDefault();
    if (state.authMode === 'token') {
      const token = $('token-input').value.trim();
      const problem = tokenProblem(token);
      if (problem) { showLogin(problem); return; }
      state.token = token;
      store(sessionStorage, SS_TOKEN, token);
      start(tokenClaims(token).sub);
      return;
    }
    const name = $('name-input').value.trim();
    const problem = nameProblem(name);
    if (problem) { showLogin(problem); return; }
    store(localStorage, LS_NAME, name);
    start(name);
  }

  // Reads /health once on load: answers the auth mode (`"auth": "token"`
  // when the server wants signed tokens) and takes the server's message
  // length from `limits`. Without them: names, and the default length.
  async function readHealth() {
    try {
      const health = await getJson('/health');
      const max = health && health.limits && health.limits.max_message_len;
      if (Number.isSafeInteger(max) && max > 0) state.maxTextChars = max;
      if (health && health.auth === 'token') return 'token';
    } catch (_) { /* server away: assume names; the connection line will show it */ }
    return 'none';
  }

  // A token handed over in the address (`#token=...`) is taken once and
  // removed from the address bar, so it is not left in history or bookmarks.
  function tokenFromFragment() {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!match) return null;
    history.replaceState(null, '', location.pathname + location.search);
    try { return decodeURIComponent(match[1]); } catch (_) { return match[1]; }
  }

  // A token handed over (a `#token=` link) while the page may already be
  // signed in. Nobody signed in: sign in with it. The same user: a fresh
  // token replaces the old one quietly (the open connection stays). Another
  // user: ask first, and keep the current one unless the person agrees.
  // A token that cannot work is said, and the current user stays.
  function offerToken(token) {
    if (!state.user) {
      state.authMode = 'token';
      signInWithToken(token);
      return;
    }
    const problem = tokenProblem(token);
    if (problem) {
      showError(`The link's token was not used: ${problem}`, 'link-token');
      return;
    }
    const user = tokenClaims(token).sub;
    if (user === state.user && state.authMode === 'token') {
      state.token = token;
      store(sessionStorage, SS_TOKEN, token);
      return;
    }
    if (user === state.user) { // signed in by name: now with a token, as the server asks
      switchToToken(token);
      return;
    }
    askToSwitch(token, user);
  }

  function switchToToken(token) {
    signOut();
    state.authMode = 'token';
    signInWithToken(token);
  }

  function askToSwitch(token, user) {
    const dialog = $('switch-user');
    // A second link while asking replaces the first.
    dialog.dataset.token = token;
    $('switch-text').textContent =
      `This link signs in as ${user}. You are signed in as ${state.user}. Switch to ${user}?`;
    $('switch-keep').textContent = `Stay as ${state.user}`;
    $('switch-accept').textContent = `Switch to ${user}`;
    dialog.returnValue = '';
    if (!dialog.open) dialog.showModal();
    $('switch-keep').focus();
  }

  function answerSwitch() {
    const dialog = $('switch-user');
    const token = dialog.dataset.token;
    delete dialog.dataset.token;
    if (dialog.returnValue === 'switch' && token) switchToToken(token);
  }

  // Signs in with `token`, or shows the token form with what is wrong.
  function signInWithToken(token) {
    const problem = tokenProblem(token);
    if (problem) {
      $('token-input').value = token;
      showLogin(problem);
      return;
    }
    state.token = token;
    store(sessionStorage, SS_TOKEN, token);
    start(tokenClaims(token).sub);
  }

  async function init() {
    $('name-form').addEventListener('submit', submitLogin);
    // A token is one line: Enter in its box signs in, as in the name field.
    $('token-input').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $('name-form').requestSubmit();
      }
    });
    $('logout').addEventListener('click', signOut);
    $('retry-now').addEventListener('click', () => { state.attempt = 0; connect(); });
    $('join-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = $('join-input');
      const name = input.value.trim();
      const problem = roomProblem(name);
      const error = $('join-error');
      error.textContent = problem || '';
      error.hidden = !problem;
      input.setAttribute('aria-invalid', problem ? 'true' : 'false');
      if (problem) { input.focus(); return; }
      input.value = '';
      joinRoom(name, true);
      $('composer-input').focus();
    });
    $('join-input').addEventListener('input', () => {
      $('join-error').hidden = true;
      $('join-input').setAttribute('aria-invalid', 'false');
    });
    $('leave-room').addEventListener('click', () => {
      const room = state.current && state.rooms.get(state.current);
      if (room) leaveRoom(room);
    });
    $('composer').addEventListener('submit', (event) => { event.preventDefault(); sendMessage(); });
    const box = $('composer-input');
    box.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        sendMessage();
      }
    });
    box.addEventListener('input', autosize);
    const scroller = $('scroller');
    scroller.addEventListener('scroll', () => {
      if (atBottom()) $('new-marker').hidden = true;
      const room = state.current && state.rooms.get(state.current);
      if (room && scroller.scrollTop < 80) loadOlder(room);
    }, { passive: true });
    $('load-older').addEventListener('click', () => {
      const room = state.current && state.rooms.get(state.current);
      if (room) loadOlder(room);
    });
    $('new-marker').addEventListener('click', scrollToBottom);
    $('toggle-rooms').addEventListener('click',
      (e) => toggleDrawer('show-rooms', e.currentTarget, $('sidebar')));
    $('toggle-members').addEventListener('click',
      (e) => toggleDrawer('show-members', e.currentTarget, $('member-panel')));
    $('scrim').addEventListener('click', closeDrawers);
    document.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape') return;
      const opener = document.body.classList.contains('show-rooms') ? $('toggle-rooms')
        : document.body.classList.contains('show-members') ? $('toggle-members') : null;
      closeDrawers();
      if (opener) opener.focus();
    });
    window.addEventListener('resize', () => { refreshComposer(); closeDrawerIfWide(); });
    window.addEventListener('online', () => { if (state.user && !state.ws) { state.attempt = 0; connect(); } });

    // A token handed over while the page is already open (a second
    // `#token=` link opened in this tab): see offerToken.
    window.addEventListener('hashchange', () => {
      const token = tokenFromFragment();
      if (token) offerToken(token);
    });
    $('switch-user').addEventListener('close', answerSwitch);

    const fragmentToken = tokenFromFragment();
    state.authMode = await readHealth();
    // A token in the address means this server wants tokens, even when
    // /health could not be read just now (the server may be restarting).
    if (fragmentToken) state.authMode = 'token';
    if (state.user) { // a hashchange signed in meanwhile
      if (fragmentToken) offerToken(fragmentToken);
      return;
    }
    if (state.authMode === 'token') {
      // This tab was signed in (its token is in sessionStorage) and is
      // loaded again with a link: the link is offered, as in a running tab.
      const saved = load(sessionStorage, SS_TOKEN);
      if (saved && !tokenProblem(saved) && fragmentToken) {
        signInWithToken(saved);
        offerToken(fragmentToken);
        return;
      }
      const token = fragmentToken || saved;
      if (token) { signInWithToken(token); return; }
      showLogin();
      return;
    }
    const saved = load(localStorage, LS_NAME);
    if (saved && NAME_RE.test(saved)) {
      start(saved);
      return;
    }
    showLogin();
  }

  init();
})();
