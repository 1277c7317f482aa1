// @ts-check
/**
 * session.js: the entry module of the built-in session page (served at
 * /_luabroker/session.js, loaded as `<script type="module">`). It wires the parts: the
 * protocol client (client.js) that owns the WebSocket to /ws/<id>, the connection and error
 * banners (status.js), and one of two views of the app:
 *
 *   - the app's own UI (view.js, bindings.js, viewdefs.js, variables.js) when variable 1's
 *     type has a `Type.DEFAULT` viewdef: the page renders the app's templates;
 *   - otherwise, or with `?tree` in the address, the object tree (tree.js).
 *
 * The choice is made on each connection when variable 1's first value arrives (its viewdefs
 * come ahead of it in the same batch). A link in the header switches between the two by
 * reloading the page with or without `?tree`; the app's state lives in the session, so
 * nothing is lost. `window.uiApp.updateValue(elementId, value?)` sends a value through an
 * element's `ui-value`, as ui-engine's does, for scripts and components that need it.
 *
 * Every part is a hand-written ES module with `// @ts-check`, embedded in the executable;
 * there is no build step.
 */

import { Client } from "./client.js";
import { Status } from "./status.js";
import { TreeView } from "./tree.js";
import { Variables } from "./variables.js";
import { ViewdefStore } from "./viewdefs.js";
import { Binder } from "./bindings.js";
import { AppView } from "./view.js";

/** @typedef {import("./client.js").Message} Message */

const sessionId = location.pathname.split("/")[1] || "";
const wantsTree = new URLSearchParams(location.search).has("tree");
const status = new Status();

/** @param {string} id */
function section(id) {
  const found = document.getElementById(id);
  if (found) return found;
  // A page of the app's own (`--static`) that loads this module may omit the sections.
  const made = document.createElement("section");
  made.id = id;
  document.body.append(made);
  return made;
}

/** One connection's view of the app: deciding, then the app's UI or the tree. */
class Page {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
    this.treeEl = section("lb-tree");
    this.appEl = section("lb-app");
    this.toggleEl = document.getElementById("lb-view-toggle");
    this.tree = new TreeView(this.treeEl, client, status);
    /** @type {"deciding" | "app" | "tree"} */
    this.mode = "deciding";
    this.vars = new Variables(client);
    this.store = new ViewdefStore((key, problem) => status.addError("bad-viewdef", problem, key));
    this.binder = new Binder(this.vars, (code, description, where) => status.addError(code, description, where));
    /** @type {AppView | null} */
    this.app = null;
    // A form in a template must never navigate away from the session.
    this.appEl.addEventListener("submit", (e) => e.preventDefault());
    const w = /** @type {any} */ (window);
    w.uiApp = {
      /** @param {string} elementId @param {any} [value] */
      updateValue: (elementId, value) => {
        const el = document.getElementById(elementId);
        const send = el && this.binder.valueSenders.get(el);
        if (send) send(value);
      },
    };
  }

  /** A new connection: everything starts over from variable 1. */
  start() {
    this.mode = "deciding";
    this.app = null;
    this.store = new ViewdefStore((key, problem) => status.addError("bad-viewdef", problem, key));
    this.binder = new Binder(this.vars, (code, description, where) => status.addError(code, description, where));
    this.vars.reset();
    const root = this.vars.get(1);
    if (!root) return;
    this.vars.listen(1, (v, change) => {
      if (change.properties.includes("viewdefs") && v.properties.viewdefs) this.store.receive(v.properties.viewdefs);
      if (change.value) this.client.healthy();
      if (this.mode === "deciding" && v.hasValue) this.decide();
    });
  }

  decide() {
    const root = this.vars.get(1);
    if (!root) return;
    const hasViewdef = this.store.has(root.type + ".DEFAULT");
    if (hasViewdef && !wantsTree) {
      this.mode = "app";
      document.body.dataset.view = "app";
      this.treeEl.hidden = true;
      this.appEl.hidden = false;
      this.showToggle("Object tree", "?tree");
      this.app = new AppView({ vars: this.vars, store: this.store, binder: this.binder }, this.appEl, root);
      this.appEl.setAttribute("aria-busy", "false");
      return;
    }
    this.mode = "tree";
    document.body.dataset.view = "tree";
    this.appEl.hidden = true;
    this.treeEl.hidden = false;
    if (hasViewdef) this.showToggle("App view", location.pathname);
    this.tree.start(false);
    this.tree.handle({ type: "update", data: { varId: 1, value: root.value, properties: { ...root.properties } } });
  }

  /**
   * @param {string} label
   * @param {string} href
   */
  showToggle(label, href) {
    if (!this.toggleEl) return;
    this.toggleEl.textContent = label;
    this.toggleEl.setAttribute("href", href);
    this.toggleEl.hidden = false;
  }

  /** @param {Message} m */
  handle(m) {
    if (this.mode === "tree") {
      this.tree.handle(m);
      return;
    }
    const known = this.vars.handle(m);
    if (m.type === "error") {
      const d = m.data || {};
      if (d.varId !== undefined && !known) {
        // About a variable this page destroyed in the meantime (say a list item past a
        // list's new end, resolved once more before the destroy arrived): nothing to show.
        console.debug("luabroker: error for a destroyed variable", m);
        return;
      }
      const v = d.varId !== undefined ? this.vars.get(d.varId) : undefined;
      status.addError(d.code || "error", d.description || "", v ? v.properties.path || "app" : "");
    }
  }
}

if (!/^[0-9a-f]{32}$/.test(sessionId)) {
  status.noSession();
} else {
  const client = new Client(sessionId, status);
  const page = new Page(client);
  client.onStart = () => page.start();
  client.onMessage = (m) => page.handle(m);
  client.connect();
}
