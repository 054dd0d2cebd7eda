// reelfarm branching player: plays story.json with Media Source Extensions on one continuous
// timeline. One MediaSource, one SourceBuffer: every shot is appended at the end of the timeline
// with a timestampOffset, so a choice continues without a reload or a black frame.
//
// Testability contract: window.reelfarmPlayer.events is a list of
//   {type: "shot" | "choice" | "end", segment, shot, option, t}
// (t: seconds on the video timeline), and index.html?choices=0,1,0 plays that path unattended.
(function () {
  "use strict";

  const LEAD = 0.25; // seconds before a segment's end when the default is taken on timeout
  const params = new URLSearchParams(window.location.search);
  const scripted = params.has("choices")
    ? params.get("choices").split(",").filter((s) => s.trim() !== "").map((s) => Number(s.trim()))
    : null;

  const api = {
    events: [],
    state: "loading", // loading | playing | choosing | ended | error
    error: null,
    path: [], // labels of the options taken
    prefetched: [], // URIs fetched ahead during choice windows
    metrics: { gaps: [], waits: [] },
    story: null,
    choose: (i) => decide(i, "api"),
    restart: () => restart(),
    back: () => backToLastChoice(),
  };
  window.reelfarmPlayer = api;

  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const ui = {
    choice: $("choice"), prompt: $("choice-prompt"), options: $("choice-options"),
    bar: $("choice-bar"), message: $("message"), messageText: $("message-text"),
    play: $("play"), restart: $("restart"), back: $("back"), path: $("path"),
    status: $("status"), title: $("title"),
  };

  let story = null;
  let fps = 24;
  let segById = {};
  let mediaSource = null;
  let sb = null;
  let appendChain = Promise.resolve();
  let generation = 0; // bumps on restart/back: stale async work checks it and stops
  let currentInit = null;
  const cache = new Map(); // uri -> Promise<ArrayBuffer>

  // the timeline: story segments placed end to end, in frames (exact), and their shots
  let placed = []; // {seg, shots: [task ids], start, end, after}
  let shotsOnTimeline = []; // {task, shot, segment, t0, emitted}
  let endFrames = 0;
  let pending = null; // {index, opened, decided, openedAt, scriptedIndex}
  let choicesMade = []; // {placedIndex, label}
  let ended = false;

  class PlayerError extends Error {}
  class QuotaError extends Error {}

  // -- loading ----------------------------------------------------------------------------------

  function fetchBytes(uri) {
    if (!cache.has(uri)) {
      const p = fetch(uri).then((r) => {
        if (!r.ok) throw new PlayerError(`${uri} could not be loaded (HTTP ${r.status})`);
        return r.arrayBuffer();
      }, () => { throw new PlayerError(`${uri} could not be loaded (network error)`); });
      p.catch(() => cache.delete(uri)); // a failed fetch may be retried later
      cache.set(uri, p);
    }
    return cache.get(uri);
  }

  function append(buf) {
    return new Promise((resolve, reject) => {
      const done = () => { off(); resolve(); };
      const fail = () => { off(); reject(new PlayerError("the browser could not decode a media segment")); };
      const off = () => { sb.removeEventListener("updateend", done); sb.removeEventListener("error", fail); };
      sb.addEventListener("updateend", done);
      sb.addEventListener("error", fail);
      try {
        sb.appendBuffer(buf);
      } catch (e) {
        off();
        reject(e && e.name === "QuotaExceededError" ? new QuotaError() : new PlayerError(`a media segment could not be added (${e.name})`));
      }
    });
  }

  // Played media more than KEEP_BEHIND seconds back leaves the buffer, so a long story stays
  // within the browser's SourceBuffer quota (restart and back re-append what they replay).
  const KEEP_BEHIND = 30;

  function removeRange(from, to) {
    return new Promise((resolve) => {
      sb.addEventListener("updateend", resolve, { once: true });
      sb.remove(from, to);
    });
  }

  async function appendWithRoom(buf) {
    const behind = video.currentTime - KEEP_BEHIND;
    if (sb.buffered.length && sb.buffered.start(0) < behind - 1) await removeRange(0, behind);
    try {
      await append(buf);
    } catch (e) {
      if (!(e instanceof QuotaError)) throw e;
      const keep = video.currentTime - 1;
      if (!(sb.buffered.length && sb.buffered.start(0) < keep)) throw new PlayerError("the browser has no room for more video");
      await removeRange(0, keep);
      await append(buf);
    }
  }

  function removeFrom(t) {
    return new Promise((resolve) => {
      if (!sb.buffered.length || sb.buffered.end(sb.buffered.length - 1) <= t) { resolve(); return; }
      sb.addEventListener("updateend", resolve, { once: true });
      sb.remove(t, Infinity);
    });
  }

  // Serialize SourceBuffer work; a failure shows the viewer a message.
  function queue(work) {
    const gen = generation;
    appendChain = appendChain.then(() => (gen === generation ? work(gen) : undefined))
      .catch((e) => fail(e));
    return appendChain;
  }

  function pickVariant(segId, afterTask) {
    const seg = segById[segId];
    return seg.variants.find((v) => v.after === null || v.after.includes(afterTask)) || seg.variants[0];
  }

  function lastTask() {
    return placed.length ? placed[placed.length - 1].shots.slice(-1)[0] : null;
  }

  // Place a story segment at the end of the timeline (and the segments after it, while they
  // follow without a choice). Returns once the first media segment of it is appended.
  function place(segId, onFirstAppended) {
    const after = lastTask();
    const variant = pickVariant(segId, after);
    const index = placed.length;
    const startFrames = endFrames;
    const entry = { seg: segId, shots: variant.shots, start: startFrames, end: startFrames, after };
    placed.push(entry);
    for (const tid of variant.shots) {
      const s = story.shots[tid];
      shotsOnTimeline.push({ task: tid, shot: s.shot, segment: segId, t0: endFrames / fps, emitted: false, offsetFrames: endFrames - Math.round(s.start * fps) });
      endFrames += s.frames;
    }
    entry.end = endFrames;
    const seg = segById[segId];
    const mine = shotsOnTimeline.slice(shotsOnTimeline.length - variant.shots.length);
    queue(async (gen) => {
      let first = true;
      for (const item of mine) {
        const s = story.shots[item.task];
        if (s.init !== currentInit) {
          await append(await fetchBytes(s.init));
          if (gen !== generation) return;
          currentInit = s.init;
        }
        sb.timestampOffset = item.offsetFrames / fps;
        for (const m of s.media) {
          const buf = await fetchBytes(m.uri);
          if (gen !== generation) return;
          await appendWithRoom(buf);
          if (gen !== generation) return;
          if (first) { first = false; if (onFirstAppended) onFirstAppended(); }
        }
      }
      if (seg.ending && mediaSource.readyState === "open") mediaSource.endOfStream();
    });
    if (seg.choice) {
      pending = { index, opened: false, decided: false, scriptedIndex: choicesMade.length };
    } else if (seg.next) {
      place(seg.next, null);
    } else {
      pending = null;
    }
    updateControls();
  }

  // -- choices ----------------------------------------------------------------------------------

  function choiceTimes(p) {
    const entry = placed[p.index];
    const seg = segById[entry.seg];
    const end = entry.end / fps;
    const open = Math.max(entry.start / fps, end - seg.choice.window);
    return { open, end, close: Math.max(open, end - LEAD) };
  }

  function openChoice() {
    const entry = placed[pending.index];
    const seg = segById[entry.seg];
    const c = seg.choice;
    pending.opened = true;
    api.state = "choosing";
    // prefetch the first media segment (and init) of every option's continuation
    const after = entry.shots[entry.shots.length - 1];
    for (const o of c.options) {
      const s = story.shots[pickVariant(o.next, after).shots[0]];
      for (const uri of [s.init, s.media[0].uri]) {
        if (!api.prefetched.includes(uri)) api.prefetched.push(uri);
        fetchBytes(uri).catch(() => {}); // an error shows when (if) this option is taken
      }
    }
    ui.prompt.textContent = c.prompt || "What happens next?";
    ui.options.replaceChildren();
    c.options.forEach((o, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = o.label;
      b.dataset.option = String(i);
      b.setAttribute("aria-label", `Option ${i + 1} of ${c.options.length}: ${o.label}` +
        (i === c.default ? " (taken if you do not choose)" : ""));
      if (i === c.default) b.classList.add("default");
      b.addEventListener("click", () => decide(i, "pointer"));
      ui.options.appendChild(b);
    });
    const t = choiceTimes(pending);
    ui.bar.style.transition = "none";
    ui.bar.style.transform = "scaleX(1)";
    void ui.bar.offsetWidth;
    ui.bar.style.transition = `transform ${Math.max(0, t.close - video.currentTime)}s linear`;
    ui.bar.style.transform = "scaleX(0)";
    ui.choice.hidden = false;
    updateControls();
    ui.status.textContent = `${ui.prompt.textContent} ${c.options.map((o, i) => `${i + 1}: ${o.label}`).join(", ")}`;
    const def = ui.options.children[c.default];
    if (def) def.focus({ preventScroll: true });
    if (scripted && pending.scriptedIndex < scripted.length) {
      const want = scripted[pending.scriptedIndex];
      if (Number.isInteger(want) && want >= 0 && want < c.options.length) {
        decide(want, "script");
      } else {
        fail(new PlayerError(`?choices= asks for option ${scripted[pending.scriptedIndex]} at choice ${pending.scriptedIndex + 1}, which has ${c.options.length} options`));
      }
    }
  }

  function decide(option, via) {
    if (!pending || pending.decided || !pending.opened) return false;
    const entry = placed[pending.index];
    const seg = segById[entry.seg];
    const c = seg.choice;
    if (!(option >= 0 && option < c.options.length)) return false;
    const clicked = performance.now();
    pending.decided = true;
    ui.choice.hidden = true;
    const o = c.options[option];
    const boundary = entry.end / fps;
    api.events.push({
      type: "choice", segment: entry.seg, shot: story.shots[entry.shots[entry.shots.length - 1]].shot,
      option, t: video.currentTime, label: o.label, next: o.next, via, at: boundary,
    });
    api.path.push(o.label);
    choicesMade.push({ placedIndex: pending.index, label: o.label });
    renderPath();
    api.state = "playing";
    ui.status.textContent = `Chose ${o.label}`;
    place(o.next, () => {
      api.metrics.waits.push({ segment: entry.seg, option, ms: performance.now() - clicked, via });
      api.metrics.gaps.push({ segment: entry.seg, at: boundary, gap: gapAt(boundary) });
    });
    return true;
  }

  // The hole in the buffered media timeline at `t` (0 when one range runs through it).
  function gapAt(t) {
    const b = video.buffered;
    const eps = 0.5 / fps;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= t - eps && b.end(i) >= t + eps) return 0;
    }
    let before = null, after = null;
    for (let i = 0; i < b.length; i++) {
      if (b.end(i) <= t + eps) before = b.end(i);
      if (after === null && b.start(i) >= t - eps) after = b.start(i);
    }
    if (before === null || after === null) return Infinity;
    return Math.max(0, after - before);
  }

  // -- the clock --------------------------------------------------------------------------------

  function tick() {
    if (!story || api.state === "error") return;
    const t = video.currentTime;
    for (const s of shotsOnTimeline) {
      if (!s.emitted && s.t0 <= t + 1e-3) {
        s.emitted = true;
        api.events.push({ type: "shot", segment: s.segment, shot: s.shot, task: s.task, option: null, t: s.t0 });
      }
    }
    if (pending && !pending.decided) {
      const times = choiceTimes(pending);
      if (!pending.opened && t >= times.open - 1e-3) openChoice();
      if (pending && pending.opened && !pending.decided && t >= times.close - 1e-3) {
        decide(segById[placed[pending.index].seg].choice.default, "timeout");
      }
    }
    const last = placed[placed.length - 1];
    if (!ended && last && segById[last.seg].ending && shotsOnTimeline.every((s) => s.emitted) &&
        (video.ended || t >= last.end / fps - 1.5 / fps)) {
      ended = true;
      api.state = "ended";
      const lastShot = shotsOnTimeline[shotsOnTimeline.length - 1];
      api.events.push({ type: "end", segment: last.seg, shot: lastShot.shot, option: null, t });
      ui.status.textContent = "The end";
    }
  }

  // -- controls ---------------------------------------------------------------------------------

  function renderPath() {
    ui.path.replaceChildren(...api.path.map((label) => {
      const li = document.createElement("li");
      li.textContent = label;
      return li;
    }));
    updateControls();
  }

  function updateControls() {
    ui.back.disabled = choicesMade.length === 0 && !(pending && pending.opened);
  }

  async function resetTo(placedIndex) {
    generation += 1;
    const entry = placed[placedIndex];
    const from = entry.start / fps;
    placed = placed.slice(0, placedIndex);
    shotsOnTimeline = shotsOnTimeline.filter((s) => s.t0 < from - 1e-6);
    endFrames = entry.start;
    pending = null;
    ended = false;
    ui.choice.hidden = true;
    const gen = generation;
    appendChain = appendChain.catch(() => {}).then(async () => {
      if (sb.updating) await new Promise((r) => sb.addEventListener("updateend", r, { once: true }));
      await removeFrom(from);
    });
    await appendChain;
    if (gen !== generation) return null;
    return entry;
  }

  // After a decode error the MediaSource is closed for good: start over with a fresh page.
  function unrecoverable() {
    if (api.state === "error" && mediaSource && mediaSource.readyState === "closed") {
      window.location.reload();
      return true;
    }
    return false;
  }

  async function restart() {
    if (!story || unrecoverable()) return;
    hideMessage();
    choicesMade = [];
    api.path = [];
    renderPath();
    if (placed.length) await resetTo(0);
    api.state = "playing";
    place(story.start, null);
    video.currentTime = 0;
    playVideo();
  }

  async function backToLastChoice() {
    if (!story || unrecoverable()) return;
    hideMessage();
    let target;
    if (pending && pending.opened && !pending.decided) {
      target = choicesMade.length ? choicesMade[choicesMade.length - 1].placedIndex : pending.index;
    } else if (choicesMade.length) {
      target = choicesMade[choicesMade.length - 1].placedIndex;
    } else {
      return;
    }
    // undo the choice made at `target` (and everything after it); replay its window
    const keep = choicesMade.filter((c) => c.placedIndex < target);
    choicesMade = keep;
    api.path = keep.map((c) => c.label);
    renderPath();
    const entry = await resetTo(target);
    if (!entry) return;
    api.state = "playing";
    place(entry.seg, null);
    const p = pending;
    video.currentTime = p ? choiceTimes(p).open : entry.start / fps;
    playVideo();
  }

  function playVideo() {
    const p = video.play();
    if (p && p.catch) {
      p.then(() => { ui.play.hidden = true; }, () => { ui.play.hidden = false; });
    }
  }

  // -- errors -----------------------------------------------------------------------------------

  function fail(e) {
    const detail = e instanceof PlayerError ? e.message : `unexpected error: ${e && e.message ? e.message : e}`;
    api.state = "error";
    api.error = detail;
    ui.choice.hidden = true;
    ui.messageText.textContent = `Sorry, this part of the story cannot be played: ${detail}.`;
    ui.message.hidden = false;
    video.pause();
    console.error("reelfarm player:", detail);
  }

  function hideMessage() {
    ui.message.hidden = true;
    api.error = null;
  }

  // -- start ------------------------------------------------------------------------------------

  async function start() {
    let doc;
    try {
      const r = await fetch("story.json", { cache: "no-cache" });
      if (!r.ok) throw new PlayerError(`story.json could not be loaded (HTTP ${r.status})`);
      doc = await r.json();
    } catch (e) {
      fail(e instanceof PlayerError ? e : new PlayerError("story.json could not be read"));
      return;
    }
    if (doc.version !== 1) { fail(new PlayerError(`story.json version ${doc.version} is not supported by this player`)); return; }
    if (!window.MediaSource || !MediaSource.isTypeSupported(doc.video.mime)) {
      fail(new PlayerError(`this browser cannot play ${doc.video.mime} with Media Source Extensions`));
      return;
    }
    story = doc;
    api.story = doc;
    fps = doc.video.fps;
    segById = Object.fromEntries(doc.segments.map((s) => [s.id, s]));
    ui.title.textContent = doc.title || doc.story;
    document.title = `${doc.title || doc.story} · reelfarm`;
    mediaSource = new MediaSource();
    video.src = URL.createObjectURL(mediaSource);
    await new Promise((r) => mediaSource.addEventListener("sourceopen", r, { once: true }));
    sb = mediaSource.addSourceBuffer(doc.video.mime);
    sb.mode = "segments";
    api.state = "playing";
    place(story.start, () => playVideo());
    setInterval(tick, 20);
  }

  video.addEventListener("timeupdate", tick);
  video.addEventListener("ended", tick);
  video.addEventListener("error", () => {
    const err = video.error;
    fail(new PlayerError(`the video stopped with a media error (code ${err ? err.code : "?"})`));
  });
  ui.play.addEventListener("click", () => playVideo());
  ui.restart.addEventListener("click", () => restart());
  ui.back.addEventListener("click", () => backToLastChoice());
  ui.message.querySelector("#message-restart").addEventListener("click", () => window.location.reload());
  document.addEventListener("keydown", (ev) => {
    if (ui.choice.hidden || !pending) return;
    const n = Number(ev.key);
    if (Number.isInteger(n) && n >= 1 && n <= 9) {
      if (decide(n - 1, "keyboard")) ev.preventDefault();
    } else if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      const buttons = [...ui.options.children];
      const i = buttons.indexOf(document.activeElement);
      const j = (i + (ev.key === "ArrowRight" ? 1 : buttons.length - 1)) % buttons.length;
      buttons[j].focus();
      ev.preventDefault();
    }
  });
  start();
})();
