// The review page's script. Everything from the server is data: it reaches the page through
// textContent, DOM properties and attributes only, never as markup (class names are user text).
"use strict";
// sel: the current card; anchor: where a shift-selection started (null: only the current card).
// mode: "crops" (every crop, filters) or "queue" (the frames most worth a correction, server-ranked).
const S = { meta: null, items: [], sel: 0, anchor: null, offset: 0, limit: 48, total: 0, session: null,
  mode: "crops" };
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
function say(msg) { $("status").textContent = msg; $("frame-status").textContent = msg; }

async function ensureSession() {
  if (!reviewer()) { say("type your name first"); $("reviewer").focus(); throw new Error("no reviewer"); }
  localStorage.setItem("lrihar-reviewer", reviewer());
  if (S.session === null) { S.session = (await api("/api/session", { reviewer: reviewer() })).session; }
}

// -- the class filter, with counts ---------------------------------------------------------------
const NG = "NG";
const countOf = name => Number((S.meta.counts || {})[name] || 0);
const classNames = () => [...new Set([...S.meta.classes, NG])];

// Option 0 is "all"; every other option's value is a stored label ("" = unlabelled), so the
// selection is kept by index 0 or by value when the options are rebuilt.
function fillLabelFilter() {
  const select = $("f-label");
  const keep = select.selectedIndex > 0 ? select.value : null;
  const counts = S.meta.counts || {};
  const stray = Object.keys(counts).filter(k => k !== "" && !classNames().includes(k)).sort();
  const total = Object.values(counts).reduce((a, b) => a + Number(b), 0);
  const options = [new Option(`all (${total})`, "")];
  for (const name of [...classNames(), ...stray]) options.push(new Option(`${name} (${countOf(name)})`, name));
  options.push(new Option(`(unlabelled) (${countOf("")})`, ""));
  select.replaceChildren(...options);
  select.selectedIndex = keep === null ? 0 : Math.max(0, options.findIndex((o, i) => i > 0 && o.value === keep));
}

async function refreshCounts() {
  try { S.meta.counts = (await api("/api/meta")).counts; fillLabelFilter(); }
  catch (e) { say(e.message); }
}

async function load() {
  let data;
  if (S.mode === "queue") {
    data = await api("/api/queue?" + new URLSearchParams({ offset: S.offset, limit: S.limit }));
  } else {
    const q = new URLSearchParams({ status: $("f-status").value, offset: S.offset, limit: S.limit });
    if ($("f-label").selectedIndex > 0) q.set("label", $("f-label").value);
    if ($("f-post").value) q.set("post", $("f-post").value);
    if ($("f-min").value) q.set("min_score", $("f-min").value);
    if ($("f-max").value) q.set("max_score", $("f-max").value);
    data = await api("/api/crops?" + q);
  }
  S.items = data.items; S.total = data.total; S.sel = Math.min(S.sel, Math.max(0, S.items.length - 1));
  S.anchor = null;
  render();
  refreshCounts();  // others may be reviewing too
}

// -- selection ------------------------------------------------------------------------------------
function selectedIndices() {
  if (S.anchor === null) return S.items[S.sel] ? [S.sel] : [];
  const [lo, hi] = [Math.min(S.anchor, S.sel), Math.max(S.anchor, S.sel)];
  return Array.from({ length: hi - lo + 1 }, (_, k) => lo + k).filter(i => S.items[i]);
}
function select(i, extend) {
  if (extend && S.anchor === null) S.anchor = S.sel;
  if (!extend) S.anchor = null;
  S.sel = Math.max(0, Math.min(i, S.items.length - 1));
  render();
}

function card(it, i, picked) {
  const node = el("div", "card");
  node.classList.toggle("sel", i === S.sel);
  node.classList.toggle("picked", picked.has(i));
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
  node.onclick = ev => select(i, ev.shiftKey);
  node.ondblclick = () => openFrame();
  return node;
}

// -- the uncertain queue: one card per suggested frame, its boxes drawn over it, and why --------
const frameUrl = ref => `/api/sources/${encodeURIComponent(ref.source_id)}/frames/${encodeURIComponent(ref.frame_index)}`;

function frameCard(it, i) {
  const node = el("div", "card frame-card");
  node.classList.toggle("sel", i === S.sel);
  node.classList.toggle("corrected", Boolean(it.reviewed));
  node.dataset.source = String(it.source_id);
  node.dataset.frame = String(it.frame_index);
  const thumb = el("div", "thumb");
  const img = el("img");
  img.loading = "lazy";
  img.src = `${frameUrl(it)}.jpg?max_side=480`;
  img.alt = `frame ${it.name}`;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${Number(it.width)} ${Number(it.height)}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren(...it.boxes.map(b => rect(b, null, it.width)));
  thumb.append(img, svg);
  const reasons = el("ul", "reasons");
  reasons.replaceChildren(...it.reasons.map(r => el("li", "", r)));
  const boxes = it.boxes.filter(b => !b.rejected).length;
  const checked = it.check && it.check.verdict === "empty" ? " · checked: no hand" : "";
  node.append(thumb, el("div", "lab", `#${it.rank} · ${Number(it.score).toFixed(2)}`), reasons,
    el("div", "meta", `${it.name} · ${it.status} · ${boxes} box${boxes === 1 ? "" : "es"}${checked}`));
  node.onclick = () => select(i, false);
  node.ondblclick = () => openFrame();
  return node;
}

function render() {
  const picked = new Set(selectedIndices());
  const queue = S.mode === "queue";
  $("grid").classList.toggle("frames", queue);
  $("grid").replaceChildren(...S.items.map((it, i) => (queue ? frameCard(it, i) : card(it, i, picked))));
  $("grid").children[S.sel]?.scrollIntoView({ block: "nearest" });
  const empty = queue ? "no frame needs a look" : "nothing here";
  $("pageinfo").textContent = S.total ? `${S.offset + 1}–${S.offset + S.items.length} of ${S.total}` : empty;
}

function setMode(mode) {
  S.mode = mode; S.offset = 0; S.sel = 0; S.anchor = null;
  $("crop-filters").hidden = mode === "queue";
  $("accept").hidden = mode === "queue";
  $("help-crops").hidden = mode === "queue";
  $("help-queue").hidden = mode !== "queue";
  return load();
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
  if (S.mode === "queue") return;  // the queue lists frames: their boxes are acted on in the frame view
  try {
    await ensureSession();
    const it = S.items[S.sel]; if (!it && kind !== "accept") return;
    const chosen = selectedIndices();
    const ids = chosen.map(i => S.items[i].id);
    let res;
    if (kind === "relabel") res = await api("/api/relabel", { ids, label: extra, seen: seen(ids) });
    if (kind === "wrong") res = await api("/api/wrong", { ids, seen: seen(ids) });
    if (kind === "accept") {
      const page = S.items.filter(x => x.label && !x.rejected).map(x => x.id);
      if (!page.length) { say("nothing to accept on this page"); return; }
      res = await api("/api/accept", { ids: page, seen: seen(page) });
    }
    if (kind === "promote") { const r = await api("/api/promote", { id: it.id }); say("template saved: " + r.template); return; }
    update(res.items);
    say(kind === "relabel" ? `${extra}: saved (${res.items.length})` : `${kind}: saved`);
    if (kind !== "accept") select(Math.min(Math.max(...chosen) + 1, S.items.length - 1), false);
    refreshCounts();
  } catch (e) { say(e.message); if (/changed by someone/.test(e.message)) load(); }
}

async function undo() {
  try {
    const r = await api("/api/undo", {}); say(`undone (${r.items.length})`);
    if (frameOpen()) await drawFrameBoxes(); else await load();
  } catch (e) { say(e.message); }
}

function rect(b, selId, width) {
  const node = document.createElementNS(SVG, "rect");
  const attrs = { x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1, fill: "none",
    stroke: b.id === selId ? "#f0c040" : (b.rejected ? "#777" : (b.backend === "manual" ? "#66bb6a" : "#4fc3f7")),
    "stroke-width": Math.max(2, width / 300) };
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, typeof v === "number" ? String(Number(v)) : v);
  node.dataset.id = String(b.id);
  const title = document.createElementNS(SVG, "title");  // hover: which detector (or a person), how sure
  title.textContent = `#${b.id} ${b.backend} ${Number(b.score).toFixed(2)}${b.label ? " · " + b.label : ""}`;
  node.append(title);
  return node;
}

// -- the frame view: any stored frame (with or without boxes), by source id and frame index ------
// ref: {source_id, frame_index, width, height}; sel: the selected box's id (null: none);
// changed: something was saved, so the grid is reloaded when the view closes.
// check: the person's verdict on the whole frame ({verdict: "empty"|null, reviewer, at}).
const F = { ref: null, boxes: [], check: { verdict: null }, sel: null, start: null, changed: false };
const frameOpen = () => $("frame").classList.contains("open");

async function drawFrameBoxes() {
  const data = await api(`${frameUrl(F.ref)}/boxes`);
  F.boxes = data.items; F.check = data.check;
  if (!F.boxes.some(b => b.id === F.sel)) F.sel = null;
  const svg = $("frame-svg");
  svg.setAttribute("viewBox", `0 0 ${Number(F.ref.width)} ${Number(F.ref.height)}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren(...F.boxes.map(b => rect(b, F.sel, F.ref.width)));
  const live = F.boxes.filter(b => !b.rejected).length;
  $("frame-info").textContent = `${F.ref.name} · ${live} box${live === 1 ? "" : "es"}` +
    (F.check.verdict === "empty" ? ` · checked: no hand (${F.check.reviewer})` : "") +
    (F.sel === null ? "" : ` · box #${F.sel} selected`);
}

async function openFrame() {
  const it = S.items[S.sel]; if (!it) return;
  const crop = S.mode === "crops";
  F.ref = { source_id: it.source_id, frame_index: it.frame_index, width: it.width, height: it.height,
    name: crop ? `#${it.id}` : it.name };
  F.sel = crop ? it.id : null;
  if (crop && it.label) $("frame-class").value = it.label;  // a box drawn from a crop takes its class
  $("frame-img").src = `${frameUrl(F.ref)}.jpg`;
  $("frame").classList.add("open");
  try { await drawFrameBoxes(); } catch (e) { say(e.message); }
}

function closeFrame() {
  $("frame").classList.remove("open");
  if (F.changed) { F.changed = false; load().catch(e => say(e.message)); }
}

function framePoint(ev) {
  const r = $("frame-svg").getBoundingClientRect();
  return [(ev.clientX - r.left) * F.ref.width / r.width, (ev.clientY - r.top) * F.ref.height / r.height];
}

// A press and release within a few screen pixels is a click (select the box under it), else a drag.
async function frameMouseUp(ev) {
  if (!F.start) return;
  const [start, end] = [F.start, framePoint(ev)]; F.start = null;
  const r = $("frame-svg").getBoundingClientRect();
  const moved = Math.max(Math.abs(end[0] - start[0]) * r.width / F.ref.width,
    Math.abs(end[1] - start[1]) * r.height / F.ref.height);
  if (moved < 4) {
    const under = F.boxes.filter(b => b.x1 <= end[0] && end[0] <= b.x2 && b.y1 <= end[1] && end[1] <= b.y2)
      .sort((a, b) => (a.x2 - a.x1) * (a.y2 - a.y1) - (b.x2 - b.x1) * (b.y2 - b.y1));
    F.sel = under.length ? under[0].id : null;
    await drawFrameBoxes();
    return;
  }
  const xyxy = [start[0], start[1], end[0], end[1]];
  try {
    await ensureSession();
    if (ev.shiftKey) {
      const box = F.boxes.find(b => b.id === F.sel);
      if (!box) { say("click a box first, then shift-drag to move it"); return; }
      await api("/api/box", { id: box.id, xyxy, seen: { [box.id]: box.version } });
    } else {
      const r2 = await api("/api/add-to-frame", { source: F.ref.source_id, frame_index: F.ref.frame_index, xyxy,
        label: $("frame-class").value || NG });
      F.sel = r2.id;
    }
    F.changed = true;
    say("box saved");
    await drawFrameBoxes();
  } catch (e) { say(e.message); }
}

async function frameWrong() {
  const box = F.boxes.find(b => b.id === F.sel);
  if (!box) { say("click a box first"); return; }
  try {
    await ensureSession();
    await api("/api/wrong", { ids: [box.id], seen: { [box.id]: box.version } });
    F.changed = true; say("wrong: saved"); await drawFrameBoxes();
  } catch (e) { say(e.message); }
}

// e: "I looked, there is no hand here" (again: take it back). Refused while a box is left on it.
async function frameEmpty() {
  const empty = F.check.verdict !== "empty";
  try {
    await ensureSession();
    await api("/api/mark-empty", { source: F.ref.source_id, frame_index: F.ref.frame_index, empty });
    F.changed = true; say(empty ? "checked: no hand here" : "no-hand mark taken back"); await drawFrameBoxes();
  } catch (e) { say(e.message); }
}

function frameKey(ev) {
  const k = ev.key;
  if (k === "Escape") closeFrame();
  else if (k === "w") frameWrong();
  else if (k === "e") frameEmpty();
  else if (k === "u" || (k === "z" && (ev.ctrlKey || ev.metaKey))) { F.changed = true; undo(); }
  else if (/^[0-9]$/.test(k)) {
    const name = k === "0" ? NG : S.meta.classes[+k - 1];
    if (name !== undefined) { $("frame-class").value = name; say(`draw as ${name}`); }
  } else if (k === "ArrowRight" || k === "ArrowLeft") {
    const next = S.sel + (k === "ArrowRight" ? 1 : -1);
    if (next < 0 || next >= S.items.length) { say("no more frames on this page"); return; }
    select(next, false); openFrame();
  } else return;
  ev.preventDefault();
}

// -- the class picker: type a few letters, arrows, Enter ----------------------------------------
const P = { matches: [], active: 0 };
const pickerOpen = () => $("picker").classList.contains("open");

/** Class names (and NG) matching ``query``: those starting with it first, then those containing
 * it, each group in the project's order; case-insensitive. */
function pickerMatches(query) {
  const q = query.trim().toLowerCase();
  const names = classNames();
  if (!q) return names;
  const lower = names.map(n => n.toLowerCase());
  return [...names.filter((_, i) => lower[i].startsWith(q)),
          ...names.filter((_, i) => !lower[i].startsWith(q) && lower[i].includes(q))];
}

function pickerOption(name, i) {
  const key = name === NG ? "0" : String(S.meta.classes.indexOf(name) + 1);
  const node = el("li", i === P.active ? "active" : "");
  node.id = `pick-${i}`;
  node.setAttribute("role", "option");
  node.setAttribute("aria-selected", String(i === P.active));
  node.dataset.name = name;
  const count = el("span", "count", String(countOf(name)));
  count.title = "crops with this label";
  const shortcut = el("span", "key", Number(key) <= 9 ? key : "");
  shortcut.title = "its number key";
  node.append(el("span", "name", name), count, shortcut);
  node.onmousedown = ev => ev.preventDefault();  // keep the focus (and the picker) in the input
  node.onclick = () => pick(name);
  return node;
}

function renderPicker() {
  const list = $("picker-list");
  P.active = Math.max(0, Math.min(P.active, P.matches.length - 1));
  list.replaceChildren(...(P.matches.length ? P.matches.map(pickerOption) : [el("li", "none", "no class matches")]));
  const input = $("picker-q");
  if (P.matches.length) input.setAttribute("aria-activedescendant", `pick-${P.active}`);
  else input.removeAttribute("aria-activedescendant");
  list.children[P.active]?.scrollIntoView({ block: "nearest" });
}

function openPicker() {
  const chosen = selectedIndices();
  if (!chosen.length) return;
  const cardNode = $("grid").children[S.sel];
  const box = $("picker");
  $("picker-title").textContent = chosen.length > 1 ? `relabel ${chosen.length} crops` : "relabel";
  box.classList.add("open");
  const r = cardNode.getBoundingClientRect();  // over the current card, kept inside the window
  box.style.left = `${Math.max(4, Math.min(r.left, innerWidth - box.offsetWidth - 4))}px`;
  box.style.top = `${Math.max(4, Math.min(r.top, innerHeight - box.offsetHeight - 4))}px`;
  $("picker-q").value = "";
  P.matches = pickerMatches(""); P.active = 0;
  renderPicker();
  $("picker-q").focus();
}
function closePicker() { $("picker").classList.remove("open"); $("picker-q").blur(); }
function pick(name) { closePicker(); act("relabel", name); }

function pickerKey(ev) {
  const k = ev.key;
  if (k === "ArrowDown" || k === "ArrowUp") {
    const n = P.matches.length;
    if (n) P.active = (P.active + (k === "ArrowDown" ? 1 : n - 1)) % n;
    renderPicker();
  } else if (k === "Enter") {
    if (P.matches.length) pick(P.matches[P.active]); else say("no class matches: Backspace or Esc");
  } else if (k === "Escape") closePicker();
  else return;
  ev.preventDefault();
  ev.stopPropagation();
}

document.addEventListener("keydown", ev => {
  if (ev.target.tagName === "INPUT") return;
  const k = ev.key;
  if ((ev.ctrlKey || ev.metaKey || ev.altKey) && k !== "z") return;  // leave the browser's own keys alone
  if (frameOpen()) { if (ev.target.tagName !== "SELECT" || k === "Escape") frameKey(ev); return; }
  if (S.mode === "queue") {  // a frame list: select, open, undo
    if (k === "ArrowRight") select(S.sel + 1, false);
    else if (k === "ArrowLeft") select(S.sel - 1, false);
    else if (k === "f" || k === "Enter") openFrame();
    else if (k === "u" || (k === "z" && (ev.ctrlKey || ev.metaKey))) undo();
    else return;
    ev.preventDefault();
    return;
  }
  if (k === "ArrowRight") select(S.sel + 1, ev.shiftKey);
  else if (k === "ArrowLeft") select(S.sel - 1, ev.shiftKey);
  else if (k === "l" || k === "/") openPicker();
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
  fillLabelFilter();
  $("frame-class").replaceChildren(...classNames().map(name => new Option(name, name)));
  // until the reviewer picks a class (1-9 in the frame view): NG, or "hand" in a project without classes
  $("frame-class").value = S.meta.new_box_label || NG;
  $("frame-class").onchange = () => $("frame-class").blur();  // keys go back to the frame view
  for (const p of S.meta.posts) $("f-post").add(new Option(p, p));
  for (const id of ["f-label", "f-status", "f-post", "f-min", "f-max"]) $(id).onchange = () => { S.offset = 0; load(); };
  $("prev").onclick = () => { S.offset = Math.max(0, S.offset - S.limit); load(); };
  $("next").onclick = () => { if (S.offset + S.limit < S.total) { S.offset += S.limit; load(); } };
  $("accept").onclick = () => act("accept");
  $("undo").onclick = undo;
  $("frame").onclick = ev => { if (ev.target.id === "frame") closeFrame(); };
  const svg = $("frame-svg");
  svg.onmousedown = ev => { F.start = framePoint(ev); ev.preventDefault(); };
  svg.onmousemove = ev => {  // the box being drawn, dashed, until the button is released
    if (!F.start) return;
    const end = framePoint(ev);
    let ghost = $("frame-ghost");
    if (!ghost) { ghost = document.createElementNS(SVG, "rect"); ghost.id = "frame-ghost"; svg.append(ghost); }
    const attrs = { x: Math.min(F.start[0], end[0]), y: Math.min(F.start[1], end[1]),
      width: Math.abs(end[0] - F.start[0]), height: Math.abs(end[1] - F.start[1]),
      "stroke-width": Math.max(2, F.ref.width / 300) };
    for (const [k, v] of Object.entries(attrs)) ghost.setAttribute(k, String(Number(v)));
  };
  svg.onmouseup = ev => { $("frame-ghost")?.remove(); frameMouseUp(ev); };
  $("queue-choice").hidden = S.meta.queue !== "uncertain";
  $("f-queue").onchange = () => setMode($("f-queue").value === "uncertain" ? "queue" : "crops");
  $("picker-q").oninput = () => { P.matches = pickerMatches($("picker-q").value); P.active = 0; renderPicker(); };
  $("picker-q").onkeydown = pickerKey;
  $("picker-q").onblur = () => { if (pickerOpen()) closePicker(); };
  await setMode(S.meta.queue === "uncertain" ? "queue" : "crops");
}
init().catch(e => say(e.message));
