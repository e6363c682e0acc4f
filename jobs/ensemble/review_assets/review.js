/* The review page of an ensemble run (written by `vw ensemble --report DIR`).
 *
 * window.VW_INDEX (embedded in index.html) holds the run; data/<video>.js files call
 * VW_REVIEW.loaded(slug, document) with one video's events by timeline row.
 * VW_REVIEW.state tells what is shown and played (read by the browser test).
 */
(function () {
  "use strict";

  const INDEX = window.VW_INDEX;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#8ca252", "#7b4173", "#e7ba52", "#3182bd", "#e6550d",
    "#31a354", "#756bb1", "#636363"];
  const CATEGORY_TEXT = {
    agree: "models agree", only: "only one model", disagree: "models disagree",
    found: "ground truth found", missed: "ground truth missed",
  };
  const docs = {};
  const waiting = {};
  const state = { slug: null, classes: null, categories: new Set(INDEX.categories), playing: null, errors: [] };
  let playToken = 0;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(typeof c === "string" ? document.createTextNode(c) : c));
    return node;
  }

  function clock(seconds) {
    const m = Math.floor(seconds / 60);
    const s = seconds - 60 * m;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }

  /* Times go to Plotly's date axis as text ("1970-01-01 00:12:34.5"): its range slider draws
   * NaN positions for millisecond numbers. */
  function iso(seconds) { return new Date(seconds * 1000).toISOString().replace("T", " ").replace("Z", ""); }

  function fmt(value) { return value === null || value === undefined ? "-" : Number(value).toFixed(3); }

  function escapeHtml(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function wrap(text, width) {
    const out = [];
    for (let i = 0; i < text.length; i += width) out.push(escapeHtml(text.slice(i, i + width)));
    return out.join("<br>");
  }

  const labelColour = {};
  function colour(label) {
    if (!(label in labelColour)) {
      const known = INDEX.classes.indexOf(label);
      const n = Object.keys(labelColour).length;
      labelColour[label] = PALETTE[(known >= 0 ? known : INDEX.classes.length + n) % PALETTE.length];
    }
    return labelColour[label];
  }

  /* ---------------------------------------------------------------- loading */

  function load(slug) {
    if (docs[slug]) return Promise.resolve(docs[slug]);
    return new Promise((resolve, reject) => {
      waiting[slug] = resolve;
      const script = el("script", { src: "data/" + encodeURIComponent(slug) + ".js" });
      script.onerror = () => reject(new Error("could not load data/" + slug + ".js"));
      document.head.appendChild(script);
    });
  }

  function loaded(slug, doc) {
    docs[slug] = doc;
    if (waiting[slug]) { waiting[slug](doc); delete waiting[slug]; }
  }

  /* ---------------------------------------------------------------- timeline */

  function hoverText(row, i) {
    const lines = ["<b>" + escapeHtml(row.label[i]) + "</b> at " + clock(row.t[i]) + " (" + escapeHtml(row.name) + ")"];
    if (row.conf[i] !== null) lines.push("confidence " + row.conf[i].toFixed(3));
    if (row.team[i]) lines.push("team " + escapeHtml(row.team[i]));
    if (row.kind === "truth" && !row.visible[i]) lines.push("not shown on screen");
    let cat = CATEGORY_TEXT[row.cat[i]];
    if (row.tp[i] === true) cat += ", true positive";
    if (row.tp[i] === false) cat += ", false positive";
    lines.push(cat);
    if (row.details[i]) lines.push("details: " + wrap(row.details[i], 80));
    if (row.raw[i]) lines.push("raw: " + wrap(row.raw[i], 80));
    return lines.join("<br>");
  }

  function symbol(row, i) {
    if (row.kind === "truth") return row.visible[i] ? "circle-open" : "square-open";
    if (row.kind === "fused") return row.tp[i] === false ? "diamond-open" : "diamond";
    return row.tp[i] === false ? "x" : "circle";
  }

  function shown(row, i) {
    return state.classes.has(row.label[i]) && state.categories.has(row.cat[i]);
  }

  function traces(doc) {
    return doc.rows.map((row, r) => {
      const index = [];
      row.t.forEach((_, i) => { if (shown(row, i)) index.push(i); });
      return {
        type: "scatter", mode: "markers", name: row.name, showlegend: false,
        x: index.map((i) => iso(row.t[i])), y: index.map(() => row.name),
        customdata: index.map((i) => hoverText(row, i)),
        hovertemplate: "%{customdata}<extra></extra>",
        marker: {
          size: row.kind === "truth" ? 11 : 10,
          color: index.map((i) => colour(row.label[i])),
          symbol: index.map((i) => symbol(row, i)),
          opacity: index.map((i) => (row.conf[i] === null ? 1 : Math.max(0.3, Math.min(1, row.conf[i])))),
          line: { width: row.kind === "truth" ? 2 : 1, color: index.map((i) => colour(row.label[i])) },
        },
        meta: { row: r, index: index },
      };
    });
  }

  function span(doc) {
    let end = doc.duration_s || 0;
    doc.rows.forEach((row) => row.t.forEach((t) => { end = Math.max(end, t + 5); }));
    return [0, Math.max(end, 10)];
  }

  function layout(doc, range) {
    const whole = span(doc);
    return {
      margin: { l: 110, r: 20, t: 30, b: 40 }, height: 120 + 55 * doc.rows.length,
      dragmode: "zoom", hovermode: "closest",
      title: { text: doc.video_id + (doc.game ? " — " + doc.game + ", half " + doc.half : ""), font: { size: 13 } },
      xaxis: {
        type: "date", range: (range || whole).map(iso),
        tickformat: whole[1] >= 3600 ? "%H:%M:%S" : "%M:%S", rangeslider: { visible: true, thickness: 0.08 },
      },
      yaxis: {
        type: "category", fixedrange: true, automargin: true,
        categoryorder: "array", categoryarray: doc.rows.map((r) => r.name).reverse(),
      },
    };
  }

  function draw(range) {
    const doc = docs[state.slug];
    const gd = $("timeline");
    Plotly.react(gd, traces(doc), layout(doc, range), { responsive: true, displaylogo: false, scrollZoom: true });
    if (!gd.dataset.bound) {
      gd.dataset.bound = "1";
      gd.on("plotly_click", (event) => {
        const point = event.points[0];
        const meta = point.data.meta;
        const current = docs[state.slug];
        play(current, current.rows[meta.row], meta.index[point.pointIndex]);
      });
    }
    state.marks = {};
    doc.rows.forEach((row, r) => { state.marks[row.name] = gd.data[r].x.length; });
  }

  function zoomTo(start, end) {
    const doc = docs[state.slug];
    const pad = Math.max(20, (end - start) / 2);
    Plotly.relayout($("timeline"), { "xaxis.range": [iso(Math.max(0, start - pad)), iso(end + pad)] });
    return doc;
  }

  function selectVideo(slug) {
    state.slug = slug;
    $("video").value = slug;
    return load(slug).then(() => { draw(); return docs[slug]; }, (err) => report(err.message));
  }

  /* ---------------------------------------------------------------- player */

  function report(message) {
    state.errors.push(message);
    const box = $("now-playing");
    box.textContent = message;
    box.className = "error";
  }

  function sourcesFor(doc, t) {
    const out = [];
    const readable = doc.href && (doc.href.startsWith("http") || location.protocol === "file:");
    if (readable) out.push({ kind: "uri", src: doc.href, offset: 0, start: 0 });
    const clip = doc.clips.find((c) => c.start_s <= t && t <= c.end_s);
    if (clip) out.push({ kind: "clip", src: clip.file, offset: clip.start_s, start: clip.start_s });
    return out;
  }

  function play(doc, row, i) {
    const t = row.t[i];
    const sources = sourcesFor(doc, t);
    const what = row.name + ": " + row.label[i] + (row.conf[i] !== null ? " " + row.conf[i].toFixed(2) : "") +
      " at " + clock(t);
    if (!sources.length) {
      const why = doc.uri ? "the browser cannot read " + doc.uri + " from this page" : "the video has no file";
      report("Cannot play " + what + ": " + why + ", and the report has no clip of this moment " +
        "(write the report with --clips).");
      return;
    }
    start(doc, sources, 0, t, what);
  }

  function start(doc, sources, k, t, what) {
    const player = $("player");
    const source = sources[k];
    const token = ++playToken;
    const target = Math.max(source.start, t - INDEX.play.before_s);
    const stopAt = t + INDEX.play.after_s;
    state.playing = { video_id: doc.video_id, t: t, source: source.kind, offset: source.offset, target: target,
      stop: stopAt, what: what };
    const box = $("now-playing");
    box.className = "";
    box.textContent = "Playing " + what + " (from " + clock(target) + " to " + clock(stopAt) + ", " +
      (source.kind === "uri" ? "the video file" : "a clip of the report") + ")";
    player.onerror = () => {
      if (token !== playToken) return;
      if (k + 1 < sources.length) start(doc, sources, k + 1, t, what);
      else report("Cannot play " + what + ": the browser could not read " + source.src +
        (player.error && player.error.message ? " (" + player.error.message + ")" : ""));
    };
    player.ontimeupdate = () => {
      if (token === playToken && player.currentTime + source.offset >= stopAt) player.pause();
    };
    const go = () => {
      if (token !== playToken) return;
      player.addEventListener("seeked", () => {
        if (token === playToken) state.playing.seekedAt = player.currentTime + source.offset;
      }, { once: true });
      player.currentTime = Math.max(0, target - source.offset);
      const started = player.play();
      if (started) started.catch((err) => { if (token === playToken) report("Playback refused: " + err.message); });
    };
    if (player.dataset.src === source.src) { go(); return; }
    player.dataset.src = source.src;
    mediaUrl(source).then((url) => {
      if (token !== playToken) return;
      player.addEventListener("loadedmetadata", go, { once: true });
      player.src = url;
      player.load();
    }, (err) => { if (token === playToken) report("Cannot play " + what + ": " + err.message); });
  }

  /* A clip on a web server is played from memory: a server without byte ranges (python -m
   * http.server) serves media the browser cannot seek in. Clips are small; files from disk seek. */
  const blobs = {};
  function mediaUrl(source) {
    if (source.kind !== "clip" || location.protocol === "file:") return Promise.resolve(source.src);
    if (!blobs[source.src]) {
      blobs[source.src] = fetch(source.src).then((response) => {
        if (!response.ok) throw new Error("the report's clip " + source.src + " answered " + response.status);
        return response.blob();
      }).then((blob) => URL.createObjectURL(blob));
    }
    return blobs[source.src];
  }

  function playMoment(item) {
    selectVideo(item.slug).then((doc) => {
      if (!doc) return;
      zoomTo(item.start_s, item.end_s);
      $("review").scrollIntoView({ block: "start" });
      const first = item.events[0];
      const row = doc.rows.find((r) => r.name === first.model);
      if (!row) return;
      let best = -1;
      row.t.forEach((t, i) => {
        if (row.label[i] === first.label && (best < 0 || Math.abs(t - first.time_s) < Math.abs(row.t[best] - first.time_s))) best = i;
      });
      if (best >= 0) play(doc, row, best);
    });
  }

  /* ---------------------------------------------------------------- filters */

  function filters() {
    const cats = $("categories");
    INDEX.categories.forEach((c) => {
      const box = el("input", { type: "checkbox", value: c, checked: "checked" });
      box.addEventListener("change", () => {
        if (box.checked) state.categories.add(c); else state.categories.delete(c);
        if (state.slug) draw(currentRange());
      });
      cats.appendChild(el("label", {}, [box, " " + CATEGORY_TEXT[c]]));
    });
    const classes = $("classes");
    const labels = INDEX.labels.length ? INDEX.labels : INDEX.classes;
    state.classes = new Set(labels);
    labels.forEach((label) => {
      const box = el("input", { type: "checkbox", value: label, checked: "checked" });
      box.addEventListener("change", () => {
        if (box.checked) state.classes.add(label); else state.classes.delete(label);
        if (state.slug) draw(currentRange());
      });
      classes.appendChild(el("label", {}, [box, " ", el("span", { class: "swatch", style: "background:" + colour(label) }),
        " " + label]));
    });
  }

  function currentRange() {
    const axis = $("timeline").layout && $("timeline").layout.xaxis;
    if (!axis || !axis.range) return undefined;
    return axis.range.map((v) => (typeof v === "number" ? v : Date.parse(v.replace(" ", "T") + "Z")) / 1000);
  }

  /* ---------------------------------------------------------------- metrics */

  const COLUMNS = [["model", "model"], ["label", "class"], ["n_gt", "ground truth"], ["n_pred", "predictions"],
    ["tp", "TP"], ["fp", "FP"], ["fn", "FN"], ["precision", "precision"], ["recall", "recall"], ["f1", "F1"],
    ["ap_tight", "AP tight"], ["ap_loose", "AP loose"]];
  const sorting = { key: null, dir: 1 };

  function metricsTable() {
    const head = $("metrics").querySelector("thead");
    const tr = el("tr");
    COLUMNS.forEach(([key, title]) => {
      tr.appendChild(el("th", { "data-key": key, text: title, onclick: () => {
        sorting.dir = sorting.key === key ? -sorting.dir : (key === "model" || key === "label" ? 1 : -1);
        sorting.key = key;
        metricsRows();
      } }));
    });
    head.appendChild(tr);
    const select = $("metrics-model");
    select.appendChild(el("option", { value: "", text: "all" }));
    [...new Set(INDEX.metrics.map((m) => m.model))].forEach((m) => select.appendChild(el("option", { value: m, text: m })));
    select.addEventListener("change", metricsRows);
    $("metrics-empty").addEventListener("change", metricsRows);
    metricsRows();
    const lines = ["Precision, recall and F1 at " + INDEX.tolerance_s + " s with every prediction (no confidence " +
      "threshold); AP: SoccerNet average-mAP, tight (1-5 s) and loose (5-60 s). Click a column to sort."];
    Object.entries(INDEX.f1_thresholds).forEach(([model, f]) => {
      lines.push(model + ": F1 " + fmt(f.fixed.f1) + " at confidence >= " + f.fixed.threshold + ", best F1 " +
        fmt(f.best.f1) + " at >= " + (f.best.threshold === null ? "-" : Number(f.best.threshold).toFixed(3)) + ".");
    });
    $("metrics-note").textContent = lines.join(" ");
  }

  function metricsRows() {
    const model = $("metrics-model").value;
    const empty = $("metrics-empty").checked;
    let rows = INDEX.metrics.filter((m) => (!model || m.model === model) &&
      (empty || m.label === "overall" || m.n_gt > 0 || m.n_pred > 0));
    if (sorting.key) {
      const k = sorting.key;
      rows = rows.slice().sort((a, b) => {
        const x = a[k], y = b[k];
        if (x === y) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * sorting.dir;
      });
    }
    $("metrics").querySelectorAll("th").forEach((th) => {
      if (th.dataset.key === sorting.key) th.setAttribute("aria-sort", sorting.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    const body = $("metrics").querySelector("tbody");
    body.replaceChildren(...rows.map((m) => el("tr", { class: m.label === "overall" ? "overall" : "" },
      COLUMNS.map(([key]) => el("td", { text: typeof m[key] === "number" && !Number.isInteger(m[key]) ? fmt(m[key]) :
        (m[key] === null ? "-" : String(m[key])) })))));
  }

  function charts() {
    if (!INDEX.metrics.length) return;
    const labels = [...INDEX.labels, "overall"];
    const models = [...new Set(INDEX.metrics.map((m) => m.model))];
    const cell = {};
    INDEX.metrics.forEach((m) => { cell[m.model + "\u0000" + m.label] = m; });
    const bars = (key) => models.map((model) => ({
      type: "bar", orientation: "h", name: model, y: labels,
      x: labels.map((label) => { const m = cell[model + "\u0000" + label]; return m && m[key] !== null ? m[key] : 0; }),
    }));
    const base = (title) => ({
      title: { text: title, font: { size: 13 } }, barmode: "group", height: 160 + 28 * labels.length,
      margin: { l: 150, r: 20, t: 40, b: 40 }, xaxis: { range: [0, 1] }, yaxis: { autorange: "reversed" },
    });
    const config = { displaylogo: false, responsive: true };
    Plotly.newPlot($("chart-f1"), bars("f1"), base("F1 per class at " + INDEX.tolerance_s + " s"), config);
    Plotly.newPlot($("chart-ap"), [...bars("ap_tight").map((t) => ({ ...t, name: t.name + " tight" })),
      ...bars("ap_loose").map((t) => ({ ...t, name: t.name + " loose" }))],
    base("average-mAP per class (tight / loose)"), config);
  }

  /* ---------------------------------------------------------------- disagreements */

  function disagreements() {
    const list = $("disagreements");
    $("disagreements-note").textContent = INDEX.disagreements.length ?
      "Moments where models report different classes, both sides confident first. Click one to watch it." :
      "The models never disagree within the tolerance.";
    INDEX.disagreements.forEach((item) => {
      const events = item.events.map((e) => e.model + " " + e.label + (e.confidence === null ? "" : " " +
        e.confidence.toFixed(2))).join(" / ");
      list.appendChild(el("li", {}, [el("button", { type: "button", onclick: () => playMoment(item),
        text: item.video_id + " · " + clock(item.start_s) + " – " + clock(item.end_s) + " · " + events })]));
    });
  }

  /* ---------------------------------------------------------------- page */

  function header() {
    $("title").textContent = "Ensemble run " + INDEX.run_id;
    const into = INDEX.fused ? "models " + INDEX.models.join(", ") + " fused into '" + INDEX.fused + "'" :
      INDEX.models[0] + " scored alone";
    $("run").textContent = into + "; ground truth '" + INDEX.ground_truth + "'; tolerance " + INDEX.tolerance_s + " s; " +
      INDEX.videos.length + " videos.";
    INDEX.notes.forEach((n) => $("notes").appendChild(el("li", { text: n })));
  }

  function init() {
    header();
    filters();
    metricsTable();
    charts();
    disagreements();
    const select = $("video");
    INDEX.videos.forEach((v) => select.appendChild(el("option", { value: v.slug, text: v.video_id })));
    select.addEventListener("change", () => selectVideo(select.value));
    $("reset-zoom").addEventListener("click", () => { if (state.slug) draw(); });
    if (INDEX.videos.length) selectVideo(INDEX.videos[0].slug);
    else $("timeline").textContent = "No events in this run.";
  }

  window.VW_REVIEW = { loaded: loaded, state: state, selectVideo: selectVideo, play: play, playMoment: playMoment, docs: docs };
  document.addEventListener("DOMContentLoaded", init);
})();
