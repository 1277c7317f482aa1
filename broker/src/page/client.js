// @ts-check
/**
 * client.js: the protocol client of the built-in page (served at /_luabroker/client.js).
 *
 * It owns the WebSocket to /ws/<id> and nothing about what is shown: it batches outgoing
 * messages into frames (everything queued in one turn of the event loop goes out as one
 * `{"userEvent", "messages"}` frame), vends the tab's variable ids (from 2, afresh on every
 * connection), hands each incoming message to whichever view is listening, and reconnects with
 * backoff when the connection drops, asking first whether the session still exists. What the
 * user sees of all that is up to the `ConnectionUi` it is given (status.js).
 *
 * A reconnect starts over: the server destroys a tab's variables when it disconnects, so the
 * view is told (`onStart`) to rebuild from variable 1 on the new connection.
 */

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

/**
 * One message of the variable protocol.
 * @typedef {{type: string, data?: any}} Message
 */

/**
 * Why the last connection ended.
 * @typedef {{code: string, description: string}} Drop
 */

/**
 * What the page shows of the connection's life (implemented by status.js).
 * @typedef {object} ConnectionUi
 * @property {(retrying: boolean) => void} connecting a connection attempt starts
 * @property {(after: Drop | null) => void} opened it is up; `after` says what ended the last one
 * @property {(drop: Drop) => void} crashed the server says the session's app crashed
 * @property {(reason: string, crashed: Drop | null, seconds: number, now: () => void) => void} retrying
 *   it dropped and the next attempt is in `seconds` (or at once through `now`)
 * @property {(reason: string) => void} ended the session no longer exists
 * @property {(code: string, description: string) => void} pageError something the page could not handle
 */

/** @param {CloseEvent} ev */
function closeReason(ev) {
  switch (ev.code) {
    case 1000: return "the connection was closed";
    case 1001: return "the server is shutting down or restarting";
    case 1006: return "the connection was lost";
    case 1009: return "a message was too large";
    case 1011: return "the session failed";
    case 1013: return "the page fell too far behind";
    default: return "the connection closed (code " + ev.code + ")";
  }
}

export class Client {
  /**
   * @param {string} sessionId the 32-hex id of the session
   * @param {ConnectionUi} ui
   */
  constructor(sessionId, ui) {
    this.sessionId = sessionId;
    this.ui = ui;
    this.url = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws/" + sessionId;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.nextId = 2;
    /** @type {Message[]} */
    this.outbox = [];
    this.outboxUser = false;
    this.failures = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.reconnectTimer = null;
    /** @type {Drop | null} */
    this.lastDrop = null;
    this.sessionGone = false;
    /** Called with every message from the server except `session-crashed`, which is the client's. */
    this.onMessage = /** @type {(m: Message) => void} */ (() => {});
    /** Called when a connection is up: every variable of an earlier one is gone. */
    this.onStart = () => {};
  }

  /** A fresh variable id for this connection. */
  newId() {
    return this.nextId++;
  }

  /**
   * Queues a message for the next frame.
   * @param {string} type
   * @param {object} data
   * @param {boolean} [userEvent] true when a person's action caused it
   */
  send(type, data, userEvent) {
    this.outbox.push({ type, data });
    this.outboxUser = this.outboxUser || !!userEvent;
    if (this.outbox.length === 1) queueMicrotask(() => this.flush());
  }

  flush() {
    if (this.outbox.length === 0) return;
    const frame = { userEvent: this.outboxUser, messages: this.outbox };
    this.outbox = [];
    this.outboxUser = false;
    // Not open: nothing to keep, the next connection starts over.
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  /** The app answered on this connection: the backoff starts again from its shortest. */
  healthy() {
    this.failures = 0;
  }

  connect() {
    this.reconnectTimer = null;
    this.ui.connecting(this.failures > 0);
    let opened = false;
    const socket = new WebSocket(this.url);
    this.ws = socket;
    socket.addEventListener("open", () => {
      if (this.ws !== socket) return;
      opened = true;
      this.ui.opened(this.lastDrop);
      this.lastDrop = null;
      this.outbox = [];
      this.outboxUser = false;
      this.nextId = 2;
      this.onStart();
    });
    socket.addEventListener("message", (ev) => {
      if (this.ws !== socket) return;
      let parsed;
      try {
        parsed = JSON.parse(ev.data);
      } catch (e) {
        this.ui.pageError("bad-frame", "the server sent something that is not JSON");
        return;
      }
      for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
        try {
          this.receive(m);
        } catch (e) {
          console.error("luabroker: handling", m, e);
          this.ui.pageError("page-error", String(e instanceof Error ? e.message : e));
        }
      }
    });
    socket.addEventListener("close", (ev) => {
      if (this.ws !== socket) return;
      this.ws = null;
      this.failures++;
      const crashed = this.lastDrop && this.lastDrop.code === "session-crashed" ? this.lastDrop : null;
      const reason = closeReason(ev) + (ev.reason ? " (" + ev.reason + ")" : "");
      if (!crashed) this.lastDrop = { code: "closed", description: reason };
      if (!opened || ev.code === 1001 || ev.code === 1011) {
        // Maybe the session itself is gone (expired, or the server restarted without it).
        this.checkSessionThenRetry(reason, crashed);
      } else {
        this.scheduleReconnect(reason, crashed);
      }
    });
  }

  /** @param {Message} m */
  receive(m) {
    if (m && m.type === "error" && m.data && m.data.code === "session-crashed") {
      this.lastDrop = { code: m.data.code, description: m.data.description || "" };
      this.ui.crashed(this.lastDrop);
      return;
    }
    this.onMessage(m);
  }

  /**
   * @param {string} reason
   * @param {Drop | null} crashed
   */
  async checkSessionThenRetry(reason, crashed) {
    try {
      const r = await fetch("/" + this.sessionId, { method: "HEAD", cache: "no-store" });
      if (r.status === 404) {
        this.sessionGone = true;
        this.ui.ended(reason);
        return;
      }
    } catch (e) {
      // The server is unreachable: keep trying.
    }
    this.scheduleReconnect(reason, crashed);
  }

  /**
   * @param {string} reason
   * @param {Drop | null} crashed
   */
  scheduleReconnect(reason, crashed) {
    if (this.sessionGone || this.reconnectTimer) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.failures - 1, 8));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    const seconds = Math.max(1, Math.round(delay / 1000));
    const timer = setTimeout(() => this.connect(), delay);
    this.reconnectTimer = timer;
    this.ui.retrying(reason, crashed, seconds, () => {
      if (this.reconnectTimer !== timer) return;
      clearTimeout(timer);
      this.connect();
    });
  }
}
