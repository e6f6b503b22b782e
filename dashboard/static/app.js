// auditseal dashboard: renders the server-sent feed and the verification answers.
// Everything shown comes from event data, which an attacker can influence: it is only ever
// inserted as text (Node.append / textContent), never as markup.
"use strict";

const view = { blocks: new Map(), alerts: [], activity: null, status: {}, fresh: new Set() };

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function short(hex, n = 10) {
  if (typeof hex !== "string") return "";
  return hex.length > n + 2 ? hex.slice(0, n) + "…" : hex;
}

function when(ms) {
  if (typeof ms !== "number") return "";
  const d = new Date(ms);
  return isNaN(d.getTime()) ? String(ms) : d.toLocaleString();
}

function link(text, onclick, title) {
  return el("button", { class: "link", type: "button", title, onclick }, text);
}

function blockKey(log, number) {
  return JSON.stringify([log, number]);
}

function confirmations(anchor) {
  const head = view.status.chain_head;
  if (typeof head !== "number") return null;
  return Math.max(0, head - anchor.block_number + 1);
}

// --- the live panels ----------------------------------------------------------------------

function anchorCell(anchor) {
  if (!anchor) return el("span", { class: "pending" }, "not anchored yet");
  const conf = confirmations(anchor);
  return el(
    "span",
    { title: `anchor ${anchor.seq}, chain ${anchor.chain_id}, block ${anchor.block_number}` },
    el("span", { class: "mono" }, short(anchor.tx_hash, 12)),
    " ",
    el("span", { class: "muted" }, `#${anchor.seq}`),
    " · ",
    el("span", { class: "ok" }, conf === null ? "confirmations ?" : `${conf} conf.`),
  );
}

function renderBlocks() {
  const body = clear(document.querySelector("#blocks tbody"));
  const rows = [...view.blocks.values()].sort(
    (a, b) => b.sealed_at_ms - a.sealed_at_ms || (a.log < b.log ? -1 : 1) || b.number - a.number,
  );
  for (const b of rows) {
    const key = blockKey(b.log, b.number);
    const row = el(
      "tr",
      {
        class: "block-row" + (view.fresh.has(key) ? " fresh" : ""),
        dataset: { log: b.log, number: String(b.number) },
        tabindex: 0,
        onclick: () => openBlock(b.log, b.number),
      },
      el("td", { class: "mono" }, b.log),
      el("td", {}, b.number),
      el("td", { title: `leaves [${b.start}, ${b.end})` }, b.end),
      el("td", {}, b.events),
      el("td", {}, when(b.sealed_at_ms)),
      el("td", {}, anchorCell(b.anchor)),
    );
    row.addEventListener("keydown", (e) => {
      if (e.key === "Enter") openBlock(b.log, b.number);
    });
    body.append(row);
  }
  view.fresh.clear();
  document.getElementById("blocks-empty").hidden = rows.length > 0;
}

function renderActivity() {
  const list = clear(document.getElementById("sources"));
  const a = view.activity;
  if (!a) return;
  document.getElementById("sources-window").textContent = `(last ${a.minutes} min)`;
  const peak = Math.max(1, ...a.sources.flatMap((s) => s.per_minute));
  for (const s of a.sources) {
    const spark = el("span", { class: "spark", title: s.per_minute.join(" / ") + " per minute" });
    for (const n of s.per_minute) {
      const bar = el("span");
      bar.style.height = `${Math.round((20 * n) / peak)}px`;
      spark.append(bar);
    }
    list.append(el("li", {}, el("span", { class: "name", title: s.source }, s.source),
      el("span", {}, s.total), spark));
  }
  if (a.sources.length === 0) list.append(el("li", { class: "muted" }, "No event in the window."));
}

function renderAlerts() {
  const list = clear(document.getElementById("alerts"));
  for (const a of [...view.alerts].reverse()) {
    const where = [];
    if (a.log) where.push(el("span", { class: "mono" }, a.log));
    if (a.log && typeof a.block === "number") {
      where.push(" ", link(`block ${a.block}`, () => openBlock(a.log, a.block)));
    }
    list.append(el("li", {},
      el("span", { class: `kind ${a.severity || ""}` }, a.severity ? `${a.kind} (${a.severity})` : a.kind),
      ...where,
      el("div", {}, a.detail),
      el("div", { class: "muted" }, when(a.at_ms))));
  }
  document.getElementById("alerts-empty").hidden = view.alerts.length > 0;
}

function renderStatus(live) {
  const conn = document.getElementById("conn");
  const broker = view.status.broker;
  if (!live) {
    conn.textContent = "reconnecting";
    conn.className = "pill down";
  } else if (broker && broker !== "connected") {
    conn.textContent = broker === "connecting" ? "connecting to Kafka" : "Kafka: " + broker;
    conn.className = "pill down";
  } else {
    conn.textContent = "live";
    conn.className = "pill live";
  }
  const head = view.status.chain_head;
  document.getElementById("head").textContent =
    typeof head === "number" ? `chain head ${head}` : "chain: not followed";
  const errors = view.status.errors || {};
  const total = (errors.sealed || 0) + (errors.anchors || 0) + (errors.alerts || 0);
  const err = document.getElementById("errors");
  err.textContent = total ? `${total} unreadable record(s)` : "";
  err.title = errors.last || "";
}

// --- the session: a read token exchanged for an HttpOnly cookie ----------------------------

let source = null;

async function currentReader() {
  const response = await fetch("/api/session", { headers: { Accept: "application/json" } });
  if (response.status === 401 || response.status === 403) return null;
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return (await response.json()).reader;
}

async function login(token) {
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token }),
  });
  let body = {};
  try {
    body = await response.json();
  } catch (e) {
    body = {};
  }
  if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
  return body.reader;
}

function showLogin(message) {
  if (source) {
    source.close();
    source = null;
  }
  document.querySelector("main").hidden = true;
  document.getElementById("detail").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("reader").textContent = "";
  document.getElementById("logout").hidden = true;
  const conn = document.getElementById("conn");
  conn.textContent = "logged out";
  conn.className = "pill down";
  document.body.dataset.auth = "out";
  document.getElementById("login-token").focus();
}

function loggedIn(reader) {
  document.getElementById("login").hidden = true;
  document.querySelector("main").hidden = false;
  document.getElementById("reader").textContent = reader === "anyone" ? "" : reader;
  document.getElementById("logout").hidden = !String(reader).startsWith("token:");
  document.body.dataset.auth = "in";
  connect();
}

async function start() {
  // A link such as http://host:8088/#token=...: the fragment never reaches the server or its
  // logs; it is taken out of the address bar and history at once, then traded for the cookie.
  if (location.hash.startsWith("#token=")) {
    let token = "";
    try {
      token = decodeURIComponent(location.hash.slice("#token=".length));
    } catch (e) {
      token = "";
    }
    history.replaceState(null, "", location.pathname + location.search);
    try {
      loggedIn(await login(token));
    } catch (e) {
      showLogin(e.message);
    }
    return;
  }
  let reader = null;
  try {
    reader = await currentReader();
  } catch (e) {
    showLogin(`the dashboard did not answer (${e.message}); reload to retry`);
    return;
  }
  if (reader) loggedIn(reader);
  else showLogin("");
}

// --- the live feed ---------------------------------------------------------------------------

function connect() {
  if (source) source.close();
  source = new EventSource("/api/events");
  const on = (kind, fn) =>
    source.addEventListener(kind, (e) => {
      fn(JSON.parse(e.data));
    });
  on("snapshot", (s) => {
    view.blocks = new Map(s.blocks.map((b) => [blockKey(b.log, b.number), b]));
    view.alerts = s.alerts;
    view.activity = s.activity;
    view.status = s.status;
    renderBlocks();
    renderAlerts();
    renderActivity();
    renderStatus(true);
    document.body.dataset.live = "1";
  });
  on("block", (b) => {
    const key = blockKey(b.log, b.number);
    if (!view.blocks.has(key)) view.fresh.add(key);
    view.blocks.set(key, b);
    while (view.blocks.size > 1000) view.blocks.delete(view.blocks.keys().next().value);
    renderBlocks();
  });
  on("alert", (a) => {
    view.alerts.push(a);
    if (view.alerts.length > 200) view.alerts.shift();
    renderAlerts();
  });
  on("activity", (a) => {
    view.activity = a;
    renderActivity();
  });
  on("status", (s) => {
    view.status = s;
    renderStatus(true);
    renderBlocks();
  });
  source.onerror = async () => {
    renderStatus(false);
    // The stream ends when the token is revoked or expires (401): ask for a new one.
    try {
      if ((await currentReader()) === null) {
        showLogin("The session ended (the token was revoked or expired): log in again.");
      }
    } catch (e) {
      // the server is down: EventSource keeps retrying
    }
  };
  source.onopen = () => renderStatus(true);
}

// --- the detail panel: a block's report, an event's proof -----------------------------------

function showDetail(...children) {
  const detail = document.getElementById("detail");
  clear(document.getElementById("detail-body")).append(...children);
  detail.hidden = false;
  detail.scrollIntoView({ behavior: "smooth", block: "start" });
}

async function fetchJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    showLogin("The session ended (the token was revoked or expired): log in again.");
  }
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(`${response.status}: not JSON`);
  }
  if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
  return body;
}

function pairs(obj) {
  const dl = el("dl");
  for (const [k, v] of Object.entries(obj)) {
    if (v === null || v === undefined) continue;
    dl.append(el("dt", {}, k), el("dd", { class: "mono" },
      typeof v === "object" ? JSON.stringify(v) : String(v)));
  }
  return dl;
}

function verdictClass(report) {
  if (report.first_failure) return "verdict invalid";
  return report.pending ? "verdict pending" : "verdict valid";
}

function receiptView(r) {
  if (!r) return el("p", { class: "pending" }, "No anchor covers it yet.");
  return pairs({
    "anchor seq": r.seq, tx: r.tx_hash, "chain block": r.block_number,
    confirmations: r.confirmations === null ? "unknown (no --rpc)" : r.confirmations,
    chain: r.chain_id, contract: r.contract, "anchored checkpoint": r.checkpoint,
    status: r.status,
  });
}

async function openBlock(log, number) {
  showDetail(el("p", { class: "muted" }, `Verifying block ${number} of ${log}…`));
  let data;
  try {
    const q = new URLSearchParams({ log, number: String(number) });
    data = await fetchJSON(`/api/block?${q}`);
  } catch (e) {
    showDetail(el("h2", {}, `Block ${number} of ${log}`), el("p", { class: "bad" }, e.message));
    return;
  }
  const b = data.block;
  const parts = [el("h2", { id: "detail-title" }, `Block ${b.number} of ${b.log}`)];
  if (data.report) {
    const r = data.report;
    parts.push(el("div", { id: "verdict", class: verdictClass(r) }, r.verdict));
    const table = el("table", { id: "checks" },
      el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "check"),
        el("th", {}, "status"), el("th", {}, "detail"))));
    const tbody = el("tbody");
    for (const c of r.checks) {
      tbody.append(el("tr", { class: "check", dataset: { name: c.name, status: c.status } },
        el("td", {}, c.number), el("td", {}, c.name),
        el("td", {}, el("span", { class: `tag ${c.status}` }, c.status)),
        el("td", {}, c.detail)));
    }
    table.append(tbody);
    parts.push(table);
    if (r.redacted.length) parts.push(el("p", { class: "muted" }, `redacted leaves: ${r.redacted.join(", ")}`));
  } else {
    parts.push(el("div", { id: "verdict", class: "verdict pending" }, "no report"),
      el("p", { class: "bad" }, data.report_error));
  }
  parts.push(el("h3", {}, "Block"), pairs({
    leaves: `[${b.start}, ${b.end})`, "sealed at": when(b.sealed_at_ms), root: b.root,
    hash: b.hash, "previous hash": b.prev_hash,
  }), el("pre", {}, b.checkpoint));
  parts.push(el("h3", {}, "Anchor"), receiptView(data.receipt));
  parts.push(el("h3", {}, `Entries (${data.entries.length} of ${data.entries_total})`));
  const entries = el("table", { id: "entries" }, el("thead", {}, el("tr", {},
    el("th", {}, "leaf"), el("th", {}, "offset"), el("th", {}, "event id"),
    el("th", {}, "source"), el("th", {}, "flag"))));
  const tbody = el("tbody");
  for (const e of data.entries) {
    let source = "";
    try {
      const parsed = e.value_text ? JSON.parse(e.value_text) : null;
      if (parsed && typeof parsed.source === "string") source = parsed.source;
    } catch (err) { source = ""; }
    tbody.append(el("tr", {},
      el("td", {}, e.index), el("td", {}, e.position),
      el("td", {}, e.event_id ? link(e.event_id, () => openEvent(e.event_id), "inclusion proof") :
        el("span", { class: "muted" }, e.redacted ? "redacted" : "none")),
      el("td", {}, source), el("td", { class: "bad" }, e.flag || "")));
  }
  entries.append(tbody);
  parts.push(entries);
  showDetail(...parts);
}

async function openEvent(id) {
  showDetail(el("p", { class: "muted" }, `Looking up event ${id}…`));
  let data;
  try {
    data = await fetchJSON(`/api/event?${new URLSearchParams({ id })}`);
  } catch (e) {
    showDetail(el("h2", {}, `Event ${id}`), el("p", { class: "bad" }, e.message));
    return;
  }
  const parts = [el("h2", { id: "detail-title" }, `Event ${data.event_id}`)];
  if (data.matches.length > 1) {
    parts.push(el("p", { class: "muted" },
      `Sealed ${data.matches.length}${data.truncated ? "+" : ""} times (a replayed delivery).`));
  }
  for (const m of data.matches) {
    parts.push(el("h3", {}, `Leaf ${m.index} of `, el("span", { class: "mono" }, m.log), " in ",
      link(`block ${m.block}`, () => openBlock(m.log, m.block))));
    parts.push(el("div", { class: `proof-check ${m.check.status}` },
      el("span", { class: `tag ${m.check.status}` }, m.check.status), " ", m.check.detail));
    parts.push(pairs({
      "tree size": m.proof.size, "leaf hash": m.proof.leaf_hash, root: m.proof.root,
    }));
    parts.push(el("p", { class: "muted" }, "Inclusion proof (audit path):"),
      el("pre", {}, m.proof.hashes.length ? m.proof.hashes.join("\n") : "(empty: one leaf)"),
      el("p", { class: "muted" }, "Signed checkpoint:"), el("pre", {}, m.checkpoint),
      el("p", { class: "muted" }, "Anchor:"), receiptView(m.receipt),
      el("p", { class: "muted" }, "Entry:"),
      el("pre", {}, m.entry.value_text !== null ? m.entry.value_text :
        m.entry.redacted ? "(value redacted)" : `(binary) ${m.entry.value || "null"}`));
  }
  showDetail(...parts);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = document.getElementById("search-id").value.trim();
    if (id) openEvent(id);
  });
  document.getElementById("detail-close").addEventListener("click", () => {
    document.getElementById("detail").hidden = true;
  });
  document.getElementById("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = document.getElementById("login-token");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    try {
      loggedIn(await login(token));
    } catch (err) {
      showLogin(err.message);
    }
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST" });
    showLogin("Logged out.");
  });
  start();
});
