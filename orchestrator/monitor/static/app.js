// reelfarm ui: the runs page and a run's page, drawn from the server's JSON API.
// Every string from a run record or a manifest reaches the page through textContent or an
// attribute, never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 3000;
const SHOT_W = 72, THUMB_W = 64, THUMB_H = 36, PAD = 10;
const state = { timer: null, run: null, selected: null, scale: 1, who: null };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h ? `${h} h ${m % 60} min` : `${m} min ${Math.round(s % 60)} s`;
}
const when = (t) => (t ? t.replace("T", " ").replace(/(\.\d+)?Z$/, "Z") : "—");
const dash = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));
const statusTag = (s) => el("span", { class: `status st-${s}`, text: s });
const media = (sha, ext) => `/media/${sha}.${ext}`;

function stop() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }

// -- runs --------------------------------------------------------------------------------------

async function showRuns() {
  stop();
  document.getElementById("crumbs").textContent = "runs";
  const main = document.getElementById("main");
  const tbody = el("tbody");
  const table = el("table", { id: "runs" }, el("thead", {}, el("tr", {},
    ...["story", "run", "status", "who", "host", "started", "version", "priority", "shots",
        "rendered", "cached", "failed", "blocked", "running", "duration", "eta"]
      .map((h) => el("th", { text: h })))), tbody);
  const note = el("p", { class: "muted", id: "runs-note" });
  main.replaceChildren(el("h1", { text: "Runs" }), note, el("div", { class: "scroll" }, table));
  const tick = async () => {
    try {
      const doc = await api("/api/runs");
      document.getElementById("store").textContent = doc.store;
      note.textContent = doc.runs.length ? "" : "No runs in this store yet.";
      tbody.replaceChildren(...doc.runs.map((r) => {
        const c = r.counts;
        const link = el("a", { href: `#/run/${encodeURIComponent(r.story)}/${encodeURIComponent(r.run_id)}`,
          text: r.run_id });
        return el("tr", { "data-run": `${r.story}/${r.run_id}`, "data-status": r.status },
          el("td", { text: r.story }), el("td", {}, link), el("td", {}, statusTag(r.status)),
          el("td", { text: dash(r.user) }), el("td", { text: dash(r.host) }),
          el("td", { text: when(r.started) }), el("td", { text: dash(r.version) }),
          el("td", { text: dash(r.priority) }), el("td", { text: dash(r.tasks) }),
          el("td", { text: c.rendered }), el("td", { text: c.cached }),
          el("td", { text: c.failed }), el("td", { text: c.blocked }),
          el("td", { text: r.running || c.running }), el("td", { text: fmtSeconds(r.seconds) }),
          el("td", { text: r.eta_seconds === null ? "—" : fmtSeconds(r.eta_seconds) }));
      }));
    } catch (e) {
      note.textContent = `Cannot read the runs: ${e.message}`;
    }
    if (location.hash === "" || location.hash === "#/") state.timer = setTimeout(tick, POLL_MS);
  };
  await tick();
}

// -- a run ---------------------------------------------------------------------------------------

async function showRun(story, runId) {
  stop();
  const crumbs = document.getElementById("crumbs");
  crumbs.replaceChildren(el("a", { href: "#/", text: "runs" }), " / ", story, " / ", runId);
  const main = document.getElementById("main");
  let first = true;
  const tick = async () => {
    let doc;
    try {
      doc = await api(`/api/runs/${encodeURIComponent(story)}/${encodeURIComponent(runId)}`);
    } catch (e) {
      main.replaceChildren(el("p", { class: "error", text: `Cannot read the run: ${e.message}` }));
      return;
    }
    state.run = doc;
    if (first) { drawRun(main, doc); first = false; } else { refreshRun(doc); }
    if (doc.summary.status === "running" && location.hash.startsWith("#/run/")) {
      state.timer = setTimeout(tick, POLL_MS);
    }
  };
  await tick();
}

function summaryLine(s) {
  const c = s.counts;
  const parts = [
    `${dash(s.tasks)} shots: ${c.rendered} rendered, ${c.cached} cached, ${c.failed} failed, ` +
      `${c.blocked} blocked, ${c.running + s.running} running`,
    `${dash(s.masters)} masters`,
    `started ${when(s.started)}` + (s.user ? ` by ${s.user}` : "") + (s.host ? ` on ${s.host}` : ""),
    s.updated ? `updated ${when(s.updated)}` : null,
    s.version ? `version ${s.version}` : null,
    s.priority !== null ? `priority ${s.priority}` : null,
    fmtSeconds(s.seconds),
    s.eta_seconds !== null ? `eta ${fmtSeconds(s.eta_seconds)}` : null,
  ];
  return [statusTag(s.status), " " + parts.filter((x) => x !== null).join(" · ")];
}

function drawRun(main, doc) {
  const s = doc.summary;
  const legend = el("p", { class: "legend" }, ...["cached", "rendered", "running", "pending",
    "failed", "blocked"].map((k) => el("span", {}, statusTag(k))),
    el("span", { class: "muted", text: "✓ approved · ✎ needs changes · ○ review of an older take" }));
  const zoom = (f) => { state.scale = f === 0 ? 1 : Math.min(2, Math.max(0.25, state.scale * f));
    applyScale(); };
  const toolbar = el("div", { class: "toolbar" },
    el("button", { type: "button", onclick: () => zoom(0.8), text: "−" }),
    el("button", { type: "button", id: "zoom-level", title: "actual size", onclick: () => zoom(0), text: "100%" }),
    el("button", { type: "button", onclick: () => zoom(1.25), text: "+" }),
    el("span", { class: "muted", text: doc.graph_recorded ? "" :
      "This run record has no story graph (an older renderer): segments are shown without their choices." }));
  main.replaceChildren(
    el("h1", { text: `${s.story} · ${s.run_id}` }),
    el("p", { id: "run-summary" }, ...summaryLine(s)),
    errorsBlock(doc),
    el("h2", { text: "Story" }), legend, toolbar,
    el("div", { id: "graph-wrap" }, drawGraph(doc)),
    el("h2", { text: "Branches" }),
    el("div", { id: "branches" }, ...doc.branches.map(drawBranch)),
  );
  state.scale = 1;
  state.branchesSig = JSON.stringify(doc.branches);
}

function errorsBlock(doc) {
  const items = [...doc.errors, ...doc.failures.map((f) => `${f.id}: ${f.error}`)];
  if (!items.length) return el("div", { id: "run-errors" });
  return el("div", { id: "run-errors" }, el("h2", { text: "Problems" }),
    el("ul", {}, ...items.map((t) => el("li", { class: "error", text: t }))));
}

function refreshRun(doc) {
  document.getElementById("run-summary").replaceChildren(...summaryLine(doc.summary));
  document.getElementById("run-errors").replaceWith(errorsBlock(doc));
  const old = document.getElementById("graph");
  old.replaceWith(drawGraph(doc));
  applyScale();
  // what plays or is being read stays put unless it changed
  const branches = JSON.stringify(doc.branches);
  if (branches !== state.branchesSig) {
    document.getElementById("branches").replaceChildren(...doc.branches.map(drawBranch));
    state.branchesSig = branches;
  }
  if (state.selected && panelSig(doc, state.selected) !== state.panelSig) {
    openShot(state.selected, true);
  }
}

function panelSig(doc, shotId) {
  return JSON.stringify([doc.shots[shotId] || null, doc.reviews[shotId] || null]);
}

function applyScale() {
  const g = document.getElementById("graph");
  if (!g) return;
  const shown = document.getElementById("zoom-level");
  if (shown) shown.textContent = `${Math.round(state.scale * 100)}%`;
  g.setAttribute("width", Number(g.dataset.w) * state.scale);
  g.setAttribute("height", Number(g.dataset.h) * state.scale);
}

function reviewMark(r) {
  if (!r) return null;
  if (r.current === false) return { cls: "stale", text: "○", title: `${r.verdict} by ${r.who} for an older take` };
  return r.verdict === "approved"
    ? { cls: "approved", text: "✓", title: `approved by ${r.who}` }
    : { cls: "changes", text: "✎", title: `needs changes (${r.who}): ${r.note}` };
}

function drawGraph(doc) {
  const L = doc.layout;
  const root = svg("svg", { id: "graph", viewBox: `0 0 ${L.width} ${L.height}`,
    width: L.width, height: L.height, role: "img", "aria-label": "Story graph" });
  root.dataset.w = L.width; root.dataset.h = L.height;
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#6d6d66" }))));
  const edges = svg("g", { class: "edges" });
  const fan = new Map(), rank = new Map();
  for (const e of L.edges) if (e.label) fan.set(e.from, (fan.get(e.from) || 0) + 1);
  const labels = svg("g", { class: "labels" });
  for (const e of L.edges) {
    const p = e.points;
    let d = `M ${p[0][0]} ${p[0][1]}`;
    for (let i = 1; i < p.length; i++) {
      const [x0, y0] = p[i - 1], [x1, y1] = p[i];
      const my = (y0 + y1) / 2;
      d += x0 === x1 ? ` L ${x1} ${y1}` : ` C ${x0} ${my} ${x1} ${my} ${x1} ${y1}`;
    }
    edges.append(svg("path", { class: "edge", d, "marker-end": "url(#arrow)",
      "data-from": e.from, "data-to": e.to }));
    if (e.label) {
      // on the curve's first leg, where a choice's options fan out from their segment; the
      // options of one choice at different heights, each on the side its curve bends to
      const k = (rank.get(e.from) || 0); rank.set(e.from, k + 1);
      const n = fan.get(e.from);
      const t = n > 1 ? 0.3 + 0.45 * k / (n - 1) : 0.5;
      const [x0, y0] = p[0], [x1, y1] = p[1];
      const my = (y0 + y1) / 2, u = 1 - t;
      const bx = u * u * u * x0 + 3 * u * u * t * x0 + 3 * u * t * t * x1 + t * t * t * x1;
      const by = u * u * u * y0 + 3 * u * u * t * my + 3 * u * t * t * my + t * t * t * y1;
      const dx = x1 - x0;
      const anchor = Math.abs(dx) < 4 ? "middle" : dx < 0 ? "end" : "start";
      labels.append(svg("text", { class: "edge-label", x: bx + (dx < 0 ? -5 : dx > 0 ? 5 : 0),
        y: by + (Math.abs(dx) < 4 ? -4 : 4), "text-anchor": anchor, text: e.label,
        "data-from": e.from, "data-to": e.to }));
    }
  }
  const segs = new Map(doc.graph.segments.map((s) => [s.id, s]));
  const boxes = svg("g", { class: "segments" });
  for (const n of L.nodes) {
    const seg = segs.get(n.id);
    const g = svg("g", { class: "segment", "data-segment": n.id });
    g.append(svg("rect", { class: "seg-box" + (n.start ? " start" : ""), x: n.x, y: n.y,
      width: n.w, height: n.h, rx: 6 }));
    g.append(svg("text", { class: "seg-title", x: n.x + PAD, y: n.y + 16, text: n.id }));
    (seg.shots || []).forEach((shotId, i) => g.append(drawShot(doc, shotId, n.x + PAD + i * SHOT_W,
      n.y + 26)));
    boxes.append(g);
  }
  root.append(edges, boxes, labels);
  return root;
}

function drawShot(doc, shotId, x, y) {
  const shot = doc.shots[shotId];
  const status = shot ? shot.status : "unknown";
  const g = svg("g", { class: "shot" + (state.selected === shotId ? " selected" : ""),
    "data-shot": shotId, "data-status": status, tabindex: 0, role: "button",
    "aria-label": `shot ${shotId}, ${status}`,
    onclick: () => openShot(shotId), onkeydown: (ev) => { if (ev.key === "Enter") openShot(shotId); } });
  g.append(svg("title", { text: `${shotId}: ${status}` }));
  g.append(svg("rect", { class: `frame fr-${status}`, x, y, width: THUMB_W, height: THUMB_H }));
  if (shot && shot.thumb) {
    g.append(svg("image", { href: media(shot.thumb.sha256, shot.thumb.type), x, y,
      width: THUMB_W, height: THUMB_H, preserveAspectRatio: "xMidYMid slice" }));
  }
  const label = shotId.length > 11 ? shotId.slice(0, 10) + "…" : shotId;
  g.append(svg("text", { class: "shot-id", x, y: y + THUMB_H + 13, text: label }));
  const mark = reviewMark(doc.reviews[shotId]);
  if (mark) {
    g.append(svg("text", { class: `badge ${mark.cls}`, x: x + THUMB_W - 2, y: y + THUMB_H + 13,
      "text-anchor": "end", "data-review": mark.cls, text: mark.text },
      svg("title", { text: mark.title })));
  }
  return g;
}

function drawBranch(b) {
  const sheet = el("div", { class: "sheet", "data-branch": b.name },
    ...b.sheet.map((s) => el("figure", { title: `${s.task}: ${s.status}` },
      s.thumb ? el("img", { src: media(s.thumb.sha256, s.thumb.type), alt: s.shot,
        class: `b-${s.status}`, loading: "lazy" }) : el("div", { class: `noimg b-${s.status}` }),
      el("figcaption", { text: s.shot }))));
  const video = b.master
    ? el("video", { class: "master", "data-branch": b.name, controls: true, preload: "metadata",
        src: media(b.master, "mp4") })
    : el("p", { class: "muted", text: b.error ? `No master: ${b.error}` : "No master yet." });
  return el("section", { class: "branch", "data-branch": b.name },
    el("h3", {}, `${b.name} `, statusTag(dash(b.status)),
      el("span", { class: "muted", text: ` ${dash(b.frames)} frames${b.cached ? ", cached" : ""}` })),
    video,
    b.sheet_recorded ? sheet : el("p", { class: "muted", text: "This run record does not list the branch's shots." }));
}

// -- the shot panel ------------------------------------------------------------------------------

function openShot(shotId, keepScroll) {
  const doc = state.run;
  const shot = doc.shots[shotId];
  state.selected = shotId;
  document.querySelectorAll("#graph .shot.selected").forEach((n) => n.classList.remove("selected"));
  const node = document.querySelector(`#graph .shot[data-shot="${CSS.escape(shotId)}"]`);
  if (node) node.classList.add("selected");
  const panel = document.getElementById("panel");
  const body = document.getElementById("panel-body");
  const scroll = panel.scrollTop;
  const typed = keepScroll ? body.querySelector("textarea[name=note]") : null;
  const draft = typed ? typed.value : "";
  const review = doc.reviews[shotId];
  state.panelSig = panelSig(doc, shotId);
  body.replaceChildren(
    el("h2", { text: `Shot ${shotId}` }),
    el("p", {}, shot ? statusTag(shot.status) : "", ` segment ${shot ? dash(shot.segment) : "—"}`),
    reviewBlock(doc, shotId, review),
    ...(shot ? shot.tasks.map(taskBlock) : [el("p", { class: "muted", text: "This run has no task for this shot." })]));
  panel.hidden = false;
  if (draft) body.querySelector("textarea[name=note]").value = draft;  // a note being typed
  if (keepScroll) panel.scrollTop = scroll;
}

function taskBlock(t) {
  const log = el("div", { class: "log-wrap" });
  if (t.log) {
    const pre = el("pre", { class: "log", text: "loading the log…" });
    log.append(pre);
    fetch(`/api/log/${t.log}`, { credentials: "same-origin" })
      .then((r) => r.ok ? r.text() : r.json().then((j) => { throw new Error(j.error); }))
      .then((text) => { pre.textContent = text; })
      .catch((e) => { pre.textContent = `cannot read the log: ${e.message}`; });
  } else {
    log.append(el("p", { class: "muted no-log", text: "no log recorded" }));
  }
  return el("section", { class: "task", "data-task": t.id },
    el("h3", { text: t.id === t.shot ? `Task ${t.id}` : `Continuity variant ${t.id}` }),
    el("dl", {},
      el("dt", { text: "status" }), el("dd", {}, statusTag(t.status)),
      el("dt", { text: "render key" }), el("dd", { class: "mono key", text: dash(t.key) }),
      el("dt", { text: "why" }), el("dd", { class: "why", text: t.reason || "not recorded" }),
      el("dt", { text: "node" }), el("dd", { class: "node", text: dash(t.node) }),
      el("dt", { text: "seconds" }), el("dd", { class: "seconds", text: t.seconds === null ? "—" : t.seconds.toFixed(2) }),
      el("dt", { text: "model load" }), el("dd", { class: "load", text: t.load_seconds === null ? "—" : `${t.load_seconds.toFixed(2)} s` }),
      el("dt", { text: "retries" }), el("dd", { class: "retries", text: dash(t.retries) }),
      el("dt", { text: "backend" }), el("dd", { text: dash(t.backend) }),
      t.since ? el("dt", { text: "running since" }) : null, t.since ? el("dd", { text: when(t.since) }) : null,
      t.error ? el("dt", { text: "error" }) : null, t.error ? el("dd", { class: "error", text: t.error }) : null),
    t.traceback ? el("pre", { class: "log traceback", text: t.traceback }) : null,
    t.clip ? el("video", { class: "clip", controls: true, preload: "metadata", src: media(t.clip, "mp4") })
      : el("p", { class: "muted", text: "no clip" }),
    el("h4", { text: "Log" }), log);
}

function reviewBlock(doc, shotId, review) {
  const box = el("div", { class: "review" });
  if (review) {
    const when = review.when.replace("T", " ").replace(/\.\d+Z$/, " UTC");
    box.append(el("p", { class: "last-review" },
      el("strong", { class: `verdict ${review.verdict}`, text: review.verdict === "approved" ? "Approved" : "Needs changes" }),
      ` by ${review.who}, ${when}, key ${review.key.slice(0, 12)}`,
      review.note ? el("span", { class: "note", text: ` — ${review.note}` }) : null));
    if (review.current === false) {
      box.append(el("p", { class: "stale", text: "This review was for an older take: the shot has been rendered again under another key since." }));
    }
  } else {
    box.append(el("p", { class: "muted", text: "Not reviewed yet." }));
  }
  const who = el("input", { type: "text", name: "who", maxlength: 64, placeholder: "your name",
    value: localStorage.getItem("reelfarm.who") || "" });
  const note = el("textarea", { name: "note", maxlength: 4000, placeholder: "note (what needs changing)" });
  const msg = el("p", { class: "review-msg muted" });
  const send = async (verdict) => {
    msg.textContent = "saving…";
    if (who.value.trim()) localStorage.setItem("reelfarm.who", who.value.trim());
    try {
      await api(`/api/reviews/${encodeURIComponent(doc.summary.story)}/${encodeURIComponent(doc.summary.run_id)}/${encodeURIComponent(shotId)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Reelfarm-Request": "1" },
        body: JSON.stringify({ verdict, note: note.value, who: who.value.trim() || null }),
      });
      note.value = "";
      const fresh = await api(`/api/runs/${encodeURIComponent(doc.summary.story)}/${encodeURIComponent(doc.summary.run_id)}`);
      state.run = fresh;
      refreshRun(fresh);
    } catch (e) {
      msg.textContent = `Not saved: ${e.message}`;
      msg.className = "review-msg error";
    }
  };
  box.append(el("div", { class: "review-form" }, who, note,
    el("button", { type: "button", class: "approve", onclick: () => send("approved"), text: "Approve" }),
    " ",
    el("button", { type: "button", class: "changes", onclick: () => send("changes"), text: "Needs changes" }),
    msg));
  return box;
}

// -- routing ---------------------------------------------------------------------------------------

function route() {
  document.getElementById("panel").hidden = true;
  state.selected = null;
  const m = location.hash.match(/^#\/run\/([^/]+)\/([^/]+)$/);
  if (m) showRun(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
  else showRuns();
}

document.getElementById("panel-close").addEventListener("click", () => {
  document.getElementById("panel").hidden = true;
  state.selected = null;
  document.querySelectorAll("#graph .shot.selected").forEach((n) => n.classList.remove("selected"));
});
window.addEventListener("hashchange", route);
route();
