// Listening-test page: multi-stimulus ratings with sample-aligned, click-free switching (Web Audio).
// Every stimulus of a trial is decoded into an AudioBuffer; on Play all of them start looping at one
// AudioContext time, each through its own gain node, and switching only ramps the gains (5 ms), so the
// playback position is kept and no stimulus is ever restarted. Works from file:// (audio comes as scripts).
"use strict";
(function () {
  const TEST = window.FXLISTEN_TEST;
  const RAMP_S = 0.005;
  const START_DELAY_S = 0.05;
  const $ = (id) => document.getElementById(id);
  const state = {
    ctx: null, analyser: null, index: -1, buffers: {}, gains: {}, sources: [], t0: null,
    selected: null, playing: false, heard: new Set(), trialStart: 0, results: [], participant: "",
    started: null, blobUrl: null, posted: null,
  };

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = () => { s.remove(); resolve(); };
      s.onerror = () => reject(new Error("cannot load " + src));
      document.head.appendChild(s);
    });
  }

  async function loadBuffer(id) {
    if (state.buffers[id]) return state.buffers[id];
    const store = (window.fxlistenAudio = window.fxlistenAudio || {});
    if (!store[id]) await loadScript("audio/" + id + ".js");
    const text = atob(store[id]);
    delete store[id];
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    state.buffers[id] = await state.ctx.decodeAudioData(bytes.buffer);
    return state.buffers[id];
  }

  function trial() { return TEST.trials[state.index]; }
  function duration() { return state.buffers[trial().stimuli[0]].duration; }

  function position() {
    if (!state.playing) return 0;
    const t = state.ctx.currentTime - state.t0;
    return t < 0 ? 0 : t % duration();
  }

  function setGain(id, value) {
    const g = state.gains[id].gain, now = state.ctx.currentTime;
    g.cancelScheduledValues(now);
    g.setValueAtTime(g.value, now);
    g.linearRampToValueAtTime(value, now + RAMP_S);
  }

  function markHeard() {
    if (!state.playing || !state.selected) return;
    state.heard.add(state.selected);
    const btn = document.querySelector('.stim[data-id="' + state.selected + '"]');
    if (btn) btn.classList.add("heard");
    updateNext();
  }

  function select(id) {
    if (state.selected && state.selected !== id) setGain(state.selected, 0);
    state.selected = id;
    setGain(id, 1);
    document.querySelectorAll(".stim").forEach((b) => b.classList.toggle("selected", b.dataset.id === id));
    if (!state.playing) play(); else markHeard();
  }

  function play() {
    stopSources();
    const t0 = state.ctx.currentTime + START_DELAY_S;
    for (const id of trial().stimuli) {
      const src = state.ctx.createBufferSource();
      src.buffer = state.buffers[id];
      src.loop = true;
      src.connect(state.gains[id]);
      src.start(t0);
      state.sources.push({ id: id, node: src, startedAt: t0 });
    }
    state.t0 = t0;
    state.playing = true;
    $("play").textContent = "Stop";
    markHeard();
  }

  function stopSources() {
    for (const s of state.sources) s.node.stop();
    state.sources = [];
    state.playing = false;
    $("play").textContent = "Play";
  }

  function tick() {
    if (state.index >= 0 && state.index < TEST.trials.length && state.ctx) {
      const pos = position();
      $("time").textContent = pos.toFixed(1) + " s";
      $("bar").style.width = (state.playing ? (100 * pos) / duration() : 0) + "%";
    }
    requestAnimationFrame(tick);
  }

  function updateNext() {
    const missing = trial().stimuli.length - state.heard.size;
    $("next").disabled = missing > 0;
    $("status").textContent = missing > 0 ? "Listen to every mix (" + missing + " not heard yet)." : "";
  }

  function label(i) { return String.fromCharCode(65 + i); }

  function buildTable(t) {
    const table = $("rate");
    table.innerHTML = "";
    const head = table.insertRow();
    head.appendChild(document.createElement("th"));
    t.stimuli.forEach((id, i) => {
      const th = document.createElement("th");
      const b = document.createElement("button");
      b.className = "stim";
      b.dataset.id = id;
      b.textContent = label(i);
      b.title = "key " + (i + 1);
      b.addEventListener("click", () => select(id));
      th.appendChild(b);
      head.appendChild(th);
    });
    for (const a of TEST.attributes) {
      const row = table.insertRow();
      const th = document.createElement("th");
      th.className = "attr";
      th.innerHTML = a.label + '<br><span class="scale">' + a.question + "</span>";
      row.appendChild(th);
      t.stimuli.forEach((id) => {
        const td = row.insertCell();
        const s = document.createElement("input");
        Object.assign(s, { type: "range", min: 0, max: 100, step: 1, value: 50 });
        s.dataset.stim = id;
        s.dataset.attr = a.id;
        const v = document.createElement("span");
        v.className = "value";
        v.textContent = "50";
        s.addEventListener("input", () => { v.textContent = s.value; });
        td.appendChild(s);
        td.appendChild(v);
      });
    }
  }

  async function showTrial(i) {
    stopSources();
    state.index = i;
    state.heard = new Set();
    state.selected = null;
    const t = trial();
    const real = TEST.trials.filter((x) => x.kind !== "training").length;
    const k = TEST.trials.filter((x, j) => j <= i && x.kind !== "training").length;
    $("trial-title").textContent = t.kind === "training" ? "Practice" : "Trial " + k + " of " + real;
    $("trial-note").textContent = t.kind === "training"
      ? "Get to know the mixes, the switching and the sliders. These ratings are not used."
      : "Press Play, switch between the mixes and rate each one.";
    $("next").disabled = true;
    $("status").textContent = "Loading audio ...";
    await Promise.all(t.stimuli.map(loadBuffer));
    state.gains = {};
    for (const id of t.stimuli) {
      const g = state.ctx.createGain();
      g.gain.value = 0;
      g.connect(state.analyser);
      state.gains[id] = g;
    }
    buildTable(t);
    updateNext();
    state.trialStart = performance.now();
  }

  function collect() {
    const t = trial();
    const ratings = {};
    for (const id of t.stimuli) ratings[id] = {};
    document.querySelectorAll("#rate input[type=range]").forEach((s) => {
      ratings[s.dataset.stim][s.dataset.attr] = Number(s.value);
    });
    const row = { id: t.id, kind: t.kind, ratings: ratings, heard: Array.from(state.heard),
      seconds: Math.round((performance.now() - state.trialStart) / 100) / 10 };
    if (t.repeat_of) row.repeat_of = t.repeat_of;
    state.results.push(row);
    for (const id of t.stimuli) delete state.buffers[id];
  }

  function results() {
    return { format: TEST.format, version: 1, test_id: TEST.test_id, participant: state.participant,
      started: state.started, finished: new Date().toISOString(), user_agent: navigator.userAgent,
      sample_rate: state.ctx ? state.ctx.sampleRate : null, trials: state.results };
  }

  async function finish() {
    stopSources();
    $("trial").classList.add("hidden");
    $("done").classList.remove("hidden");
    const text = JSON.stringify(results(), null, 1);
    state.blobUrl = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    const a = $("download");
    a.href = state.blobUrl;
    a.download = "results-" + (state.participant || "anonymous").replace(/[^A-Za-z0-9_-]+/g, "_") + ".json";
    if (location.protocol === "http:" || location.protocol === "https:") {
      try {
        const r = await fetch("results", { method: "POST", headers: { "Content-Type": "application/json" }, body: text });
        state.posted = r.ok;
        $("post-status").textContent = r.ok ? "Your results were saved." : "Saving failed (" + r.status + "): please download them.";
      } catch (err) {
        state.posted = false;
        $("post-status").textContent = "Saving failed: please download your results.";
      }
    }
  }

  async function next() {
    markHeard();
    collect();
    if (state.index + 1 < TEST.trials.length) await showTrial(state.index + 1);
    else await finish();
  }

  async function start() {
    state.participant = $("participant").value.trim();
    state.started = new Date().toISOString();
    $("start").disabled = true;
    $("loading").textContent = "Loading ...";
    try {
      state.ctx = new AudioContext({ sampleRate: 44100 });
    } catch (err) {
      state.ctx = new AudioContext();
    }
    await state.ctx.resume();
    state.analyser = state.ctx.createAnalyser();
    state.analyser.fftSize = 2048;
    state.analyser.connect(state.ctx.destination);
    await showTrial(0);
    $("intro").classList.add("hidden");
    $("trial").classList.remove("hidden");
  }

  function init() {
    const dl = $("attributes");
    for (const a of TEST.attributes) {
      const dt = document.createElement("dt");
      dt.textContent = a.label;
      const dd = document.createElement("dd");
      dd.textContent = a.question;
      dl.appendChild(dt);
      dl.appendChild(dd);
    }
    $("start").addEventListener("click", start);
    $("play").addEventListener("click", () => {
      if (state.playing) stopSources(); else select(state.selected || trial().stimuli[0]);
    });
    $("next").addEventListener("click", next);
    document.addEventListener("keydown", (e) => {
      if (state.index < 0 || $("trial").classList.contains("hidden") || e.repeat) return;
      if (e.key >= "1" && e.key <= "9") {
        const id = trial().stimuli[Number(e.key) - 1];
        if (id) { select(id); e.preventDefault(); }
      }
    });
    requestAnimationFrame(tick);
  }

  // For tests and the curious: the page's state (no method is named anywhere in the page).
  window.fxlisten = {
    state: () => ({ index: state.index, playing: state.playing, selected: state.selected, position: position(),
      heard: Array.from(state.heard), sources: state.sources.map((s) => ({ id: s.id, startedAt: s.startedAt })) }),
    context: () => state.ctx,
    analyser: () => state.analyser,
    buffer: (id) => state.buffers[id],
    results: results,
    downloadUrl: () => state.blobUrl,
    posted: () => state.posted,
  };
  init();
})();
