// @ts-check
/**
 * variables.js: the viewdef renderer's cache of the variables this tab created (served at
 * /_luabroker/variables.js), on top of the protocol client (client.js).
 *
 * Every binding of a rendered viewdef is a variable: a child of the view's variable with a
 * `path` (and the path's properties), created here with an id the tab vends and watched by the
 * server, which pushes its value and properties as `update`s. The cache keeps each variable's
 * last value and properties (a binding reads `namespace`/`fallbackNamespace` of its parent from
 * here), who listens to it, and its children, so that destroying a view's variable also drops
 * everything below it: the server destroys the descendants itself (and acknowledges each).
 *
 * Before an `update` goes out, the cached value is set, so a binding never sends the same
 * value twice and an echo of it changes nothing.
 */

/** @typedef {import("./client.js").Client} Client */
/** @typedef {import("./client.js").Message} Message */

/**
 * What changed in one `update`: whether the value did, and which properties.
 * @typedef {{value: boolean, properties: string[]}} Change
 */

/**
 * An `error` the server reported for a variable; `null` once a later update clears it.
 * @typedef {{code: string, description: string} | null} VarError
 */

export class Variable {
  /**
   * @param {number} id
   * @param {number | null} parentId
   * @param {Record<string, string>} properties
   */
  constructor(id, parentId, properties) {
    this.id = id;
    this.parentId = parentId;
    /** @type {any} */
    this.value = undefined;
    this.hasValue = false;
    /** @type {Record<string, string>} */
    this.properties = { ...properties };
    /** @type {Set<(v: Variable, change: Change) => void>} */
    this.listeners = new Set();
    /** @type {Set<(error: VarError) => void>} */
    this.errorListeners = new Set();
    /** @type {Set<number>} */
    this.children = new Set();
    /** @type {VarError} */
    this.error = null;
  }

  /** The variable's `type` property (the Lua object's type), or "" when it has none. */
  get type() {
    return this.properties.type || "";
  }
}

export class Variables {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
    /** @type {Map<number, Variable>} */
    this.vars = new Map();
  }

  /** A new connection: nothing of the old one exists any more; variable 1 is watched again. */
  reset() {
    this.vars = new Map();
    this.vars.set(1, new Variable(1, null, {}));
    this.client.send("watch", { varId: 1 }, true);
  }

  /** @param {number} id */
  get(id) {
    return this.vars.get(id);
  }

  /**
   * Creates a child variable of `parentId`, watched by the server unless `nowatch`.
   * @param {number} parentId
   * @param {Record<string, string>} properties
   * @param {{nowatch?: boolean, userEvent?: boolean}} [options]
   * @returns {Variable}
   */
  create(parentId, properties, options) {
    const id = this.client.newId();
    const v = new Variable(id, parentId, properties);
    this.vars.set(id, v);
    this.vars.get(parentId)?.children.add(id);
    /** @type {Record<string, any>} */
    const data = { id, parentId, properties };
    if (options && options.nowatch) data.nowatch = true;
    this.client.send("create", data, !!(options && options.userEvent));
    return v;
  }

  /**
   * Writes `value` to the variable (for an action: calls it). Returns false, sending nothing,
   * when the value is the one already held and `always` is not set.
   * @param {number} id
   * @param {any} value
   * @param {boolean} [always] send even an unchanged value (actions, events)
   */
  update(id, value, always) {
    const v = this.vars.get(id);
    if (!v) return false;
    if (!always && v.hasValue && sameValue(v.value, value)) return false;
    if (!always) {
      v.value = value;
      v.hasValue = true;
    }
    this.client.send("update", { varId: id, value }, true);
    return true;
  }

  /**
   * Destroys a variable and, on the server, everything below it; drops them all from the cache.
   * @param {number} id
   */
  destroy(id) {
    if (!this.vars.has(id)) return;
    this.client.send("destroy", { varId: id }, false);
    this.forget(id);
  }

  /**
   * Drops a variable and its descendants from the cache (their listeners are silenced).
   * @param {number} id
   */
  forget(id) {
    const v = this.vars.get(id);
    if (!v) return;
    this.vars.delete(id);
    if (v.parentId !== null) this.vars.get(v.parentId)?.children.delete(id);
    v.listeners.clear();
    v.errorListeners.clear();
    for (const child of [...v.children]) this.forget(child);
  }

  /**
   * Calls `fn` on every update of the variable; returns the function that stops it.
   * @param {number} id
   * @param {(v: Variable, change: Change) => void} fn
   */
  listen(id, fn) {
    const v = this.vars.get(id);
    if (!v) return () => {};
    v.listeners.add(fn);
    return () => v.listeners.delete(fn);
  }

  /**
   * Calls `fn` when the server reports an error for the variable, and with null when a later
   * update clears it; returns the function that stops it.
   * @param {number} id
   * @param {(error: VarError) => void} fn
   */
  listenErrors(id, fn) {
    const v = this.vars.get(id);
    if (!v) return () => {};
    v.errorListeners.add(fn);
    return () => v.errorListeners.delete(fn);
  }

  /**
   * Applies a server message to the cache. Returns true when it concerned a known variable.
   * @param {Message} message
   */
  handle(message) {
    const data = message.data || {};
    switch (message.type) {
      case "update": return this.onUpdate(data);
      case "destroy": {
        // Our own destroys are acknowledged per variable: those are gone already.
        const known = this.vars.has(data.varId);
        this.forget(data.varId);
        return known;
      }
      case "error": {
        const v = data.varId !== undefined ? this.vars.get(data.varId) : undefined;
        if (!v) return false;
        v.error = { code: data.code || "error", description: data.description || "" };
        for (const fn of [...v.errorListeners]) fn(v.error);
        return true;
      }
      default:
        return false;
    }
  }

  /** @param {{varId: number, value?: any, properties?: Record<string, string>}} data */
  onUpdate(data) {
    const v = this.vars.get(data.varId);
    if (!v) return false;
    /** @type {string[]} */
    const props = [];
    for (const [k, p] of Object.entries(data.properties || {})) {
      if (p === "") delete v.properties[k];
      else v.properties[k] = p;
      props.push(k);
    }
    const hasValue = "value" in data;
    if (hasValue) {
      v.value = data.value;
      v.hasValue = true;
      if (v.error) {
        v.error = null;
        for (const fn of [...v.errorListeners]) fn(null);
      }
    }
    const change = { value: hasValue, properties: props };
    for (const fn of [...v.listeners]) fn(v, change);
    return true;
  }
}

/**
 * Values as the protocol carries them: scalars by value, arrays and `{"obj": N}` by content.
 * @param {any} a
 * @param {any} b
 */
export function sameValue(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
