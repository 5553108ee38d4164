// The review page's script. Everything from the server is data: it reaches the page through
// textContent, DOM properties and attributes only, never as markup (class names are user text).
"use strict";
const S = { meta: null, items: [], sel: 0, offset: 0, limit: 48, total: 0, session: null };
const $ = id => document.getElementById(id);
const reviewer = () => $("reviewer").value.trim();
const SVG = "http://www.w3.org/2000/svg";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(Object.assign({ reviewer: reviewer(), session: S.session }, body)) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    throw new Error(typeof data.detail === "string" ? data.detail : (r.statusText || `HTTP ${r.status}`));
  }
  return data;
}
function say(msg) { $("status").textContent = msg; }

async function ensureSession() {
  if (!reviewer()) { say("type your name first"); $("reviewer").focus(); throw new Error("no reviewer"); }
  localStorage.setItem("lrihar-reviewer", reviewer());
  if (S.session === null) { S.session = (await api("/api/session", { reviewer: reviewer() })).session; }
}

async function load() {
  const q = new URLSearchParams({ status: $("f-status").value, offset: S.offset, limit: S.limit });
  if ($("f-label").value !== "") q.set("label", $("f-label").value);
  if ($("f-post").value) q.set("post", $("f-post").value);
  if ($("f-min").value) q.set("min_score", $("f-min").value);
  if ($("f-max").value) q.set("max_score", $("f-max").value);
  const data = await api("/api/crops?" + q);
  S.items = data.items; S.total = data.total; S.sel = Math.min(S.sel, Math.max(0, S.items.length - 1));
  render();
}

function card(it, i) {
  const node = el("div", "card");
  node.classList.toggle("sel", i === S.sel);
  node.classList.toggle("corrected", it.provenance === "corrected");
  node.classList.toggle("rejected", Boolean(it.rejected));
  node.dataset.id = String(it.id);
  const img = el("img");
  img.loading = "lazy";
  img.src = `/api/crops/${encodeURIComponent(it.id)}.jpg?v=${encodeURIComponent(it.version)}`;
  img.alt = `crop ${it.id}`;
  let meta = `${Number(it.score).toFixed(3)} · #${it.id}`;
  if (it.auto_label && it.auto_label !== it.label) meta += ` · was ${it.auto_label}`;
  node.append(img, el("div", "lab", it.label || "(unlabelled)"), el("div", "meta", meta));
  node.onclick = () => { S.sel = i; render(); };
  node.ondblclick = () => openFrame();
  return node;
}

function render() {
  $("grid").replaceChildren(...S.items.map(card));
  $("pageinfo").textContent = S.total ? `${S.offset + 1}–${S.offset + S.items.length} of ${S.total}` : "nothing here";
}

function update(rows) {
  for (const row of rows) {
    const it = S.items.find(x => x.id === row.id);
    if (it) { Object.assign(it, row); it.label = row.label || it.label; }
  }
  render();
}
const seen = ids => Object.fromEntries(ids.map(id => [id, S.items.find(x => x.id === id).version]));

async function act(kind, extra) {
  try {
    await ensureSession();
    const it = S.items[S.sel]; if (!it && kind !== "accept") return;
    let res;
    if (kind === "relabel") res = await api("/api/relabel", { ids: [it.id], label: extra, seen: seen([it.id]) });
    if (kind === "wrong") res = await api("/api/wrong", { ids: [it.id], seen: seen([it.id]) });
    if (kind === "accept") {
      const ids = S.items.filter(x => x.label && !x.rejected).map(x => x.id);
      if (!ids.length) { say("nothing to accept on this page"); return; }
      res = await api("/api/accept", { ids, seen: seen(ids) });
    }
    if (kind === "promote") { const r = await api("/api/promote", { id: it.id }); say("template saved: " + r.template); return; }
    update(res.items);
    say(`${kind}: saved`);
    if (kind !== "accept" && S.sel < S.items.length - 1) { S.sel += 1; render(); }
  } catch (e) { say(e.message); if (/changed by someone/.test(e.message)) load(); }
}

async function undo() {
  try { const r = await api("/api/undo", {}); say(`undone (${r.items.length})`); await load(); }
  catch (e) { say(e.message); }
}

function rect(b, it) {
  const node = document.createElementNS(SVG, "rect");
  const attrs = { x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1, fill: "none",
    stroke: b.id === it.id ? "#f0c040" : (b.rejected ? "#777" : "#4fc3f7"),
    "stroke-width": Math.max(2, it.width / 300) };
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, typeof v === "number" ? String(Number(v)) : v);
  return node;
}

async function openFrame() {
  const it = S.items[S.sel]; if (!it) return;
  $("frame-img").src = `/api/frames/${encodeURIComponent(it.id)}.jpg`;
  const boxes = (await api(`/api/frames/${encodeURIComponent(it.id)}/boxes`)).items;
  const svg = $("frame-svg");
  svg.setAttribute("viewBox", `0 0 ${Number(it.width)} ${Number(it.height)}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren(...boxes.map(b => rect(b, it)));
  $("frame").classList.add("open");
  let start = null;
  const pt = ev => { const r = svg.getBoundingClientRect();
    return [(ev.clientX - r.left) * it.width / r.width, (ev.clientY - r.top) * it.height / r.height]; };
  svg.onmousedown = ev => { start = pt(ev); ev.preventDefault(); };
  svg.onmouseup = async ev => {
    if (!start) return; const end = pt(ev);
    const xyxy = [start[0], start[1], end[0], end[1]]; start = null;
    try {
      await ensureSession();
      if (ev.shiftKey) { const r = await api("/api/box", { id: it.id, xyxy, seen: seen([it.id]) }); update([r]); }
      else { await api("/api/add", { like: it.id, xyxy, label: it.label || "NG" }); }
      say("box saved"); closeFrame(); load();
    } catch (e) { say(e.message); }
  };
}
const frameOpen = () => $("frame").classList.contains("open");
function closeFrame() { $("frame").classList.remove("open"); }

document.addEventListener("keydown", ev => {
  if (ev.target.tagName === "INPUT") return;
  if (frameOpen()) { if (ev.key === "Escape") closeFrame(); return; }
  const k = ev.key;
  if (k === "ArrowRight") { S.sel = Math.min(S.sel + 1, S.items.length - 1); render(); }
  else if (k === "ArrowLeft") { S.sel = Math.max(S.sel - 1, 0); render(); }
  else if (/^[1-9]$/.test(k) && S.meta.classes[+k - 1]) act("relabel", S.meta.classes[+k - 1]);
  else if (k === "0" || k === "n") act("relabel", "NG");
  else if (k === "w") act("wrong");
  else if (k === "a") act("accept");
  else if (k === "t") act("promote");
  else if (k === "f") openFrame();
  else if (k === "u" || (k === "z" && (ev.ctrlKey || ev.metaKey))) undo();
  else return;
  ev.preventDefault();
});

async function init() {
  // The token (servers beyond this machine) is now a cookie: keep it out of the address bar and history.
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
  $("reviewer").value = localStorage.getItem("lrihar-reviewer") || "";
  S.meta = await api("/api/meta");
  $("title").textContent = "lrihar review · " + S.meta.line;
  for (const c of [...S.meta.classes, "NG"]) $("f-label").add(new Option(c, c));
  for (const p of S.meta.posts) $("f-post").add(new Option(p, p));
  for (const id of ["f-label", "f-status", "f-post", "f-min", "f-max"]) $(id).onchange = () => { S.offset = 0; load(); };
  $("prev").onclick = () => { S.offset = Math.max(0, S.offset - S.limit); load(); };
  $("next").onclick = () => { if (S.offset + S.limit < S.total) { S.offset += S.limit; load(); } };
  $("accept").onclick = () => act("accept");
  $("undo").onclick = undo;
  $("frame").onclick = ev => { if (ev.target.id === "frame") closeFrame(); };
  await load();
}
init().catch(e => say(e.message));
