// The live page's script (lrihar run --serve). Read-only: it polls /api/state and /api/frames.
// Everything from the server is data: it reaches the page through textContent, DOM properties and
// attributes only, never as markup (post, class and step names are user text).
"use strict";
const $ = id => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const STATE_MS = 500;
const S = { pollMs: 200, alertSeen: new Map(), loaded: false, figures: new Map(), posts: new Map() };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}
const secs = x => (typeof x === "number" && isFinite(x) ? x.toFixed(1) : "");

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) {
    const data = await r.json().catch(() => ({}));
    throw new Error(typeof data.detail === "string" ? data.detail : `HTTP ${r.status}`);
  }
  return r.json();
}
function status(text, down) { $("status").textContent = text; $("status").classList.toggle("down", !!down); }

// -- streams: one picture per source, fetched again when its frame counter grows ---------------------
function figure(k) {
  let f = S.figures.get(k);
  if (f) return f;
  const node = el("figure");
  const img = el("img");
  img.className = "frame";
  img.alt = `source ${k}`;
  img.dataset.k = String(k);
  img.dataset.seq = "0";
  const caption = el("figcaption");
  node.append(img, caption);
  $("streams").append(node);
  f = { node, img, caption, busy: false, want: 0 };
  img.addEventListener("load", () => { f.busy = false; img.dataset.seq = String(f.loading); });
  img.addEventListener("error", () => { f.busy = false; });
  S.figures.set(k, f);
  return f;
}
function showFrame(k, seq) {
  const f = figure(k);
  if (f.busy || seq <= Number(f.img.dataset.seq)) return;
  f.busy = true;
  f.loading = seq;
  f.img.src = `/frame/${k}.jpg?seq=${seq}`;
}
async function pollFrames() {
  try { for (const { k, seq } of await getJson("/api/frames")) showFrame(k, seq); }
  catch (e) { /* the state poll says so */ }
  setTimeout(pollFrames, S.pollMs);
}

function captions(sources) {
  for (const s of sources) {
    const f = figure(s.k);
    const parts = [el("span", "", `${s.post} · ${s.source} · ${s.frames} frames · t ${secs(s.t)} s`)];
    if (s.gap) parts.push(el("span", "gap", ` · no signal: ${s.gap}`));
    f.caption.replaceChildren(...parts);
  }
}

// -- per post: the checklist of the current cycle and the cycle-time chart --------------------------
function postBox(name) {
  let box = S.posts.get(name);
  if (box) return box;
  const node = el("div", "post");
  node.dataset.post = name;
  const title = el("h3", "", name);
  const cycle = el("span", "cycle");
  title.append(" ", cycle);
  const list = el("ul", "checklist");
  const chart = svg("svg", { class: "chart", viewBox: "0 0 300 110", preserveAspectRatio: "none",
    role: "img", "aria-label": `cycle times at ${name}` });
  node.append(title, list, chart);
  $("posts").append(node);
  box = { node, cycle, list, chart };
  S.posts.set(name, box);
  return box;
}
function checklist(box, post) {
  box.cycle.textContent = post.cycle_id === null ? "· no cycle yet" : `· cycle ${post.cycle_id}`;
  if (!post.checklist.length) { box.list.replaceChildren(el("li", "empty", "no procedure for this post")); return; }
  box.list.replaceChildren(...post.checklist.map(step => {
    const li = el("li", [step.done ? "done" : "", step.problem ? "problem" : "", step.optional ? "optional" : ""]
      .filter(Boolean).join(" "));
    li.dataset.step = step.step;
    li.append(el("span", "mark", step.problem ? "✗" : step.done ? "✓" : "☐"), el("span", "name", step.step));
    if (step.done) li.append(el("span", "when", ` ${secs(step.seconds)} s`));
    if (step.problem) li.append(el("span", "why", ` (${step.problem.replace(/_/g, " ")})`));
    return li;
  }));
}
function chart(box, cycles) {
  const W = 300, H = 110, top = 12, bottom = 16;
  const nodes = [svg("line", { x1: 0, y1: H - bottom, x2: W, y2: H - bottom })];
  if (!cycles.length) {
    nodes.push(svg("text", { x: 4, y: H / 2 }, "no cycle finished yet"));
  } else {
    const most = Math.max(...cycles.map(c => c.cycle_time), 1e-9);
    const slot = W / Math.max(cycles.length, 10);
    cycles.forEach((c, i) => {
      const h = (H - top - bottom) * c.cycle_time / most;
      const bar = svg("rect", { class: c.ok ? "ok" : "bad", x: i * slot + 1, y: H - bottom - h,
        width: Math.max(slot - 2, 1), height: h });
      const why = ["missing", "out_of_order", "too_short", "too_long"].filter(k => (c[k] || []).length)
        .map(k => `${k.replace(/_/g, " ")}: ${c[k].join(", ")}`).join("; ");
      bar.append(svg("title", {}, `cycle ${c.id}: ${secs(c.cycle_time)} s${why ? " · " + why : ""}`));
      nodes.push(bar);
    });
    nodes.push(svg("text", { x: 2, y: 10 }, `max ${secs(most)} s`),
      svg("text", { x: 2, y: H - 3 }, `last ${cycles.length} cycles · last ${secs(cycles.at(-1).cycle_time)} s`));
  }
  box.chart.replaceChildren(...nodes);
}

// -- alerts (newest first; those that came while the page was open stand out for a while) -------
const FRESH_MS = 15000;
function alerts(items) {
  const now = Date.now();
  for (const a of items) {
    if (!S.alertSeen.has(a.id)) S.alertSeen.set(a.id, S.loaded ? now : 0);
  }
  for (const id of [...S.alertSeen.keys()]) if (!items.some(a => a.id === id)) S.alertSeen.delete(id);
  S.loaded = true;
  if (!items.length) { $("alerts").replaceChildren(el("li", "empty", "no alert")); return; }
  $("alerts").replaceChildren(...items.map(a => {
    const li = el("li", now - S.alertSeen.get(a.id) < FRESH_MS ? "alert fresh" : "alert");
    li.dataset.id = String(a.id);
    li.append(el("span", "kind", a.kind.replace(/_/g, " ")), ` ${a.post} · cycle ${a.cycle_id} · ${a.step}: `,
      el("span", "msg", a.message), el("span", "when", ` @ ${secs(a.at)} s`));
    return li;
  }));
}

// -- recent events (and gaps), newest first --------------------------------------------------------
function events(items) {
  const rows = items.map(e => {
    const tr = el("tr", e.type === "gap" ? "gap" : "");
    const cells = e.type === "gap"
      ? [e.id, e.post, `gap: ${e.reason}`, "", secs(e.start), e.end === null ? "…" : secs(e.end - e.start), "",
        e.end === null ? "open" : "closed"]
      : [e.id, e.post, e.label, e.track_id, secs(e.start), secs(e.end - e.start), e.confidence.toFixed(2), e.state];
    for (const c of cells) tr.append(el("td", typeof c === "number" ? "num" : "", String(c)));
    return tr;
  });
  $("events").tBodies[0].replaceChildren(...rows);
}

async function pollState() {
  try {
    const st = await getJson("/api/state");
    S.pollMs = st.poll_ms || S.pollMs;
    captions(st.sources);
    for (const post of st.posts) { const box = postBox(post.post); checklist(box, post); chart(box, post.cycles); }
    alerts(st.alerts);
    events(st.events);
    status(`live · ${st.sources.length} source(s) · updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    status(`no connection (${e.message}); the run may have ended — retrying`, true);
  }
  setTimeout(pollState, STATE_MS);
}

pollState();
pollFrames();
