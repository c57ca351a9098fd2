// Live "System status" panel: polls the health endpoint named by the panel's data-health-url.
//
// Markup contract (see templates/web/home.html):
//   [data-health-url]                 the panel; optional data-health-interval (ms, default 10000)
//     [data-health-summary]           gets data-state; its [data-health-summary-text] the headline
//     [data-health-updated]           "checked at ..." line
//     [data-health-row="database"]    one per service: database, broker, chain, worker; each gets
//       .status-dot                   data-state (up | warn | down | unknown | checking) and has
//       .status-detail                these children filled in
//       .status-state                 (optional) the state as a word, so colour is not the only cue
//
// The endpoint answers 200 when everything is up and 503 when something is down; both carry the
// same JSON body. Anything else (network error, timeout, non-JSON) counts as "unreachable".

const DEFAULT_INTERVAL_MS = 10_000;
const REQUEST_TIMEOUT_MS = 8_000;
// The worker's heartbeat task runs every 30 s; more than three missed beats means "stale".
const WORKER_STALE_SECONDS = 90;
const SERVICES = ["database", "broker", "chain"];
const STATE_WORDS = { up: "Up", warn: "Stale", down: "Down", unknown: "—", checking: "…" };

export function initHealthPanels(root) {
  for (const panel of root.querySelectorAll("[data-health-url]")) {
    if (panel.dataset.healthBound) continue;
    panel.dataset.healthBound = "1";
    new HealthPanel(panel).start();
  }
}

class HealthPanel {
  constructor(panel) {
    this.panel = panel;
    this.url = panel.dataset.healthUrl;
    const interval = Number.parseInt(panel.dataset.healthInterval || "", 10);
    this.interval = Number.isFinite(interval) && interval >= 1000 ? interval : DEFAULT_INTERVAL_MS;
    this.summary = panel.querySelector("[data-health-summary]");
    this.summaryText = panel.querySelector("[data-health-summary-text]");
    this.updated = panel.querySelector("[data-health-updated]");
    this.rows = new Map();
    for (const row of panel.querySelectorAll("[data-health-row]")) {
      this.rows.set(row.dataset.healthRow, row);
    }
    this.timer = null;
    this.inFlight = false;
  }

  start() {
    this.setSummary("checking", "Checking services…");
    for (const row of this.rows.values()) setRow(row, "checking", "checking…");
    this.refresh();
    document.addEventListener("visibilitychange", () => {
      // Polling pauses while the tab is hidden and catches up as soon as it is shown again.
      if (!document.hidden && this.timer === null && !this.inFlight) this.refresh();
    });
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (document.hidden) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh();
    }, this.interval);
  }

  async refresh() {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      const data = await fetchHealth(this.url);
      this.render(data);
    } catch (error) {
      this.renderUnreachable(error instanceof Error ? error.message : String(error));
    } finally {
      this.inFlight = false;
      this.schedule();
    }
  }

  render(data) {
    for (const name of SERVICES) {
      const row = this.rows.get(name);
      if (row) renderService(row, name, data[name]);
    }
    const workerRow = this.rows.get("worker");
    if (workerRow) renderWorker(workerRow, data.worker, data.database);

    const down = SERVICES.filter((name) => !(data[name] && data[name].up));
    if (data.status === "ok" && down.length === 0) {
      this.setSummary("up", "All systems operational");
    } else if (down.length === SERVICES.length) {
      this.setSummary("down", "All services are down");
    } else if (down.length > 0) {
      this.setSummary("warn", `Degraded: ${joinWords(down.map(labelOf))} ${down.length === 1 ? "is" : "are"} down`);
    } else {
      this.setSummary("warn", "Degraded");
    }
    this.setUpdated(`Checked at ${clock()} · refreshes every ${seconds(this.interval)}`);
  }

  renderUnreachable(reason) {
    this.setSummary("down", "Status endpoint unreachable");
    for (const row of this.rows.values()) {
      setRow(row, "unknown", "unreachable");
      const detail = row.querySelector(".status-detail");
      if (detail) detail.title = reason;
    }
    this.setUpdated(`Last tried at ${clock()} · retrying every ${seconds(this.interval)}`);
  }

  setSummary(state, text) {
    if (this.summary) this.summary.dataset.state = state;
    // Only touch the text when it changes: the summary is a live region.
    if (this.summaryText && this.summaryText.textContent !== text) this.summaryText.textContent = text;
  }

  setUpdated(text) {
    if (this.updated) this.updated.textContent = text;
  }
}

async function fetchHealth(url) {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(url, {
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "same-origin",
      signal: controller.signal,
    });
  } catch (error) {
    throw new Error(controller.signal.aborted ? `no answer within ${seconds(REQUEST_TIMEOUT_MS)}` : "network error");
  } finally {
    clearTimeout(timeout);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!data || typeof data !== "object" || typeof data.status !== "string") {
    throw new Error(`HTTP ${response.status}: not a health report`);
  }
  return data;
}

// Rows ------------------------------------------------------------------------------------------

function renderService(row, name, info) {
  if (!info || typeof info !== "object") {
    setRow(row, "unknown", "not reported");
    return;
  }
  const parts = [];
  if (!info.up) parts.push(el("span", "detail-error", info.error || "down"));

  if (name === "database") {
    if (info.up) parts.push(text("accepting queries"));
  } else if (name === "broker") {
    if (info.transport) parts.push(labelled("transport", code(info.transport)));
  } else if (name === "chain") {
    if (info.chain_id != null) parts.push(labelled("chain", el("span", "detail-value", String(info.chain_id))));
    if (info.block != null) parts.push(labelled("block", el("span", "detail-value", formatNumber(info.block))));
    const contracts = info.contracts && typeof info.contracts === "object" ? info.contracts : {};
    if (contracts.TestUSDC) parts.push(labelled("TestUSDC", address(contracts.TestUSDC)));
    const others = Object.keys(contracts).filter((key) => key !== "TestUSDC");
    if (others.length > 0) {
      const more = el("span", "detail-more", `+${others.length} contract${others.length === 1 ? "" : "s"}`);
      more.title = others.map((key) => `${key} ${contracts[key]}`).join("\n");
      parts.push(more);
    }
  }
  setRow(row, info.up ? "up" : "down", parts);
}

function renderWorker(row, worker, database) {
  if (!worker || typeof worker !== "object") {
    // The endpoint only asks about the worker when the database answers.
    const why = database && database.up === false ? "unknown while the database is down" : "not reported";
    setRow(row, "unknown", why);
    return;
  }
  const ago = worker.last_seen_seconds_ago;
  if (ago == null || !Number.isFinite(Number(ago))) {
    setRow(row, "warn", "no heartbeat yet", "Waiting");
    return;
  }
  const state = Number(ago) <= WORKER_STALE_SECONDS ? "up" : "warn";
  setRow(row, state, `last seen ${formatAgo(Number(ago))}`);
}

/** Set a row's state and detail: detail is a string or a list of nodes (shown separated by dots). */
function setRow(row, state, detail, stateWord) {
  row.dataset.state = state;
  const detailEl = row.querySelector(".status-detail");
  if (detailEl) {
    detailEl.removeAttribute("title");
    if (typeof detail === "string") {
      detailEl.textContent = detail;
    } else {
      detailEl.replaceChildren(...detail.map((node) => wrap(node)));
    }
  }
  const stateEl = row.querySelector(".status-state");
  if (stateEl) stateEl.textContent = stateWord || STATE_WORDS[state] || "—";
}

// DOM helpers -----------------------------------------------------------------------------------

function el(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content != null) node.textContent = content;
  return node;
}

function text(value) {
  return document.createTextNode(value);
}

function wrap(node) {
  const isError = node instanceof Element && node.classList.contains("detail-error");
  const item = el("span", isError ? "detail-item detail-item-error" : "detail-item");
  item.append(node);
  return item;
}

function labelled(label, valueNode) {
  const frag = document.createDocumentFragment();
  frag.append(el("span", "detail-label", label), " ", valueNode);
  return frag;
}

function code(value) {
  return el("code", "detail-code", value);
}

function address(value) {
  const node = code(shortenAddress(value));
  node.title = value;
  return node;
}

// Formatting ------------------------------------------------------------------------------------

export function shortenAddress(value) {
  const s = String(value);
  return s.length > 12 ? `${s.slice(0, 6)}…${s.slice(-4)}` : s;
}

export function formatAgo(secondsAgo) {
  const s = Math.max(0, Math.round(secondsAgo));
  if (s < 120) return `${s} s ago`;
  if (s < 2 * 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 2 * 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function formatNumber(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n.toLocaleString("en-US") : String(value);
}

function labelOf(name) {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function joinWords(words) {
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}`;
}

function seconds(ms) {
  return `${Math.round(ms / 1000)} s`;
}

function clock() {
  return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
