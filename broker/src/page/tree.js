// @ts-check
/**
 * tree.js: the object-tree view of the built-in page (served at /_luabroker/tree.js). It shows
 * any app, with or without viewdefs, as a live, collapsible tree, speaking the variable
 * protocol through a `Client` (client.js):
 *
 *   - variable 1 (the app) is watched; for a value {"obj": N} the view asks `getObjects` for
 *     the object's fields and methods, and creates one child variable per field (path
 *     "<field>"), so every later change is pushed by the server as an `update`;
 *   - nested objects are fetched only when expanded (the first levels start expanded); arrays
 *     get one child variable per element (path "0", "1", …);
 *   - scalar fields are editable (text, number, checkbox); an edit is an `update` with a value;
 *   - each method of an object is a button; a click creates (once) a child variable with path
 *     "<method>()" and access "action", and sends `update` with value null, which calls it;
 *   - methods named in variable 1's `computed` property (comma-separated, e.g. set by
 *     `session:createAppVariable(app, {computed = "remaining"})`) are shown as live read-only
 *     values instead (path "<method>()", access "r"), since a button's result would be thrown
 *     away;
 *   - `error` messages become banners (status.js) naming the field or method they are about.
 *
 * Hooks for tests and tools: every node of the tree is an element with `data-path` (the field
 * path from the app, e.g. "count", "todos.0.text"), `data-var-id`, `data-shape`
 * (scalar/object/array) and, for scalars, `data-value` (the value as JSON) and `data-text` (as
 * shown); each method button has `data-call` ("increment", "todos.0.toggle") and
 * `data-method`.
 */

import { el, placeInOrder } from "./dom.js";

/** @typedef {import("./client.js").Client} Client */
/** @typedef {import("./client.js").Message} Message */
/** @typedef {import("./status.js").Status} Status */
/** @typedef {"root" | "field" | "element" | "computed"} Kind */
/** @typedef {"scalar" | "object" | "array" | "json"} Shape */

/** Objects this deep or shallower start expanded (0 = the app); deeper ones wait for a click. */
const AUTO_EXPAND_DEPTH = 2;
/** Methods every prototype has that are not the app's actions. */
const HIDDEN_METHODS = new Set(["new", "mutate", "init"]);
/** Field names a path can address (`a.b`, not `a-b` nor `1`): others cannot be bound. */
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

// Order of an object's rows: text and numbers, then flags, computed values, the method
// buttons, and nested objects and arrays last (each group by name).
const RANK_COMPUTED = 2;
const RANK_METHODS = 3;

/** @param {unknown} v */
function rankOf(v) {
  if (v !== null && typeof v === "object") return 4;
  return typeof v === "boolean" ? 1 : 0;
}

/**
 * @param {any} v
 * @returns {Shape}
 */
function shapeOf(v) {
  if (Array.isArray(v)) return "array";
  if (v !== null && typeof v === "object") return typeof v.obj === "number" ? "object" : "json";
  return "scalar";
}

/** @param {unknown} v */
function displayText(v) {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "string") return v;
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/**
 * @param {string} base
 * @param {string} key
 */
function joinPath(base, key) {
  return base === "" ? key : base + "." + key;
}

/**
 * One variable shown in the tree: the app (kind "root"), an object field ("field"), an array
 * element ("element") or a computed method ("computed").
 */
class Node {
  /**
   * @param {TreeView} view
   * @param {Node | null} parent
   * @param {string} key
   * @param {Kind} kind
   */
  constructor(view, parent, key, kind) {
    this.view = view;
    this.id = parent ? view.client.newId() : 1;
    this.parent = parent;
    this.key = key;
    this.kind = kind;
    /** @type {number} */
    this.depth = parent ? parent.depth + 1 : 0;
    /** @type {string} */
    this.path = parent ? joinPath(parent.path, key) : "";
    /** @type {any} */
    this.value = undefined;
    /** @type {Shape | null} */
    this.shape = null;
    /** @type {Record<string, string>} */
    this.props = {};
    /** Child nodes by field name / element index / "name()". @type {Map<string, Node>} */
    this.children = new Map();
    /** Method name → action variable id (created on first click). @type {Map<string, number>} */
    this.actionIds = new Map();
    /** @type {number | null} */
    this.objId = null;
    /** The object whose fields were last laid out here (null: not yet). @type {number | null} */
    this.loadedObj = null;
    this.sortRank = 0;
    this.dirty = false;
    /** @type {HTMLElement | null} */ this.body = null;
    /** @type {HTMLElement | null} */ this.typeEl = null;
    /** @type {HTMLElement | null} */ this.summaryEl = null;
    /** @type {HTMLElement | null} */ this.toggle = null;
    /** @type {HTMLElement | null} */ this.list = null;
    /** @type {HTMLElement | null} */ this.methodsEl = null;
    /** @type {HTMLElement | null} */ this.methodsLi = null;
    /** @type {HTMLInputElement | HTMLOutputElement | null} */ this.control = null;
    /** @type {string} */ this.controlType = "";
    view.nodes.set(this.id, this);
    this.li = el("li", {
      class: "lb-node lb-" + this.kind,
      "data-path": this.path,
      "data-var-id": this.id,
      "data-kind": this.kind,
      "data-shape": "pending",
    });
    this.row = el("div", { class: "lb-row" });
    this.li.append(this.row);
    this.row.replaceChildren(
      el("span", { class: "lb-key", text: this.label() }),
      el("span", { class: "lb-pending", text: "…" })
    );
  }

  get client() {
    return this.view.client;
  }

  get expanded() {
    if (this.kind === "root") return true;
    const chosen = this.view.expandedByUser.get(this.path);
    return chosen !== undefined ? chosen : this.depth <= AUTO_EXPAND_DEPTH;
  }

  label() {
    return this.kind === "root" ? "app" : this.key;
  }

  /**
   * The server says the variable's value is now `v`.
   * @param {any} v
   */
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
    /** @type {HTMLInputElement | HTMLOutputElement} */
    let control;
    const v = this.value;
    if (this.kind === "computed" || this.shape === "json") {
      control = /** @type {HTMLOutputElement} */ (el("output", { class: "lb-value lb-readonly", id: inputId }));
    } else if (typeof v === "boolean") {
      const box = /** @type {HTMLInputElement} */ (el("input", { class: "lb-value lb-bool", id: inputId, type: "checkbox" }));
      box.addEventListener("change", () => this.commit(box.checked, true));
      control = box;
    } else if (typeof v === "number") {
      control = /** @type {HTMLInputElement} */ (el("input", {
        class: "lb-value lb-number", id: inputId, type: "number", step: "any",
        inputmode: "decimal",
      }));
      control.addEventListener("input", () => { this.dirty = true; });
      control.addEventListener("change", () => this.commitEdit());
    } else {
      control = /** @type {HTMLInputElement} */ (el("input", {
        class: "lb-value lb-text" + (v === null ? " lb-nil" : ""), id: inputId, type: "text",
        placeholder: v === null ? "nil" : null, spellcheck: "false", autocomplete: "off",
      }));
      control.addEventListener("input", () => { this.dirty = true; });
      control.addEventListener("change", () => this.commitEdit());
    }
    // (`dataset.valueOf` would read as Object.prototype.valueOf to the type checker)
    control.setAttribute("data-value-of", this.path);
    this.control = control;
    this.controlType = typeof v;
    this.row.replaceChildren(label, control);
  }

  /** @param {any} v */
  showScalar(v) {
    // A string that became a number (or nil) needs another kind of input.
    if (this.kind !== "computed" && this.shape !== "json" && typeof v !== this.controlType) {
      this.renderScalar();
    }
    this.li.dataset.value = JSON.stringify(v === undefined ? null : v);
    this.li.dataset.text = displayText(v);
    const c = this.control;
    if (!c) return;
    if (c instanceof HTMLOutputElement) {
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
    if (!(c instanceof HTMLInputElement)) return undefined;
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

  /**
   * @param {any} v
   * @param {boolean} userEvent
   */
  commit(v, userEvent) {
    this.dirty = false;
    if (v === this.value) return;
    this.value = v;
    this.li.dataset.value = JSON.stringify(v);
    this.li.dataset.text = displayText(v);
    this.client.send("update", { varId: this.id, value: v }, userEvent);
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

  /** @param {boolean} open */
  setExpanded(open) {
    this.view.expandedByUser.set(this.path, open);
    this.toggle?.setAttribute("aria-expanded", String(open));
    if (this.body) this.body.hidden = !open;
    if (open && this.shape === "object" && this.loadedObj !== this.objId) {
      this.client.send("getObjects", { objIds: [this.objId] }, true);
    }
    if (open && this.shape === "array") this.showArray(this.value);
  }

  showType() {
    if (!this.typeEl) return;
    const t = this.props.type || "";
    this.typeEl.textContent = t;
    this.typeEl.hidden = !t;
  }

  /** @param {number} obj */
  showObject(obj) {
    this.li.dataset.obj = String(obj);
    delete this.li.dataset.value;
    delete this.li.dataset.text;
    if (this.summaryEl) this.summaryEl.textContent = "";
    if (obj === this.objId) return;
    this.objId = obj;
    // Lazily: only an expanded node asks what the object holds.
    if (this.expanded) this.client.send("getObjects", { objIds: [obj] }, false);
  }

  /**
   * The `getObjects` answer for the object this node shows: lay out fields and methods.
   * @param {number} obj
   * @param {Record<string, any>} fields
   * @param {string[]} methods
   */
  layoutObject(obj, fields, methods) {
    const identityChanged = this.loadedObj !== null && this.loadedObj !== obj;
    this.loadedObj = obj;
    const names = Object.keys(fields).filter(
      (k) => FIELD_NAME.test(k) && !(k === "type" && typeof fields[k] === "string")
    );
    /** @type {Set<string>} */
    const wanted = new Set(names);
    const visible = methods.filter((m) => FIELD_NAME.test(m) && !m.startsWith("_") && !HIDDEN_METHODS.has(m));
    const computed = visible.filter((m) => this.view.computedNames.has(m));
    for (const m of computed) wanted.add(m + "()");
    // Fields of another object that this one lacks go; a field merely set to nil stays.
    for (const [key, child] of this.children) {
      if (!wanted.has(key) && (identityChanged || child.kind === "computed")) child.destroy();
    }
    for (const name of names) {
      const child = this.children.get(name) || this.addChild(name, "field", { path: name });
      child.sortRank = rankOf(fields[name]);
    }
    for (const m of computed) {
      const key = m + "()";
      const child = this.children.get(key) || this.addChild(key, "computed", { path: key, access: "r" });
      child.sortRank = RANK_COMPUTED;
    }
    this.sortChildren();
    this.layoutMethods(visible.filter((m) => !this.view.computedNames.has(m)));
  }

  /**
   * @param {string} key
   * @param {Kind} kind
   * @param {Record<string, string>} properties
   */
  addChild(key, kind, properties) {
    const child = new Node(this.view, this, key, kind);
    this.children.set(key, child);
    this.list?.insertBefore(child.li, this.methodsLi || null);
    this.client.send("create", { id: child.id, parentId: this.id, properties }, false);
    return child;
  }

  sortChildren() {
    if (!this.list) return;
    const kids = [...this.children.values()].sort(
      (a, b) => a.sortRank - b.sortRank || a.key.localeCompare(b.key)
    );
    const items = kids.filter((k) => k.sortRank < RANK_METHODS).map((k) => k.li);
    if (this.methodsLi) items.push(this.methodsLi);
    for (const k of kids) if (k.sortRank > RANK_METHODS) items.push(k.li);
    placeInOrder(this.list, items);
  }

  /**
   * Buttons are kept across layouts: moving or replacing one would take its focus away.
   * @param {string[]} methods
   */
  layoutMethods(methods) {
    const methodsEl = this.methodsEl;
    if (!methodsEl) return;
    methods.sort((a, b) => a.localeCompare(b));
    /** @type {Map<string, HTMLElement>} */
    const existing = new Map();
    for (const b of methodsEl.querySelectorAll(":scope > .lb-method")) {
      if (b instanceof HTMLElement) existing.set(b.dataset.method || "", b);
    }
    const buttons = methods.map((m) => {
      const kept = existing.get(m);
      if (kept) return kept;
      const b = el("button", {
        type: "button", class: "lb-method", "data-method": m,
        "data-call": joinPath(this.path, m),
        title: "Call " + joinPath(this.path, m) + "()",
      }, el("span", { class: "lb-method-name", text: m }), el("span", { class: "lb-parens", text: "()" }));
      b.addEventListener("click", () => this.call(m));
      return b;
    });
    for (const [m, b] of existing) if (!methods.includes(m)) b.remove();
    placeInOrder(methodsEl, buttons);
    methodsEl.hidden = buttons.length === 0;
    const empty = this.children.size === 0 && buttons.length === 0;
    if (this.summaryEl) this.summaryEl.textContent = empty ? "empty" : "";
  }

  /**
   * A method button: commit pending edits, then call the method through its action variable.
   * @param {string} method
   */
  call(method) {
    this.view.flushEdits();
    let id = this.actionIds.get(method);
    if (id === undefined) {
      id = this.client.newId();
      this.actionIds.set(method, id);
      this.view.actions.set(id, { owner: this, method });
      this.client.send("create", {
        id, parentId: this.id, nowatch: true,
        properties: { path: method + "()", access: "action" },
      }, true);
    }
    this.client.send("update", { varId: id, value: null }, true);
    // A method may add fields the layout has not seen: look again once it has run.
    this.client.send("getObjects", { objIds: [this.objId] }, true);
  }

  /** @param {any[]} items */
  showArray(items) {
    delete this.li.dataset.obj;
    this.li.dataset.length = String(items.length);
    if (this.summaryEl) this.summaryEl.textContent = items.length === 1 ? "1 item" : items.length + " items";
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
    this.client.send("destroy", { varId: this.id }, false);
    this.forget();
  }

  /**
   * Drops this node and everything below it from the page and the maps. The server removes
   * the descendants of a destroyed variable itself (and acknowledges each: see onDestroy).
   */
  forget() {
    this.dropChildren(false);
    this.view.nodes.delete(this.id);
    if (this.parent && this.parent.children.get(this.key) === this) {
      this.parent.children.delete(this.key);
    }
    this.li.remove();
  }

  /**
   * Drops the child and action variables; `tellServer` when this variable itself stays.
   * @param {boolean} tellServer
   */
  dropChildren(tellServer) {
    for (const child of [...this.children.values()]) {
      if (tellServer) this.client.send("destroy", { varId: child.id }, false);
      child.forget();
    }
    this.children.clear();
    for (const id of this.actionIds.values()) {
      if (tellServer) this.client.send("destroy", { varId: id }, false);
      this.view.actions.delete(id);
    }
    this.actionIds.clear();
    this.loadedObj = null;
  }
}

/** The tree of one connection, rebuilt from variable 1 by `start` on every connection. */
export class TreeView {
  /**
   * @param {HTMLElement} container where the tree goes (its content is replaced)
   * @param {Client} client
   * @param {Status} status
   */
  constructor(container, client, status) {
    this.container = container;
    this.client = client;
    this.status = status;
    /** varId → Node for every variable this view created (and 1, the app). @type {Map<number, Node>} */
    this.nodes = new Map();
    /** varId → the owner and method behind an action variable. @type {Map<number, {owner: Node, method: string}>} */
    this.actions = new Map();
    /** @type {Set<string>} */
    this.computedNames = new Set();
    /** path → expanded?, for nodes the user opened or closed by hand; survives reconnects. @type {Map<string, boolean>} */
    this.expandedByUser = new Map();
  }

  /**
   * Builds the tree afresh from variable 1 (on a new connection); `watch`: ask for variable 1
   * (false when the caller already watches it and hands its first update to `handle`).
   * @param {boolean} [watch]
   */
  start(watch = true) {
    this.nodes = new Map();
    this.actions = new Map();
    this.computedNames = new Set();
    const list = el("ul", { class: "lb-fields lb-root-list" });
    const root = new Node(this, null, "", "root");
    list.append(root.li);
    this.container.replaceChildren(list);
    this.container.setAttribute("aria-busy", "true");
    if (watch) this.client.send("watch", { varId: 1 }, true);
  }

  /** @param {Message} message */
  handle(message) {
    const data = message && message.data ? message.data : {};
    switch (message && message.type) {
      case "update": return this.onUpdate(data);
      case "destroy": return this.onDestroy(data.varId);
      case "error": return this.onError(data);
      case "get":
        for (const v of data.variables || []) this.onUpdate({ varId: v.id, value: v.value, properties: v.properties });
        return;
      case "getObjects":
        for (const o of data.objects || []) this.onObject(o);
        return;
      default:
        console.warn("luabroker: unknown message", message);
    }
  }

  /** Commits every input someone has typed into but not yet committed. */
  flushEdits() {
    for (const node of this.nodes.values()) {
      if (node.dirty) node.commitEdit();
    }
  }

  /** @param {{varId: number, value?: any, properties?: Record<string, string>}} data */
  onUpdate(data) {
    const node = this.nodes.get(data.varId);
    if (!node) return;
    if (data.properties) {
      for (const [k, v] of Object.entries(data.properties)) {
        if (v === "") delete node.props[k];
        else node.props[k] = v;
      }
      node.showType();
      if (node.id === 1 && "computed" in data.properties) this.setComputed(node.props.computed || "");
    }
    if ("value" in data) {
      node.setValue(data.value);
      if (node.id === 1) {
        this.client.healthy();
        this.container.setAttribute("aria-busy", "false");
        this.container.querySelector(".lb-placeholder")?.remove();
      }
    }
  }

  /** @param {string} list */
  setComputed(list) {
    const names = new Set(list.split(",").map((s) => s.trim()).filter(Boolean));
    if ([...names].join() === [...this.computedNames].join()) return;
    this.computedNames = names;
    // Lay every loaded object out again with the new split of methods.
    for (const node of this.nodes.values()) {
      if (node.shape === "object" && node.loadedObj !== null) {
        this.client.send("getObjects", { objIds: [node.objId] }, false);
      }
    }
  }

  /** @param {number} varId */
  onDestroy(varId) {
    const action = this.actions.get(varId);
    if (action) {
      const { owner, method } = action;
      this.actions.delete(varId);
      if (owner.actionIds.get(method) === varId) owner.actionIds.delete(method);
      return;
    }
    const node = this.nodes.get(varId);
    if (!node) return; // one we already dropped: this is the server's acknowledgement
    if (node.id === 1) {
      this.nodes.delete(1);
      this.container.replaceChildren(el("p", { class: "lb-placeholder", text: "The app variable was destroyed." }));
      return;
    }
    node.forget();
  }

  /** @param {{obj: number, value?: Record<string, any>, methods?: string[]}} o */
  onObject(o) {
    for (const node of this.nodes.values()) {
      if (node.shape === "object" && node.objId === o.obj && node.expanded) {
        node.layoutObject(o.obj, o.value || {}, o.methods || []);
      }
    }
  }

  /** @param {{varId?: number, code?: string, description?: string}} data */
  onError(data) {
    const code = data.code || "error";
    const description = data.description || "";
    const node = data.varId !== undefined ? this.nodes.get(data.varId) : undefined;
    const action = data.varId !== undefined ? this.actions.get(data.varId) : undefined;
    let where = "";
    if (node) {
      node.li.classList.add("lb-invalid");
      node.li.title = code + ": " + description;
      where = node.path || "app";
    } else if (action) {
      where = joinPath(action.owner.path, action.method) + "()";
    }
    this.status.addError(code, description, where);
  }
}
