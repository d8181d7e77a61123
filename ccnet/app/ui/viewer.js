// The attention viewer: runs in the page (gr.HTML js_on_load; `element`, `props`, `trigger` and
// `watch` come from Gradio). Once per image the server sends every cell's quantised criss-cross
// weights (ccnet/app/browser_maps.py); hovering then draws step 1, step 2 and the composed map with no
// server round trip. A click, a tap or Enter pins a pixel: trigger('click', {x, y}) asks the
// server for what needs it (class, top-k, chart, downloads).
const S = {
  value: null, codes: [], scales: [], factor: null, luts: {}, classAt: null, mapCanvas: {}, shown: {},
  colour: null, mask: null, grey: null, resize: null,
  cell: null, pinned: null, timings: [],
  cmap: null, scale: null, clip: null, opacity: 0.5, smooth: false, grid: false, view: "composed",
};
const VIEWS = ["segmentation", "step1", "step2", "composed"];
const $ = (sel) => element.querySelector(sel);
const $$ = (sel) => Array.from(element.querySelectorAll(sel));

// Text for innerHTML: whatever a string holds, it is shown, never parsed.
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function bytes(b64) {
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

// The display comes from the server, which checked the link's values (ccnet/app/links.py); the page
// takes only names it knows itself (a colormap named "constructor" is no colormap).
function readSettings(v) {
  for (const k of ["cmap", "scale", "clip"]) if (S[k] === null) S[k] = v.defaults[k];  // the server's, once
  const d = v.display || {};
  if (typeof d.cmap === "string" && Object.hasOwn(v.colormaps, d.cmap)) S.cmap = d.cmap;
  if (d.scale === "log" || d.scale === "linear") S.scale = d.scale;
  if (typeof v.view === "string" && VIEWS.includes(v.view)) S.view = v.view;
  if (Number(d.clip) > 0 && Number(d.clip) <= 1) S.clip = Number(d.clip);
}

// ---- the weights ------------------------------------------------------------------------------
function decode(v) {
  S.codes = (v.codes || []).map(bytes);
  S.scales = (v.scales || []).map((b) => new Float32Array(bytes(b).buffer));
  S.factor = new Float64Array(256);
  const step = v.decades / (v.levels - 1);
  for (let c = 1; c < 256; c++) S.factor[c] = Math.pow(10, (c - 1) * step - v.decades);
  S.luts = {};
  for (const [name, b64] of Object.entries(v.colormaps)) S.luts[name] = bytes(b64);
}

function hasWeights() { return S.codes.length > 0; }

// The weight cell (r, c) gives entry j of its cross in step s (j < h: column, else row).
function weight(s, r, c, j) {
  const [h, w] = S.value.grid, L = h + w, cell = r * w + c;
  return S.scales[s][cell] * S.factor[S.codes[s][cell * L + j]];
}

function stepMap(s, r, c) {
  const [h, w] = S.value.grid, out = new Float32Array(h * w);
  for (let k = 0; k < h; k++) out[k * w + c] += weight(s, r, c, k);
  for (let k = 0; k < w; k++) out[r * w + k] += weight(s, r, c, h + k);
  return out;
}

// M = e_q A_R ... A_1, as ccnet.nn.attention_maps.composed_map: mass flows through the last step first.
function composedMap(r, c) {
  const [h, w] = S.value.grid;
  let mass = new Float32Array(h * w);
  mass[r * w + c] = 1;
  for (let s = S.value.steps - 1; s >= 0; s--) {
    const out = new Float32Array(h * w);
    for (let v = 0; v < h * w; v++) {
      const m = mass[v];
      if (m === 0) continue;
      const vr = Math.floor(v / w), vc = v % w;
      for (let k = 0; k < h; k++) out[k * w + vc] += m * weight(s, vr, vc, k);
      for (let k = 0; k < w; k++) out[vr * w + k] += m * weight(s, vr, vc, h + k);
    }
    mass = out;
  }
  return mass;
}

function maps(r, c) {
  if (hasWeights()) {
    const steps = [];
    for (let s = 0; s < S.value.steps; s++) steps.push(stepMap(s, r, c));
    return { steps, composed: composedMap(r, c) };
  }
  const p = S.value.pinned_maps;  // over budget: the server's maps of the pinned cell only
  if (p && p.cell[0] === r && p.cell[1] === c) {
    const f = (b) => new Float32Array(bytes(b).buffer);
    return { steps: p.steps.map(f), composed: f(p.composed) };
  }
  return null;
}

// ---- geometry: the server's rule (ccnet/inference/geometry.py) ------------------------------------
function cellOf(x, y) {
  const [H, W] = S.value.size, [h, w] = S.value.grid;
  return [Math.floor((y * h) / H), Math.floor((x * w) / W)];
}
function bound(i, count, size) { return Math.ceil((i * size) / count); }
function cellCentre(r, c) {
  const [H, W] = S.value.size, [h, w] = S.value.grid;
  return [Math.floor((bound(c, w, W) + bound(c + 1, w, W) - 1) / 2),
          Math.floor((bound(r, h, H) + bound(r + 1, h, H) - 1) / 2)];
}
function pixelOf(ev, stage) {
  const rect = stage.getBoundingClientRect(), [H, W] = S.value.size;
  const x = Math.min(W - 1, Math.max(0, Math.floor(((ev.clientX - rect.left) / rect.width) * W)));
  const y = Math.min(H - 1, Math.max(0, Math.floor(((ev.clientY - rect.top) / rect.height) * H)));
  return [x, y];
}

// ---- drawing ----------------------------------------------------------------------------------
function unit(value, top) {
  if (!(value > 0) || !(top > 0)) return 0;
  if (S.scale === "linear") return Math.min(1, value / top);
  return Math.max(0, Math.min(1, 1 + Math.log10(value / top) / 4));
}

// A map onto its panel's small (w x h) canvas, through the colormap; returns the map's maximum.
function paint(name, map) {
  const [h, w] = S.value.grid;
  if (!S.mapCanvas[name]) {
    S.mapCanvas[name] = document.createElement("canvas");
    [S.mapCanvas[name].width, S.mapCanvas[name].height] = [w, h];
  }
  const ctx = S.mapCanvas[name].getContext("2d"), img = ctx.createImageData(w, h), lut = S.luts[S.cmap];
  let max = 0;
  for (let i = 0; i < map.length; i++) if (map[i] > max) max = map[i];
  const top = max * S.clip;
  for (let i = 0; i < map.length; i++) {
    const u = Math.round(unit(map[i], top) * 255);
    img.data[4 * i] = lut[3 * u]; img.data[4 * i + 1] = lut[3 * u + 1]; img.data[4 * i + 2] = lut[3 * u + 2];
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return max;
}

// Each panel is one canvas at its displayed size: background, map or segmentation, grid and the
// hovered cell's row and column, drawn in one go (no DOM change, so a hover costs one small frame).
function render(panel) {
  const canvas = panel.querySelector("canvas.ccv-view"), ctx = canvas.getContext("2d");
  const cw = canvas.width, ch = canvas.height, name = panel.dataset.view;
  ctx.globalAlpha = 1;
  ctx.imageSmoothingEnabled = true;
  if (name === "segmentation") {
    if (S.colour.complete) ctx.drawImage(S.colour, 0, 0, cw, ch);
    ctx.globalAlpha = S.opacity;
    ctx.imageSmoothingEnabled = false;
    if (S.mask.complete) ctx.drawImage(S.mask, 0, 0, cw, ch);
  } else {
    ctx.drawImage(S.grey, 0, 0, cw, ch);
    if (S.shown[name] && S.mapCanvas[name]) {
      ctx.globalAlpha = 0.8;
      ctx.imageSmoothingEnabled = S.smooth;
      ctx.drawImage(S.mapCanvas[name], 0, 0, cw, ch);
    }
  }
  ctx.globalAlpha = 1;
  const [H, W] = S.value.size, [h, w] = S.value.grid;
  const xs = (c) => Math.round((bound(c, w, W) / W) * cw), ys = (r) => Math.round((bound(r, h, H) / H) * ch);
  if (S.grid) {
    ctx.strokeStyle = "rgba(255,255,255,0.35)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let r = 1; r < h; r++) { ctx.moveTo(0, ys(r) + 0.5); ctx.lineTo(cw, ys(r) + 0.5); }
    for (let c = 1; c < w; c++) { ctx.moveTo(xs(c) + 0.5, 0); ctx.lineTo(xs(c) + 0.5, ch); }
    ctx.stroke();
  }
  const mark = (r, c, colour) => {
    ctx.lineWidth = 3; ctx.strokeStyle = "#000";
    ctx.strokeRect(xs(c) + 0.5, ys(r) + 0.5, xs(c + 1) - xs(c) - 1, ys(r + 1) - ys(r) - 1);
    ctx.lineWidth = 1.5; ctx.strokeStyle = colour;
    ctx.strokeRect(xs(c) + 0.5, ys(r) + 0.5, xs(c + 1) - xs(c) - 1, ys(r + 1) - ys(r) - 1);
  };
  if (S.cell) {
    const [r, c] = S.cell;
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 1;
    ctx.strokeStyle = "rgba(255,255,255,0.85)";
    ctx.beginPath();
    for (const y of [ys(r), ys(r + 1)]) { ctx.moveTo(0, y + 0.5); ctx.lineTo(cw, y + 0.5); }
    for (const x of [xs(c), xs(c + 1)]) { ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, ch); }
    ctx.stroke();
    ctx.setLineDash([]);
    if (S.pinned) { const [pr, pc] = cellOf(...S.pinned); if (pr !== r || pc !== c) mark(pr, pc, "#f97316"); }
    mark(r, c, "#fff");
  }
}

function renderAll() { for (const panel of $$(".ccv-panel")) render(panel); }

function show(r, c, ev) {
  const begin = performance.now();
  S.cell = [r, c];
  const m = maps(r, c);
  const views = m ? { composed: m.composed } : {};
  if (m) m.steps.forEach((map, s) => { views["step" + (s + 1)] = map; });
  S.shown = {};
  for (const panel of $$(".ccv-panel[data-map]")) {
    const name = panel.dataset.map, title = panel.querySelector(".ccv-max");
    if (views[name]) {
      const max = paint(name, views[name]);
      S.shown[name] = true;
      title.textContent = "max " + max.toPrecision(3);
    } else {
      title.textContent = hasWeights() ? "" : "click to ask the server";
    }
  }
  renderAll();
  const [x, y] = cellCentre(r, c), label = S.classAt ? S.classAt(x, y) : "";
  $(".ccv-hover").textContent = `cell (${r}, ${c}) of ${S.value.grid[0]}×${S.value.grid[1]}` +
    (label ? ` · ${label}` : "") + (S.pinned ? ` · pinned (${S.pinned[0]}, ${S.pinned[1]})` : "") +
    (S.value.kind === "none" ? " · no attention in this head" : "");
  element.dataset.cell = `${r},${c}`;
  if (ev) {
    const t0 = ev.timeStamp, done = performance.now();
    // the frame that shows the new maps: its rAF callback runs before it is painted, a task queued
    // there runs after (the usual "next paint" measure)
    requestAnimationFrame(() => setTimeout(() => {
      S.timings.push({ wait_ms: begin - t0, work_ms: done - begin, paint_ms: performance.now() - t0 });
      if (S.timings.length > 2000) S.timings.shift();
    }, 0));
  }
}

// ---- the page's state in the URL, and pinning ---------------------------------------------------
// The URL is made afresh from what the page shows: nothing a link brought survives unless the page
// took it, and x and y are there only while a pixel is pinned.
function syncUrl() {
  const u = new URL(window.location.href), v = S.value, q = new URLSearchParams();
  if (v.example) q.set("example", v.example); else if (v.key) q.set("key", v.key);
  q.set("model", v.model);
  if (S.pinned) { q.set("x", S.pinned[0]); q.set("y", S.pinned[1]); }
  for (const k of ["view", "cmap", "scale", "clip"]) q.set(k, S[k]);
  u.search = q.toString();
  window.history.replaceState(null, "", u.toString());
  $(".ccv-link").dataset.url = u.toString();
}

function pin(x, y) {
  S.pinned = [x, y];
  const [r, c] = cellOf(x, y);
  show(r, c);
  syncUrl();
  trigger("click", { x, y, view: S.view });
}

// ---- building the DOM ---------------------------------------------------------------------------
function panelHtml(name, title) {
  const testid = name === "composed" ? "attention-canvas" : "attention-" + name;
  return `<div class="ccv-panel${S.view === name ? " ccv-active" : ""}" data-view="${name}"` +
    (name === "segmentation" ? "" : ` data-map="${name}"`) + `>` +
    `<div class="ccv-title"><b>${esc(title)}</b> <span class="ccv-max"></span></div>` +
    `<div class="ccv-stage" tabindex="-1"><canvas class="ccv-view" data-testid="${testid}"></canvas></div></div>`;
}

function toolbar() {
  const opts = Object.keys(S.value.colormaps).map((n) => `<option${n === S.cmap ? " selected" : ""}>${esc(n)}</option>`);
  return '<div class="ccv-tools">' +
    `<label>colormap <select class="ccv-cmap">${opts.join("")}</select></label>` +
    `<label>scale <select class="ccv-scale"><option${S.scale === "log" ? " selected" : ""}>log</option>` +
    `<option${S.scale === "linear" ? " selected" : ""}>linear</option></select></label>` +
    `<label>clip <input class="ccv-clip" type="number" min="0.001" max="1" step="0.01" value="${S.clip}"></label>` +
    `<label>segmentation <input class="ccv-opacity" type="range" min="0" max="1" step="0.05" value="${S.opacity}"></label>` +
    `<label><input class="ccv-smooth" type="checkbox"${S.smooth ? " checked" : ""}> bilinear</label>` +
    `<label><input class="ccv-gridbox" type="checkbox"${S.grid ? " checked" : ""}> grid</label>` +
    '<button class="ccv-link" type="button">copy link</button></div>';
}

function colourbar() {
  const lo = S.scale === "log" ? `${S.clip}·max·10⁻⁴` : "0", hi = S.clip === 1 ? "max" : `${S.clip}·max`;
  return `<div class="ccv-bar"><span>${lo}</span><canvas class="ccv-ramp" width="256" height="1"></canvas>` +
    `<span>≥ ${hi}</span><span class="ccv-note">each map's colours run from its own maximum` +
    (S.scale === "log" ? " down 4 decades (log scale)" : " (linear)") + "</span></div>";
}

function drawRamp() {
  $(".ccv-bar").outerHTML = colourbar();
  const ctx = $(".ccv-ramp").getContext("2d"), img = ctx.createImageData(256, 1), lut = S.luts[S.cmap];
  for (let i = 0; i < 256; i++) img.data.set([lut[3 * i], lut[3 * i + 1], lut[3 * i + 2], 255], 4 * i);
  ctx.putImageData(img, 0, 0);
}

// The pictures under the maps, decoded once per image: the image, its segmentation and the image
// in grey, darkened (drawn once here: a CSS filter would run again at every repaint).
function layers(v) {
  S.colour = new Image();
  S.mask = new Image();
  S.grey = document.createElement("canvas");
  S.colour.onload = () => {
    [S.grey.width, S.grey.height] = [S.colour.naturalWidth, S.colour.naturalHeight];
    const ctx = S.grey.getContext("2d");
    ctx.filter = "grayscale(1) brightness(0.55)";
    ctx.drawImage(S.colour, 0, 0);
    renderAll();
  };
  S.mask.onload = renderAll;
  S.colour.src = v.image;
  S.mask.src = v.mask;
}

function fit() {
  const dpr = window.devicePixelRatio || 1;
  for (const canvas of $$("canvas.ccv-view")) {
    const width = Math.max(1, Math.round(canvas.clientWidth * dpr)), height = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== width || canvas.height !== height) [canvas.width, canvas.height] = [width, height];
  }
  if (S.value) renderAll();
}

function classReader(v) {
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const byColour = new Map(v.palette.map((rgb, i) => [(rgb[0] << 16) | (rgb[1] << 8) | rgb[2], i]));
    S.classAt = (x, y) => {
      const i = 4 * (y * canvas.width + x), k = byColour.get((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
      return k === undefined ? "" : v.classes[k];
    };
  };
  img.src = v.mask;
}

function listen(stage) {
  let down = null;
  // pointerrawupdate (Chromium) arrives as soon as the input does; pointermove waits for the next frame
  const move = "onpointerrawupdate" in window ? "pointerrawupdate" : "pointermove";
  stage.addEventListener(move, (ev) => {
    const [x, y] = pixelOf(ev, stage), [r, c] = cellOf(x, y);
    if (!S.cell || S.cell[0] !== r || S.cell[1] !== c) show(r, c, ev);
  });
  stage.addEventListener("pointerdown", (ev) => { down = [ev.clientX, ev.clientY]; stage.focus(); });
  stage.addEventListener("pointerup", (ev) => {
    if (down && Math.hypot(ev.clientX - down[0], ev.clientY - down[1]) < 6) pin(...pixelOf(ev, stage));
    down = null;
  });
  stage.addEventListener("pointerleave", () => {
    if (S.pinned) { const [r, c] = cellOf(...S.pinned); show(r, c); }
  });
}

function onKey(ev) {
  if (!S.value || !S.cell || ["INPUT", "SELECT", "BUTTON"].includes(ev.target.tagName)) return;
  const [h, w] = S.value.grid, n = ev.shiftKey ? 4 : 1;
  const moves = { ArrowUp: [-n, 0], ArrowDown: [n, 0], ArrowLeft: [0, -n], ArrowRight: [0, n] };
  if (moves[ev.key]) {
    ev.preventDefault();
    const r = Math.max(0, Math.min(h - 1, S.cell[0] + moves[ev.key][0]));
    const c = Math.max(0, Math.min(w - 1, S.cell[1] + moves[ev.key][1]));
    show(r, c, ev);
  } else if (ev.key === "Enter") {
    ev.preventDefault();
    pin(...cellCentre(...S.cell));
  }
}

function controls() {
  const redraw = () => { if (S.cell) show(...S.cell); syncUrl(); };
  $(".ccv-cmap").addEventListener("change", (e) => { S.cmap = e.target.value; drawRamp(); redraw(); });
  $(".ccv-scale").addEventListener("change", (e) => { S.scale = e.target.value; drawRamp(); redraw(); });
  const clip = $(".ccv-clip");
  const setClip = () => { const v = Number(clip.value); if (v > 0 && v <= 1) { S.clip = v; drawRamp(); redraw(); } };
  clip.addEventListener("input", setClip);
  clip.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); setClip(); } });
  $(".ccv-opacity").addEventListener("input", (e) => { S.opacity = Number(e.target.value); renderAll(); });
  $(".ccv-smooth").addEventListener("change", (e) => { S.smooth = e.target.checked; renderAll(); });
  $(".ccv-gridbox").addEventListener("change", (e) => { S.grid = e.target.checked; renderAll(); });
  $(".ccv-link").addEventListener("click", async (e) => {
    const url = e.target.dataset.url || window.location.href;
    try { await navigator.clipboard.writeText(url); e.target.textContent = "link copied"; }
    catch (err) { window.prompt("Copy this link:", url); }
    setTimeout(() => { e.target.textContent = "copy link"; }, 1500);
  });
  for (const title of $$(".ccv-panel[data-map] .ccv-title")) {
    title.addEventListener("click", () => {
      S.view = title.parentElement.dataset.view;
      $$(".ccv-panel").forEach((p) => p.classList.toggle("ccv-active", p.dataset.view === S.view));
      syncUrl();
      if (S.pinned) trigger("click", { x: S.pinned[0], y: S.pinned[1], view: S.view });
    });
  }
}

// The component's value is small (Gradio keeps it in the session); the image, the segmentation and
// the maps are fetched from the URL it names, once per image (ccnet/app/server/blobs.py).
async function fetched(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${response.status}`);
  return response.json();
}

let building = 0;
async function build() {
  const mine = ++building, given = props.value;
  const root = $(".ccv-root");
  if (!given || !given.size) {
    root.innerHTML = '<div class="ccv-empty">Upload an image or pick an example.</div>';
    S.value = null;
    return;
  }
  let data, pinned = null;
  try {
    data = S.dataUrl === given.data ? S.data : await fetched(given.data);
    if (given.pinned) pinned = await fetched(given.pinned);
  } catch (err) {
    if (mine === building) root.innerHTML = '<div class="ccv-empty">The maps could not be fetched; reload the page.</div>';
    return;
  }
  if (mine !== building) return;  // a newer value arrived meanwhile: that build draws
  [S.data, S.dataUrl] = [data, given.data];
  const v = { ...data, ...given, pinned_maps: pinned };
  const sameImage = S.value && S.value.data === v.data;
  S.value = v;
  readSettings(v);
  decode(v);
  root.innerHTML = toolbar() + '<div class="ccv-panels">' +
    v.panels.map(([n, t]) => panelHtml(n, t)).join("") + "</div>" + colourbar() +
    '<div class="ccv-hover" aria-live="polite"></div>';
  root.dataset.mode = hasWeights() ? "browser" : "server";
  root.dataset.kind = v.kind || "criss-cross";
  const [H, W] = v.size;
  S.mapCanvas = {};
  S.shown = {};
  layers(v);
  for (const stage of $$(".ccv-stage")) {
    stage.style.aspectRatio = `${W} / ${H}`;
    listen(stage);
  }
  fit();
  if (!S.resize) { S.resize = new ResizeObserver(fit); }
  S.resize.disconnect();
  S.resize.observe(root);
  classReader(v);
  drawRamp();
  controls();
  if (v.pin) S.pinned = v.pin;
  else if (!sameImage) S.pinned = null;
  const start = S.pinned ? cellOf(...S.pinned) : (sameImage && S.cell ? S.cell : [Math.floor(v.grid[0] / 2), Math.floor(v.grid[1] / 2)]);
  show(...start);
  syncUrl();
}

element.addEventListener("keydown", onKey);
window.__ccnetViewer = {
  state: S,
  composedAt: (r, c) => Array.from(composedMap(r, c)),
  stepAt: (s, r, c) => Array.from(stepMap(s, r, c)),
  timings: () => S.timings.slice(),
};
build();
watch("value", build);
