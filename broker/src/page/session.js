// @ts-check
/**
 * session.js: the entry module of the built-in session page (served at
 * /_luabroker/session.js, loaded as `<script type="module">`). It wires the three parts: the
 * protocol client (client.js) that owns the WebSocket to /ws/<id>, the connection and error
 * banners (status.js), and the view that renders the app (tree.js). Every part is a
 * hand-written ES module with `// @ts-check`, embedded in the executable; there is no build step.
 */

import { Client } from "./client.js";
import { Status } from "./status.js";
import { TreeView } from "./tree.js";

const sessionId = location.pathname.split("/")[1] || "";
const status = new Status();
const treeEl = document.getElementById("lb-tree");

if (!/^[0-9a-f]{32}$/.test(sessionId) || !treeEl) {
  status.noSession();
} else {
  const client = new Client(sessionId, status);
  const view = new TreeView(treeEl, client, status);
  client.onStart = () => view.start();
  client.onMessage = (m) => view.handle(m);
  client.connect();
}
