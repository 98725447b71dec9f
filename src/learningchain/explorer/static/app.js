"use strict";
// The explorer page: reads the read-only JSON API of learningchain.explorer.app and
// polls /api/head so that a growing chain (a live run or a node) shows up by itself.

const POLL_MS = 2000;
let lastHead = null;
let oldestShown = null;

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path) {
  const res = await fetch("/api/" + path, { cache: "no-store" });
  const doc = await res.json();
  if (!res.ok) throw new Error(doc.error || res.statusText);
  return doc;
}

function short(hash) { return hash ? hash.slice(0, 10) + "…" + hash.slice(-6) : "–"; }
function fmt(x, digits) {
  if (x === null || x === undefined || x === "") return "–";
  return typeof x === "number" ? x.toFixed(digits === undefined ? 4 : digits) : String(x);
}
function when(ms) { return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"); }

function showError(err) {
  $("error").hidden = !err;
  $("error").textContent = err ? String(err.message || err) : "";
}

function blockLink(hash, text) { return el("a", { href: "#/block/" + hash, class: "block-link mono" }, text); }

function renderOverview(doc) {
  $("live").hidden = !doc.live;
  $("path").textContent = doc.path;
  const head = doc.head || {};
  $("height").textContent = head.height === null || head.height === undefined ? "–" : head.height;
  $("head-hash").textContent = head.hash || "–";
  const s = doc.summary || {};
  $("test-error").textContent = fmt(s.test_error);
  $("baseline-error").textContent = fmt(s.baseline_test_error);
  $("epsilon").textContent = s.epsilon_total === undefined ? "–" : (s.epsilon_total === null ? "no DP" : fmt(s.epsilon_total, 3));
  $("epsilon-detail").textContent = s.epsilon_total_tight ? `tight ${fmt(s.epsilon_total_tight, 3)} at δ ${s.delta_tight}` : "";
  $("rejected").textContent = s.rejected_blocks === undefined ? "–" : s.rejected_blocks;
  const reasons = s.rejected_by_reason || {};
  $("rejected-reasons").textContent = Object.entries(reasons).map(([k, v]) => `${k}: ${v}`).join(", ");
  const g = doc.genesis;
  $("setup").textContent = g ? `rule ${g.aggregator}, K = ${g.holders}, d = ${g.dim}, ${g.consensus}, ` +
    `${g.mechanism} ε ${g.epsilon} (${g.schedule}), T = ${g.rounds}` + (g.members ? `, ${g.members} enrolled holders` : "") : "";
  if (doc.node) renderNode(doc.node);
}

function renderNode(status) {
  $("node").hidden = false;
  const body = $("node-table").tBodies[0];
  body.replaceChildren();
  const peers = status.peers || [];
  const reasons = status.rejected_blocks || {};
  const rows = [["name", status.name], ["node id", status.node_id], ["role", status.role],
    ["peers", Array.isArray(peers) ? peers.length : peers], ["syncing", status.syncing ? "yes" : "no"],
    ["mempool", status.mempool], ["mining", status.mining ? "yes" : "no"], ["blocks mined", status.blocks_mined],
    ["messages sent", status.messages_sent], ["error", status.error]];
  for (const [k, v] of rows) {
    if (v !== undefined && v !== null) body.append(el("tr", {}, el("td", {}, k), el("td", { id: "node-" + k.replace(/ /g, "-") }, v)));
  }
  for (const p of Array.isArray(peers) ? peers : []) {
    body.append(el("tr", { class: "peer" }, el("td", {}, "peer " + p.direction), el("td", { class: "mono" }, `${p.id} ${p.address || ""}`)));
  }
  if (status.test_error !== undefined && status.test_error !== null) $("test-error").textContent = fmt(status.test_error);
  const privacy = status.privacy || {};
  if (privacy.epsilon_spent !== undefined && privacy.epsilon_spent !== null) {
    $("epsilon").textContent = fmt(privacy.epsilon_spent, 3);
    $("epsilon-detail").textContent = `per hosted holder, basic composition (${privacy.messages_per_holder} messages)`;
  }
  $("rejected").textContent = Object.values(reasons).reduce((a, b) => a + b, 0);
  $("rejected-reasons").textContent = Object.entries(reasons).map(([k, v]) => `${k}: ${v}`).join(", ");
}

function renderChart(doc) {
  const rows = doc.rows || [];
  const box = $("chart");
  if (!rows.length) return;
  const W = 760, H = 260, L = 50, R = 20, T = 15, B = 35;
  const rounds = rows.map(r => r.round);
  const series = [
    { name: "test error", color: "#2563eb", pts: rows.map(r => [r.round, r.test_error]) },
    { name: "training loss", color: "#9333ea", pts: rows.map(r => [r.round, r.train_loss]) },
  ];
  if (doc.baseline && doc.baseline.length) {
    series.push({ name: "baseline test error", color: "#6b7385", dash: "5,4",
      pts: doc.baseline.map((e, i) => Array.isArray(e) ? [e[0], e[1]] : [i + 1, e])
        .filter(p => p[0] >= Math.min(...rounds) && p[0] <= Math.max(...rounds)) });
  }
  const ys = series.flatMap(s => s.pts.map(p => p[1])).filter(y => typeof y === "number" && isFinite(y));
  const xmin = Math.min(...rounds), xmax = Math.max(...rounds, xmin + 1), ymax = Math.max(...ys, 1e-9) * 1.05;
  const x = r => L + (W - L - R) * (r - xmin) / Math.max(1, xmax - xmin);
  const y = v => T + (H - T - B) * (1 - v / ymax);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("id", "chart-svg");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n); return n;
  };
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" });
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    add("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11 }, v.toFixed(2));
  }
  add("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", "font-size": 12 }, "round");
  add("text", { x: L, y: H - B + 15, "font-size": 11 }, String(xmin));
  add("text", { x: W - R, y: H - B + 15, "text-anchor": "end", "font-size": 11 }, String(xmax));
  series.forEach((s, i) => {
    const pts = s.pts.filter(p => typeof p[1] === "number" && isFinite(p[1]));
    if (!pts.length) return;
    add("path", { d: "M" + pts.map(p => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("L"), fill: "none",
      stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash || "", class: "series", "data-name": s.name });
    add("text", { x: W - R - 150, y: T + 14 * (i + 1), fill: s.color, "font-size": 12 }, s.name);
  });
  box.replaceChildren(svg);
}

function blockRow(b) {
  return el("tr", { class: "block-row", "data-height": b.height },
    el("td", {}, b.height), el("td", {}, blockLink(b.hash, short(b.hash))), el("td", { class: "mono" }, short(b.miner)),
    el("td", {}, b.difficulty), el("td", {}, b.messages), el("td", {}, b.selected), el("td", {}, b.selected_byzantine),
    el("td", {}, when(b.timestamp)));
}

async function loadBlocks(reset) {
  const page = await api("blocks?limit=25" + (reset || oldestShown === null ? "" : "&before=" + oldestShown));
  const body = $("blocks").tBodies[0];
  if (reset) body.replaceChildren();
  for (const b of page.blocks) body.append(blockRow(b));
  oldestShown = page.blocks.length ? page.blocks[page.blocks.length - 1].height : oldestShown;
  $("older").hidden = page.next === null;
}

async function showBlock(ref) {
  const doc = await api("block/" + encodeURIComponent(ref));
  $("overview").hidden = true; $("block").hidden = false;
  $("block-height").textContent = doc.header.height;
  const hb = $("block-header").tBodies[0];
  hb.replaceChildren();
  for (const [k, v] of Object.entries(doc.header)) {
    const value = k === "parent" && doc.header.height > 0 ? blockLink(v, v) : (k === "timestamp" ? `${v} (${when(v)})` : v);
    hb.append(el("tr", {}, el("td", {}, k), el("td", { class: "mono", id: "header-" + k }, value)));
  }
  hb.append(el("tr", {}, el("td", {}, "canonical"), el("td", {}, doc.canonical ? "yes" : "no (a side branch)")));
  hb.append(el("tr", {}, el("td", {}, "model"), el("td", {}, `d = ${doc.model.dim}, ‖w‖ = ${fmt(doc.model.norm)}`)));
  $("block-count").textContent = doc.messages.length;
  $("block-selected").textContent = doc.selection.length;
  const mb = $("messages").tBodies[0];
  mb.replaceChildren();
  for (const m of doc.messages) {
    const cls = ["msg", m.selected ? "selected" : "", m.byzantine ? "byzantine" : ""].join(" ").trim();
    mb.append(el("tr", { class: cls }, el("td", {}, m.index), el("td", { class: "mono" }, m.identity),
      el("td", {}, m.norm.toPrecision(6)), el("td", {}, m.round), el("td", {}, m.selected ? "yes" : ""),
      el("td", {}, m.byzantine === null ? "?" : (m.byzantine ? "yes" : ""))));
  }
}

async function refresh() {
  const [overview, metrics] = await Promise.all([api("overview"), api("metrics")]);
  renderOverview(overview);
  renderChart(metrics);
  await loadBlocks(true);
}

async function route() {
  try {
    const m = location.hash.match(/^#\/block\/(.+)$/);
    if (m) await showBlock(decodeURIComponent(m[1]));
    else { $("block").hidden = true; $("overview").hidden = false; await refresh(); }
    showError(null);
  } catch (err) { showError(err); }
}

async function poll() {
  try {
    const head = await api("head");
    if (lastHead !== null && head.hash !== lastHead && !location.hash.startsWith("#/block/")) await refresh();
    lastHead = head.hash;
    showError(null);
  } catch (err) { showError(err); }
  setTimeout(poll, POLL_MS);
}

$("older").addEventListener("click", () => loadBlocks(false).catch(showError));
window.addEventListener("hashchange", route);
route().then(poll);
