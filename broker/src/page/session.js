/*
 * session.js: the built-in session page's client (served at /_luabroker/session.js).
 *
 * It speaks the variable protocol (DESIGN.md 4) over /ws/<id> and shows the app as a live,
 * collapsible object tree, with no framework and no build step:
 *
 *   - variable 1 (the app) is watched; for a value {"obj": N} the page asks `getObjects` for the
 *     object's fields and methods, and creates one child variable per field (path "<field>"), so
 *     every later change is pushed by the server as an `update`;
 *   - nested objects are fetched only when expanded (the first levels start expanded); arrays
 *     get one child variable per element (path "0", "1", …);
 *   - scalar fields are editable (text, number, checkbox); an edit is an `update` with a value;
 *   - each method of an object is a button; a click creates (once) a child variable with path
 *     "<method>()" and access "action", and sends `update` with value null, which calls it;
 *   - methods named in variable 1's `computed` property (comma-separated, e.g. set by
 *     `session:createAppVariable(app, {computed = "remaining"})`) are shown as live read-only
 *     values instead (path "<method>()", access "r"), since a button's result would be thrown away;
 *   - `error` messages become dismissible banners; a dropped connection gets a banner naming
 *     why, and the page reconnects with backoff, starting over (the server destroys a tab's
 *     variables when it disconnects).
 *
 * Hooks for tests and tools: every node of the tree is an element with `data-path` (the field
 * path from the app, e.g. "count", "todos.0.text"), `data-var-id`, `data-shape`
 * (scalar/object/array) and, for scalars, `data-value` (the value as JSON) and `data-text` (as
 * shown); each method button has `data-call` ("increment", "todos.0.toggle") and
 * `data-method`.
 */
"use strict";

(() => {
  const sessionId = location.pathname.split("/")[1] || "";
  const wsUrl =
    (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws/" + sessionId;

  /** Objects this deep or shallower start expanded (0 = the app); deeper ones wait for a click. */
  const AUTO_EXPAND_DEPTH = 2;
  /** Methods every prototype has that are not the app's actions. */
  const HIDDEN_METHODS = new Set(["new", "mutate", "init"]);
  /** Field names a path can address (`a.b`, not `a-b` nor `1`): others cannot be bound. */
  const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;

  const $ = (id) => document.getElementById(id);
  const treeEl = $("lb-tree");
  const connEl = $("lb-connection");
  const connTextEl = $("lb-connection-text");
  const connBannerEl = $("lb-connection-banner");
  const errorsEl = $("lb-errors");

  // ---- per-connection state (reset by startOver) ---------------------------------------------

  let ws = null;
  let nextId = 2;
  /** varId → Node for every variable this tab created (and 1, the app). */
  let nodes = new Map();
  /** varId → {owner, method} for the action variables behind the method buttons. */
  let actions = new Map();
  /** Messages waiting to go out in the next frame; userEvent is true if any was a user's. */
  let outbox = [];
  let outboxUser = false;
  let computedNames = new Set();

  // ---- state that survives reconnects --------------------------------------------------------

  /** path → expanded?, for nodes the user opened or closed by hand. */
  const expandedByUser = new Map();
  let failures = 0;
  let reconnectTimer = null;
  /** Why the last connection ended, shown once the next one is up. */
  let lastDrop = null;
  let sessionGone = false;

  // ---- helpers -------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }

  // Order of an object's rows: text and numbers, then flags, computed values, the method
  // buttons, and nested objects and arrays last (each group by name).
  const RANK_COMPUTED = 2;
  const RANK_METHODS = 3;
  function rankOf(v) {
    if (v !== null && typeof v === "object") return 4;
    return typeof v === "boolean" ? 1 : 0;
  }

  function shapeOf(v) {
    if (Array.isArray(v)) return "array";
    if (v !== null && typeof v === "object") return typeof v.obj === "number" ? "object" : "json";
    return "scalar";
  }

  function displayText(v) {
    if (v === null || v === undefined) return "nil";
    if (typeof v === "string") return v;
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function joinPath(base, key) {
    return base === "" ? key : base + "." + key;
  }

  // ---- outgoing frames -----------------------------------------------------------------------

  function queue(message, userEvent) {
    outbox.push(message);
    outboxUser = outboxUser || !!userEvent;
    // Everything queued in one turn of the event loop goes out as one frame.
    if (outbox.length === 1) queueMicrotask(flush);
  }

  function flush() {
    if (outbox.length === 0) return;
    const frame = { userEvent: outboxUser, messages: outbox };
    outbox = [];
    outboxUser = false;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
    // Not open: nothing to keep, the next connection starts over.
  }

  function send(type, data, userEvent) {
    queue({ type, data }, userEvent);
  }

  // ---- the tree ------------------------------------------------------------------------------

  /**
   * One variable shown in the tree: the app (kind "root"), an object field ("field"), an array
   * element ("element") or a computed method ("computed").
   */
  class Node {
    constructor(parent, key, kind) {
      this.id = parent ? nextId++ : 1;
      this.parent = parent;
      this.key = key;
      this.kind = kind;
      this.depth = parent ? parent.depth + 1 : 0;
      this.path = parent ? joinPath(parent.path, key) : "";
      this.value = undefined;
      this.shape = null;
      this.props = {};
      /** Child nodes by field name / element index / "name()". */
      this.children = new Map();
      /** Method name → action variable id (created on first click). */
      this.actionIds = new Map();
      this.objId = null;
      /** The object whose fields were last laid out here (null: not yet). */
      this.loadedObj = null;
      this.sortRank = 0;
      this.dirty = false;
      nodes.set(this.id, this);
      this.build();
    }

    get expanded() {
      if (this.kind === "root") return true;
      const chosen = expandedByUser.get(this.path);
      return chosen !== undefined ? chosen : this.depth <= AUTO_EXPAND_DEPTH;
    }

    label() {
      return this.kind === "root" ? "app" : this.key;
    }

    build() {
      this.li = el("li", {
        class: "lb-node lb-" + this.kind,
        "data-path": this.path,
        "data-var-id": this.id,
        "data-kind": this.kind,
        "data-shape": "pending",
      });
      this.row = el("div", { class: "lb-row" });
      this.li.append(this.row);
      this.renderPending();
    }

    renderPending() {
      this.row.replaceChildren(
        el("span", { class: "lb-key", text: this.label() }),
        el("span", { class: "lb-pending", text: "…" })
      );
    }

    /** The server says the variable's value is now `v`. */
    setValue(v) {
      const shape = shapeOf(v);
      const old = this.shape;
      this.value = v;
      this.li.classList.remove("lb-invalid");
      this.li.removeAttribute("title");
      if (shape !== old) {
        // A field that changed kind (say a table became a string) loses what hung below it;
        // the server still has those variables, so they are destroyed there too.
        if (old === "object" || old === "array") this.dropChildren(true);
        if (this.body) this.body.remove();
        this.shape = shape;
        this.li.dataset.shape = shape;
        this.body = null;
        this.typeEl = null;
        this.objId = null;
        this.loadedObj = null;
        if (shape === "object" || shape === "array") this.renderContainer();
        else this.renderScalar();
      }
      if (shape === "object") this.showObject(v.obj);
      else if (shape === "array") this.showArray(v);
      else this.showScalar(v);
    }

    // -- scalars --

    renderScalar() {
      delete this.li.dataset.obj;
      const inputId = "lb-in-" + this.id;
      const label = el("label", { class: "lb-key", for: inputId, text: this.label() });
      let control;
      const v = this.value;
      if (this.kind === "computed" || this.shape === "json") {
        control = el("output", { class: "lb-value lb-readonly", id: inputId });
      } else if (typeof v === "boolean") {
        control = el("input", { class: "lb-value lb-bool", id: inputId, type: "checkbox" });
        control.addEventListener("change", () => this.commit(control.checked, true));
      } else if (typeof v === "number") {
        control = el("input", {
          class: "lb-value lb-number", id: inputId, type: "number", step: "any",
          inputmode: "decimal",
        });
        control.addEventListener("input", () => { this.dirty = true; });
        control.addEventListener("change", () => this.commitEdit());
      } else {
        control = el("input", {
          class: "lb-value lb-text" + (v === null ? " lb-nil" : ""), id: inputId, type: "text",
          placeholder: v === null ? "nil" : null, spellcheck: "false", autocomplete: "off",
        });
        control.addEventListener("input", () => { this.dirty = true; });
        control.addEventListener("change", () => this.commitEdit());
      }
      control.dataset.valueOf = this.path;
      this.control = control;
      this.controlType = typeof v;
      this.row.replaceChildren(label, control);
    }

    showScalar(v) {
      // A string that became a number (or nil) needs another kind of input.
      if (this.kind !== "computed" && this.shape !== "json" && typeof v !== this.controlType) {
        this.renderScalar();
      }
      this.li.dataset.value = JSON.stringify(v === undefined ? null : v);
      this.li.dataset.text = displayText(v);
      const c = this.control;
      if (c.tagName === "OUTPUT") {
        c.textContent = displayText(v);
      } else if (c.type === "checkbox") {
        c.checked = !!v;
      } else if (!(this.dirty && document.activeElement === c)) {
        // Never overwrite what someone is typing; their edit is committed on change.
        c.value = v === null ? "" : String(v);
        this.dirty = false;
      }
    }

    /** Parses what the input holds; `undefined` when it is not a valid value. */
    editedValue() {
      const c = this.control;
      if (!c || c.tagName !== "INPUT") return undefined;
      if (c.type === "checkbox") return c.checked;
      if (c.type === "number") {
        if (c.value.trim() === "") return undefined;
        const n = Number(c.value);
        return Number.isFinite(n) ? n : undefined;
      }
      return c.value;
    }

    commitEdit() {
      const v = this.editedValue();
      if (v === undefined) {
        this.li.classList.add("lb-invalid");
        this.li.title = "not a number";
        return;
      }
      if (this.dirty) this.commit(v, true);
    }

    commit(v, userEvent) {
      this.dirty = false;
      if (v === this.value) return;
      this.value = v;
      this.li.dataset.value = JSON.stringify(v);
      this.li.dataset.text = displayText(v);
      send("update", { varId: this.id, value: v }, userEvent);
    }

    // -- objects and arrays --

    renderContainer() {
      const bodyId = "lb-body-" + this.id;
      let head;
      if (this.kind === "root") {
        // The app itself is always open: a heading, not a toggle.
        head = el("h2", { class: "lb-key lb-app-name", text: "app" });
      } else {
        this.toggle = el("button", {
          type: "button", class: "lb-toggle", "aria-controls": bodyId,
          "aria-expanded": String(this.expanded),
        }, el("span", { class: "lb-caret", "aria-hidden": "true" }),
          el("span", { class: "lb-key", text: this.label() }));
        this.toggle.addEventListener("click", () => this.setExpanded(!this.expanded));
        head = this.toggle;
      }
      this.typeEl = el("span", { class: "lb-type" });
      this.summaryEl = el("span", { class: "lb-summary" });
      this.row.replaceChildren(head, this.typeEl, this.summaryEl);
      this.list = el(this.shape === "array" ? "ol" : "ul", {
        class: "lb-fields" + (this.shape === "array" ? " lb-elements" : ""),
        start: this.shape === "array" ? "0" : null,
      });
      this.methodsEl = el("div", { class: "lb-methods", role: "group",
        "aria-label": "Methods of " + (this.path || "the app") });
      // The buttons sit in the list, after the plain fields and before nested objects, so
      // they stay next to what they change however long the nested lists grow.
      this.methodsLi = el("li", { class: "lb-methods-row" }, this.methodsEl);
      this.list.append(this.methodsLi);
      this.body = el("div", { class: "lb-body", id: bodyId }, this.list);
      this.body.hidden = !this.expanded;
      this.li.append(this.body);
      this.showType();
    }

    setExpanded(open) {
      expandedByUser.set(this.path, open);
      this.toggle.setAttribute("aria-expanded", String(open));
      this.body.hidden = !open;
      if (open && this.shape === "object" && this.loadedObj !== this.objId) {
        send("getObjects", { objIds: [this.objId] }, true);
      }
      if (open && this.shape === "array") this.showArray(this.value);
    }

    showType() {
      if (!this.typeEl) return;
      const t = this.props.type || "";
      this.typeEl.textContent = t;
      this.typeEl.hidden = !t;
    }

    showObject(obj) {
      this.li.dataset.obj = obj;
      delete this.li.dataset.value;
      delete this.li.dataset.text;
      this.summaryEl.textContent = "";
      if (obj === this.objId) return;
      this.objId = obj;
      // Lazily: only an expanded node asks what the object holds.
      if (this.expanded) send("getObjects", { objIds: [obj] }, false);
    }

    /** The `getObjects` answer for the object this node shows: lay out fields and methods. */
    layoutObject(obj, fields, methods) {
      const identityChanged = this.loadedObj !== null && this.loadedObj !== obj;
      this.loadedObj = obj;
      const names = Object.keys(fields).filter(
        (k) => FIELD_NAME.test(k) && !(k === "type" && typeof fields[k] === "string")
      );
      const wanted = new Set(names);
      const visible = methods.filter((m) => FIELD_NAME.test(m) && !m.startsWith("_") && !HIDDEN_METHODS.has(m));
      const computed = visible.filter((m) => computedNames.has(m));
      for (const m of computed) wanted.add(m + "()");
      // Fields of another object that this one lacks go; a field merely set to nil stays.
      for (const [key, child] of this.children) {
        if (!wanted.has(key) && (identityChanged || child.kind === "computed")) child.destroy();
      }
      for (const name of names) {
        if (!this.children.has(name)) this.addChild(name, "field", { path: name });
        this.children.get(name).sortRank = rankOf(fields[name]);
      }
      for (const m of computed) {
        const key = m + "()";
        if (!this.children.has(key)) this.addChild(key, "computed", { path: key, access: "r" });
        this.children.get(key).sortRank = RANK_COMPUTED;
      }
      this.sortChildren();
      this.layoutMethods(visible.filter((m) => !computedNames.has(m)));
    }

    addChild(key, kind, properties) {
      const child = new Node(this, key, kind);
      this.children.set(key, child);
      this.list.insertBefore(child.li, this.methodsLi || null);
      send("create", { id: child.id, parentId: this.id, properties }, false);
      return child;
    }

    sortChildren() {
      const kids = [...this.children.values()].sort(
        (a, b) => a.sortRank - b.sortRank || a.key.localeCompare(b.key)
      );
      const items = kids.filter((k) => k.sortRank < RANK_METHODS).map((k) => k.li);
      if (this.methodsLi) items.push(this.methodsLi);
      for (const k of kids) if (k.sortRank > RANK_METHODS) items.push(k.li);
      placeInOrder(this.list, items);
    }

    /** Buttons are kept across layouts: moving or replacing one would take its focus away. */
    layoutMethods(methods) {
      methods.sort((a, b) => a.localeCompare(b));
      const existing = new Map();
      for (const b of this.methodsEl.querySelectorAll(":scope > .lb-method")) {
        existing.set(b.dataset.method, b);
      }
      const buttons = methods.map((m) => {
        if (existing.has(m)) return existing.get(m);
        const b = el("button", {
          type: "button", class: "lb-method", "data-method": m,
          "data-call": joinPath(this.path, m),
          title: "Call " + joinPath(this.path, m) + "()",
        }, el("span", { class: "lb-method-name", text: m }), el("span", { class: "lb-parens", text: "()" }));
        b.addEventListener("click", () => this.call(m));
        return b;
      });
      for (const [m, b] of existing) if (!methods.includes(m)) b.remove();
      placeInOrder(this.methodsEl, buttons);
      this.methodsEl.hidden = buttons.length === 0;
      const empty = this.children.size === 0 && buttons.length === 0;
      this.summaryEl.textContent = empty ? "empty" : "";
    }

    /** A method button: commit pending edits, then call the method through its action variable. */
    call(method) {
      flushEdits();
      let id = this.actionIds.get(method);
      if (id === undefined) {
        id = nextId++;
        this.actionIds.set(method, id);
        actions.set(id, { owner: this, method });
        send("create", {
          id, parentId: this.id, nowatch: true,
          properties: { path: method + "()", access: "action" },
        }, true);
      }
      send("update", { varId: id, value: null }, true);
      // A method may add fields the layout has not seen: look again once it has run.
      send("getObjects", { objIds: [this.objId] }, true);
    }

    showArray(items) {
      delete this.li.dataset.obj;
      this.li.dataset.length = items.length;
      this.summaryEl.textContent = items.length === 1 ? "1 item" : items.length + " items";
      // Elements past the end go even while collapsed; new ones are bound only when shown.
      for (const [key, child] of this.children) {
        if (Number(key) >= items.length) child.destroy();
      }
      if (!this.expanded) return;
      for (let i = 0; i < items.length; i++) {
        const key = String(i);
        if (!this.children.has(key)) this.addChild(key, "element", { path: key });
      }
    }

    // -- going away --

    /** Destroys this variable (and, server-side, its descendants) and drops it from the page. */
    destroy() {
      send("destroy", { varId: this.id }, false);
      this.forget();
    }

    /**
     * Drops this node and everything below it from the page and the maps. The server removes
     * the descendants of a destroyed variable itself (and acknowledges each: see onDestroy).
     */
    forget() {
      this.dropChildren(false);
      nodes.delete(this.id);
      if (this.parent && this.parent.children.get(this.key) === this) {
        this.parent.children.delete(this.key);
      }
      this.li.remove();
    }

    /** Drops the child and action variables; `tellServer` when this variable itself stays. */
    dropChildren(tellServer) {
      for (const child of [...this.children.values()]) {
        if (tellServer) send("destroy", { varId: child.id }, false);
        child.forget();
      }
      this.children.clear();
      for (const id of this.actionIds.values()) {
        if (tellServer) send("destroy", { varId: id }, false);
        actions.delete(id);
      }
      this.actionIds.clear();
      this.loadedObj = null;
    }
  }

  /**
   * Makes `items` the children of `parent` in this order, moving only what is out of place
   * (moving an element that holds the focus would blur it).
   */
  function placeInOrder(parent, items) {
    let at = parent.firstElementChild;
    for (const item of items) {
      if (item === at) {
        at = at.nextElementSibling;
      } else {
        parent.insertBefore(item, at);
      }
    }
  }

  /** Commits every input someone has typed into but not yet committed. */
  function flushEdits() {
    for (const node of nodes.values()) {
      if (node.dirty) node.commitEdit();
    }
  }

  // ---- incoming frames -----------------------------------------------------------------------

  function handle(message) {
    const data = message && message.data ? message.data : {};
    switch (message && message.type) {
      case "update": return onUpdate(data);
      case "destroy": return onDestroy(data.varId);
      case "error": return onError(data);
      case "get":
        for (const v of data.variables || []) onUpdate({ varId: v.id, value: v.value, properties: v.properties });
        return;
      case "getObjects":
        for (const o of data.objects || []) onObject(o);
        return;
      default:
        console.warn("luabroker: unknown message", message);
    }
  }

  function onUpdate(data) {
    const node = nodes.get(data.varId);
    if (!node) return;
    if (data.properties) {
      for (const [k, v] of Object.entries(data.properties)) {
        if (v === "") delete node.props[k];
        else node.props[k] = v;
      }
      node.showType();
      if (node.id === 1 && "computed" in data.properties) setComputed(node.props.computed || "");
    }
    if ("value" in data) {
      node.setValue(data.value);
      if (node.id === 1) {
        failures = 0; // the app answered: this connection works
        treeEl.setAttribute("aria-busy", "false");
        const placeholder = treeEl.querySelector(".lb-placeholder");
        if (placeholder) placeholder.remove();
      }
    }
  }

  function setComputed(list) {
    const names = new Set(list.split(",").map((s) => s.trim()).filter(Boolean));
    if ([...names].join() === [...computedNames].join()) return;
    computedNames = names;
    // Lay every loaded object out again with the new split of methods.
    for (const node of nodes.values()) {
      if (node.shape === "object" && node.loadedObj !== null) {
        send("getObjects", { objIds: [node.objId] }, false);
      }
    }
  }

  function onDestroy(varId) {
    if (actions.has(varId)) {
      const { owner, method } = actions.get(varId);
      actions.delete(varId);
      if (owner.actionIds.get(method) === varId) owner.actionIds.delete(method);
      return;
    }
    const node = nodes.get(varId);
    if (!node) return; // one we already dropped: this is the server's acknowledgement
    if (node.id === 1) {
      nodes.delete(1);
      treeEl.replaceChildren(el("p", { class: "lb-placeholder", text: "The app variable was destroyed." }));
      return;
    }
    node.forget();
  }

  function onObject(o) {
    for (const node of nodes.values()) {
      if (node.shape === "object" && node.objId === o.obj && node.expanded) {
        node.layoutObject(o.obj, o.value || {}, o.methods || []);
      }
    }
  }

  function onError(data) {
    const code = data.code || "error";
    const description = data.description || "";
    if (code === "session-crashed") {
      lastDrop = { code, description };
      showConnectionBanner("The session's app crashed.", "error", false, code, description);
      return;
    }
    const node = data.varId !== undefined ? nodes.get(data.varId) : undefined;
    const action = data.varId !== undefined ? actions.get(data.varId) : undefined;
    let where = "";
    if (node) {
      node.li.classList.add("lb-invalid");
      node.li.title = code + ": " + description;
      where = node.path || "app";
    } else if (action) {
      where = joinPath(action.owner.path, action.method) + "()";
    }
    addErrorBanner(code, description, where);
  }

  function addErrorBanner(code, description, where) {
    const close = el("button", { type: "button", class: "lb-dismiss", "aria-label": "Dismiss", text: "×" });
    const banner = el("div", { class: "lb-banner lb-banner-error", role: "alert", "data-code": code },
      el("strong", { class: "lb-code", text: code }),
      where ? el("code", { class: "lb-where", text: where }) : null,
      el("span", { class: "lb-description", text: description }),
      close);
    close.addEventListener("click", () => banner.remove());
    errorsEl.append(banner);
    // Keep the list short: the newest few are what matter.
    while (errorsEl.children.length > 5) errorsEl.firstElementChild.remove();
  }

  // ---- connection ----------------------------------------------------------------------------

  function setConnection(state, text) {
    connEl.dataset.state = state;
    connTextEl.textContent = text;
  }

  /** One connection banner: a lead sentence, then (optionally) the error code and its detail. */
  function showConnectionBanner(text, level, dismissible, code, detail) {
    connBannerEl.className = "lb-banner " + (level === "error" ? "lb-banner-error" : "lb-banner-warn");
    const body = el("span", { class: "lb-description" }, el("strong", { text }));
    if (code) body.append(" ", el("span", { class: "lb-code", text: code }), " ", detail || "");
    connBannerEl.replaceChildren(body);
    if (dismissible) {
      const close = el("button", { type: "button", class: "lb-dismiss", "aria-label": "Dismiss", text: "×" });
      close.addEventListener("click", () => { connBannerEl.hidden = true; });
      connBannerEl.append(close);
    }
    connBannerEl.hidden = false;
  }

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

  /** Clears everything tied to a connection; the tree is rebuilt from variable 1. */
  function startOver() {
    nodes = new Map();
    actions = new Map();
    outbox = [];
    outboxUser = false;
    nextId = 2;
    computedNames = new Set();
    const list = el("ul", { class: "lb-fields lb-root-list" });
    const root = new Node(null, "", "root");
    list.append(root.li);
    treeEl.replaceChildren(list);
    treeEl.setAttribute("aria-busy", "true");
    send("watch", { varId: 1 }, true);
  }

  function connect() {
    reconnectTimer = null;
    setConnection("connecting", failures ? "Reconnecting…" : "Connecting…");
    let opened = false;
    const socket = new WebSocket(wsUrl);
    ws = socket;
    socket.addEventListener("open", () => {
      if (ws !== socket) return;
      opened = true;
      setConnection("open", "Connected");
      if (lastDrop && lastDrop.code === "session-crashed") {
        showConnectionBanner("The app crashed and was restarted; its state starts afresh.", "warn",
          true, lastDrop.code, lastDrop.description);
        lastDrop = null;
      } else if (lastDrop) {
        showConnectionBanner("Reconnected after " + lastDrop.description + ".", "warn", true);
        lastDrop = null;
      } else {
        connBannerEl.hidden = true;
      }
      startOver();
    });
    socket.addEventListener("message", (ev) => {
      if (ws !== socket) return;
      let parsed;
      try {
        parsed = JSON.parse(ev.data);
      } catch (e) {
        addErrorBanner("bad-frame", "the server sent something that is not JSON", "");
        return;
      }
      for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
        try {
          handle(m);
        } catch (e) {
          console.error("luabroker: handling", m, e);
          addErrorBanner("page-error", String(e && e.message ? e.message : e), "");
        }
      }
    });
    socket.addEventListener("close", (ev) => {
      if (ws !== socket) return;
      ws = null;
      failures++;
      const crashed = lastDrop && lastDrop.code === "session-crashed";
      const reason = closeReason(ev) + (ev.reason ? " (" + ev.reason + ")" : "");
      if (!crashed) lastDrop = { code: "closed", description: reason };
      if (!opened || ev.code === 1001 || ev.code === 1011) {
        // Maybe the session itself is gone (expired, or the server restarted without it).
        checkSessionThenRetry(reason, crashed);
      } else {
        scheduleReconnect(reason, crashed);
      }
    });
  }

  async function checkSessionThenRetry(reason, crashed) {
    try {
      const r = await fetch("/" + sessionId, { method: "HEAD", cache: "no-store" });
      if (r.status === 404) {
        sessionGone = true;
        setConnection("closed", "Session ended");
        connBannerEl.className = "lb-banner lb-banner-error";
        connBannerEl.replaceChildren(
          el("span", { class: "lb-description", text: "This session has ended (" + reason + "). " }),
          el("a", { href: "/", text: "Start a new session" }));
        connBannerEl.hidden = false;
        return;
      }
    } catch (e) {
      // The server is unreachable: keep trying.
    }
    scheduleReconnect(reason, crashed);
  }

  function scheduleReconnect(reason, crashed) {
    if (sessionGone || reconnectTimer) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 8));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    const seconds = Math.max(1, Math.round(delay / 1000));
    setConnection("closed", "Disconnected");
    const again = "Reconnecting in " + seconds + " s…";
    if (crashed) {
      showConnectionBanner("The session's app crashed. " + again, "error", false, lastDrop.code,
        lastDrop.description);
    } else {
      showConnectionBanner("Disconnected: " + reason + ". " + again, "warn");
    }
    const retry = el("button", { type: "button", class: "lb-retry", text: "Reconnect now" });
    retry.addEventListener("click", () => {
      clearTimeout(reconnectTimer);
      connect();
    });
    connBannerEl.append(retry);
    reconnectTimer = setTimeout(connect, delay);
  }

  if (!/^[0-9a-f]{32}$/.test(sessionId)) {
    setConnection("closed", "No session");
    showConnectionBanner("This address does not name a session.", "error");
    return;
  }
  connect();
})();
