// @ts-check
/**
 * status.js: what the built-in page shows about the connection and about errors (served at
 * /_luabroker/status.js), the same whichever view renders the app: the dot and word in the
 * header (`#lb-connection[data-state]`), one connection banner (`#lb-connection-banner`:
 * dropped, crashed, reconnected, session gone), and one dismissible banner per `error`
 * message (`#lb-errors > [data-code]`, the newest five kept).
 */

import { el } from "./dom.js";

/** @typedef {import("./client.js").Drop} Drop */
/** @typedef {import("./client.js").ConnectionUi} ConnectionUi */

/** @param {string} id */
function byId(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error("the page lacks #" + id);
  return e;
}

/** @implements {ConnectionUi} */
export class Status {
  constructor() {
    this.connEl = byId("lb-connection");
    this.connTextEl = byId("lb-connection-text");
    this.bannerEl = byId("lb-connection-banner");
    this.errorsEl = byId("lb-errors");
  }

  /**
   * @param {string} state connecting / open / closed
   * @param {string} text
   */
  setConnection(state, text) {
    this.connEl.dataset.state = state;
    this.connTextEl.textContent = text;
  }

  /**
   * One connection banner: a lead sentence, then (optionally) the error code and its detail.
   * @param {string} text
   * @param {"error" | "warn"} level
   * @param {boolean} [dismissible]
   * @param {string} [code]
   * @param {string} [detail]
   */
  showBanner(text, level, dismissible, code, detail) {
    const b = this.bannerEl;
    b.className = "lb-banner " + (level === "error" ? "lb-banner-error" : "lb-banner-warn");
    const body = el("span", { class: "lb-description" }, el("strong", { text }));
    if (code) body.append(" ", el("span", { class: "lb-code", text: code }), " ", detail || "");
    b.replaceChildren(body);
    if (dismissible) {
      const close = el("button", { type: "button", class: "lb-dismiss", "aria-label": "Dismiss", text: "×" });
      close.addEventListener("click", () => { b.hidden = true; });
      b.append(close);
    }
    b.hidden = false;
  }

  /**
   * A banner for one `error` message; `where` names the variable it is about, if known.
   * @param {string} code
   * @param {string} description
   * @param {string} [where]
   */
  addError(code, description, where) {
    const close = el("button", { type: "button", class: "lb-dismiss", "aria-label": "Dismiss", text: "×" });
    const banner = el("div", { class: "lb-banner lb-banner-error", role: "alert", "data-code": code },
      el("strong", { class: "lb-code", text: code }),
      where ? el("code", { class: "lb-where", text: where }) : null,
      el("span", { class: "lb-description", text: description }),
      close);
    close.addEventListener("click", () => banner.remove());
    this.errorsEl.append(banner);
    // Keep the list short: the newest few are what matter.
    while (this.errorsEl.children.length > 5) this.errorsEl.firstElementChild?.remove();
  }

  // ---- ConnectionUi ----

  /** @param {boolean} retrying */
  connecting(retrying) {
    this.setConnection("connecting", retrying ? "Reconnecting…" : "Connecting…");
  }

  /** @param {Drop | null} after */
  opened(after) {
    this.setConnection("open", "Connected");
    if (after && after.code === "session-crashed") {
      this.showBanner("The app crashed and was restarted; its state starts afresh.", "warn", true,
        after.code, after.description);
    } else if (after) {
      this.showBanner("Reconnected after " + after.description + ".", "warn", true);
    } else {
      this.bannerEl.hidden = true;
    }
  }

  /** @param {Drop} drop */
  crashed(drop) {
    this.showBanner("The session's app crashed.", "error", false, drop.code, drop.description);
  }

  /**
   * @param {string} reason
   * @param {Drop | null} crashed
   * @param {number} seconds
   * @param {() => void} now
   */
  retrying(reason, crashed, seconds, now) {
    this.setConnection("closed", "Disconnected");
    const again = "Reconnecting in " + seconds + " s…";
    if (crashed) {
      this.showBanner("The session's app crashed. " + again, "error", false, crashed.code, crashed.description);
    } else {
      this.showBanner("Disconnected: " + reason + ". " + again, "warn");
    }
    const retry = el("button", { type: "button", class: "lb-retry", text: "Reconnect now" });
    retry.addEventListener("click", now);
    this.bannerEl.append(retry);
  }

  /** @param {string} reason */
  ended(reason) {
    this.setConnection("closed", "Session ended");
    this.bannerEl.className = "lb-banner lb-banner-error";
    this.bannerEl.replaceChildren(
      el("span", { class: "lb-description", text: "This session has ended (" + reason + "). " }),
      el("a", { href: "/", text: "Start a new session" }));
    this.bannerEl.hidden = false;
  }

  /**
   * @param {string} code
   * @param {string} description
   */
  pageError(code, description) {
    this.addError(code, description, "");
  }

  /** The address names no session: nothing to connect to. */
  noSession() {
    this.setConnection("closed", "No session");
    this.showBanner("This address does not name a session.", "error");
  }
}
