// The attention viewer: runs in the page (gr.HTML js_on_load; `element`, `props`, `trigger` and
// `watch` come from Gradio), after maps.js and before strips.js. The component's value is small (Gradio
// keeps it in the session); the image, every head's segmentation and quantised maps are fetched once
// per image from the URL it names (ccnet/app/server/blobs.py). Hovering then draws step 1, step 2, the
// composed map (or the reach, or the readers) and every head side by side with no server round trip.
// A click, a tap or Enter pins a pixel: its class, confidence and top cells at once, from what the page
// holds; trigger('click', {x, y}) asks the server for the rest (chart, comparison, downloads).
const S = {
  value: null, heads: {}, own: null, luts: {}, mapCanvas: {}, shown: {}, data: null, dataUrl: null,
  colour: null, grey: null, masks: {}, resize: null, cell: null, pinned: null, timings: [], pins: [],
  cmap: null, scale: null, clip: null, opacity: null, smooth: false, grid: false, view: "composed",
};
const WHOLE = ["composed", "reach", "readers"];  // what the last panel shows
const STEP_COLOURS = [[255, 255, 255], [251, 140, 60], [90, 170, 255], [140, 220, 120]];  // reach: step 0..3
const $ = (sel) => element.querySelector(sel);
const $$ = (sel) => Array.from(element.querySelectorAll(sel));
// Text for innerHTML: whatever a string holds, it is shown, never parsed.

// The display comes from the server, which checked the link's values (ccnet/app/links.py); the page
// takes only names it knows itself (a colormap named "constructor" is no colormap).
function readSettings(v) {
  for (const k of ["cmap", "scale", "clip", "opacity"]) if (S[k] === null) S[k] = v.defaults[k];  // the server's, once
  const d = v.display || {};
  if (typeof d.cmap === "string" && Object.hasOwn(v.colormaps, d.cmap)) S.cmap = d.cmap;
  if (d.scale === "log" || d.scale === "linear") S.scale = d.scale;
  if (Number(d.clip) > 0 && Number(d.clip) <= 1) S.clip = Number(d.clip);
  if (typeof v.view === "string" && v.views.includes(v.view)) S.view = v.view;
}

const own = () => S.heads[S.own];
const grid = () => S.value.grid;

// The shown head's maps of a cell: from its weights, else the server's maps of the pinned cell.
function ownMaps(r, c) {
  const head = own();
  if (hasMaps(head)) return headMaps(head, grid(), r, c);
  const p = S.value.pinned_maps;
  if (p && p.cell[0] === r && p.cell[1] === c) return { steps: p.steps.map(floats), composed: floats(p.composed) };
  return null;
}

// ---- geometry: the server's rule (ccnet/inference/geometry.py) --------------------------------------
function cellOf(x, y) {
  const [H, W] = S.value.size, [h, w] = grid();
  return [Math.floor((y * h) / H), Math.floor((x * w) / W)];
}
function bound(i, count, size) { return Math.ceil((i * size) / count); }
function cellCentre(r, c) {
  const [H, W] = S.value.size, [h, w] = grid();
  return [Math.floor((bound(c, w, W) + bound(c + 1, w, W) - 1) / 2),
          Math.floor((bound(r, h, H) + bound(r + 1, h, H) - 1) / 2)];
}
function pixelOf(ev, stage) {
  const rect = stage.getBoundingClientRect(), [H, W] = S.value.size;
  const x = Math.min(W - 1, Math.max(0, Math.floor(((ev.clientX - rect.left) / rect.width) * W)));
  const y = Math.min(H - 1, Math.max(0, Math.floor(((ev.clientY - rect.top) / rect.height) * H)));
  return [x, y];
}

// ---- drawing ------------------------------------------------------------------------------------
function unit(value, top) {
  if (!(value > 0) || !(top > 0)) return 0;
  if (S.scale === "linear") return Math.min(1, value / top);
  return Math.max(0, Math.min(1, 1 + Math.log10(value / top) / 4));
}

// A map onto a small (w x h) canvas through the colormap; returns the map's maximum.
function paintMap(canvas, map) {
  const [h, w] = grid();
  [canvas.width, canvas.height] = [w, h];
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h), lut = S.luts[S.cmap];
  let max = 0;
  for (let i = 0; i < map.length; i++) if (map[i] > max) max = map[i];
  const top = max * S.clip;
  for (let i = 0; i < map.length; i++) {
    const u = Math.round(unit(map[i], top) * 255);
    img.data.set([lut[3 * u], lut[3 * u + 1], lut[3 * u + 2], 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  return max;
}

// The reach: each cell in the colour of the first step that reaches it.
function paintReach(canvas, first) {
  const [h, w] = grid();
  [canvas.width, canvas.height] = [w, h];
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
  first.forEach((f, i) => img.data.set([...(f === Infinity ? [0, 0, 0] : STEP_COLOURS[Math.min(f, 3)]),
                                        f === Infinity ? 0 : 255], 4 * i));
  ctx.putImageData(img, 0, 0);
}

const mapCanvas = (name) => (S.mapCanvas[name] = S.mapCanvas[name] || document.createElement("canvas"));

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
    const mask = S.masks[S.own];
    if (mask && mask.complete) ctx.drawImage(mask, 0, 0, cw, ch);
  } else {
    ctx.drawImage(S.grey, 0, 0, cw, ch);
    if (S.shown[name] && S.mapCanvas[name]) {
      ctx.globalAlpha = 0.8;
      ctx.imageSmoothingEnabled = S.smooth;
      ctx.drawImage(S.mapCanvas[name], 0, 0, cw, ch);
    }
  }
  ctx.globalAlpha = 1;
  const [H, W] = S.value.size, [h, w] = grid();
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

// The last panel's title: what it shows, with the reach's counts.
function wholeTitle(reached) {
  const [h, w] = grid(), n = h * w, head = own();
  if (S.view === "reach" && reached) {
    return `reach · ${reached.counts.map((k) => `${k} of ${n}`).join(", then ")} cells`;
  }
  if (S.view === "readers") return "readers · who reads this cell after every step";
  return S.value.panels[S.value.panels.length - 1][1] + (head && head.kind === "none" ? "" : "");
}

function show(r, c, ev) {
  const begin = performance.now();
  S.cell = [r, c];
  const m = ownMaps(r, c), head = own(), views = {};
  if (m) {
    m.steps.forEach((map, s) => { views["step" + (s + 1)] = map; });
    views.composed = m.composed;
  }
  S.shown = {};
  for (const panel of $$(".ccv-panel[data-map]")) {
    const name = panel.dataset.map, max = panel.querySelector(".ccv-max");
    let map = views[name];
    if (name === "composed" && S.view === "readers" && hasMaps(head)) map = readers(head, grid(), r, c);
    if (name === "composed" && S.view === "reach" && head.kind !== "none") {
      const reached = reach(head.kind, head.kind === "non-local" ? 1 : head.steps, grid(), r, c);
      paintReach(mapCanvas(name), reached.first);
      S.shown[name] = true;
      S.reached = reached;
      panel.querySelector(".ccv-name").textContent = wholeTitle(reached);
      max.textContent = "";
      continue;
    }
    if (name === "composed") panel.querySelector(".ccv-name").textContent = wholeTitle();
    if (map) {
      max.textContent = "max " + paintMap(mapCanvas(name), map).toPrecision(3);
      S.shown[name] = true;
    } else {
      max.textContent = hasMaps(head) ? "" : "click to ask the server";
    }
  }
  renderAll();
  updateStrips(r, c);
  const [x, y] = cellCentre(r, c), here = S.classAt && S.classAt[S.own] ? S.classAt[S.own](x, y) : null;
  $(".ccv-hover").textContent = `cell (${r}, ${c}) of ${grid()[0]}×${grid()[1]}` + (here ? ` · ${here[0]}` : "") +
    (S.pinned ? ` · pinned (${S.pinned[0]}, ${S.pinned[1]})` : "") + (head.kind === "none" ? " · no attention in this head" : "");
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
// took it, x and y are there only while a pixel is pinned, the image only while it is shown.
function syncUrl() {
  const u = new URL(window.location.href), v = S.value, q = new URLSearchParams();
  if (v) {
    if (v.example) q.set("example", v.example); else if (v.key) q.set("key", v.key);
    q.set("model", v.model);
    if (S.pinned) { q.set("x", S.pinned[0]); q.set("y", S.pinned[1]); }
    for (const k of ["view", "cmap", "scale", "clip"]) q.set(k, S[k]);
  }
  u.search = q.toString();
  window.history.replaceState(null, "", u.toString());
  const link = $(".ccv-link");
  if (link) link.dataset.url = u.toString();
}

function pin(x, y, ev) {
  const begin = performance.now();
  S.pinned = [x, y];
  const [r, c] = cellOf(x, y);
  show(r, c);
  syncUrl();
  const t0 = ev ? ev.timeStamp : begin;
  requestAnimationFrame(() => setTimeout(() => S.pins.push({ paint_ms: performance.now() - t0 }), 0));
  trigger("click", { x, y, view: WHOLE.includes(S.view) ? "composed" : S.view });
}

// ---- building the DOM ---------------------------------------------------------------------------
function panelHtml(name, title) {
  const testid = name === "composed" ? "attention-canvas" : "attention-" + name;
  const active = S.view === name || (name === "composed" && WHOLE.includes(S.view));
  const modes = name !== "composed" || own().kind === "none" ? "" : '<span class="ccv-modes">' +
    WHOLE.map((m) => `<button type="button" data-mode="${m}"${S.view === m || (m === "composed" && !WHOLE.includes(S.view)) ? ' class="on"' : ""}>${m}</button>`).join("") + "</span>";
  return `<div class="ccv-panel${active ? " ccv-active" : ""}" data-view="${name}"` +
    (name === "segmentation" ? "" : ` data-map="${name}"`) + `>` +
    `<div class="ccv-title"><b class="ccv-name">${esc(title)}</b>${modes}<span class="ccv-max"></span></div>` +
    `<div class="ccv-stage" tabindex="-1"><canvas class="ccv-view" data-testid="${testid}"></canvas></div></div>`;
}

function toolbar() {
  return '<div class="ccv-tools">' + mapMenus("ccv", Object.keys(S.value.colormaps), S.cmap, S.scale) +
    `<label>clip <input class="ccv-clip" type="number" min="0.001" max="1" step="0.01" value="${S.clip}"></label>` +
    `<label>segmentation <input class="ccv-opacity" type="range" min="0" max="1" step="0.05" value="${S.opacity}"></label>` +
    `<label><input class="ccv-smooth" type="checkbox"${S.smooth ? " checked" : ""}> bilinear</label>` +
    `<label><input class="ccv-gridbox" type="checkbox"${S.grid ? " checked" : ""}> grid</label>` +
    '<button class="ccv-link" type="button">copy link</button>' +
    '<button class="ccv-save" type="button" data-testid="save-picture">save picture</button></div>';
}

function colourbar() {
  const lo = S.scale === "log" ? `${S.clip}·max·10⁻⁴` : "0", hi = S.clip === 1 ? "max" : `${S.clip}·max`;
  return `<div class="ccv-bar"><span>${lo}</span><canvas class="ccv-ramp" width="256" height="1"></canvas>` +
    `<span>≥ ${hi}</span><span class="ccv-note">each map's colours run from its own maximum` +
    (S.scale === "log" ? " down 4 decades (log scale)" : " (linear)") + "</span></div>";
}

function drawRamp() {
  $(".ccv-bar").outerHTML = colourbar();
  paintRamp($(".ccv-ramp"), S.luts[S.cmap]);
}

// The pictures under the maps, decoded once per image: the image, each head's segmentation and the
// image in grey, darkened (drawn once here: a CSS filter would run again at every repaint).
function layers(v) {
  S.colour = new Image();
  S.grey = document.createElement("canvas");
  S.colour.onload = () => {
    [S.grey.width, S.grey.height] = [S.colour.naturalWidth, S.colour.naturalHeight];
    const ctx = S.grey.getContext("2d");
    ctx.filter = "grayscale(1) brightness(0.55)";
    ctx.drawImage(S.colour, 0, 0);
    renderAll();
  };
  S.colour.src = v.image;
  S.masks = {};
  for (const head of v.heads) {
    S.masks[head.name] = new Image();
    S.masks[head.name].onload = renderAll;
    S.masks[head.name].src = head.mask;
  }
}

// How many panels a row: as many as keep the panels within the height the screen leaves them (so
// a portrait keeps the segmentation and the composed map on screen together); past that, narrower.
function fit() {
  const panels = $(".ccv-panels");
  if (!panels || !S.value) return;
  const [H, W] = S.value.size, n = $$(".ccv-panel").length, width = panels.clientWidth, gap = 8;
  // the room the panels get: on a desktop, what leaves the strips on the first screen; on a phone, a third of it
  const phone = window.innerWidth < 720, room = Math.max(200, phone ? window.innerHeight * 0.35 : window.innerHeight - 520);
  let best = { columns: n, stage: 0 };
  for (let columns = 1; columns <= n; columns++) {
    const rows = Math.ceil(n / columns), panelW = (width - gap * (columns - 1)) / columns;
    const stageW = Math.min(panelW, ((room / rows) - 24) * (W / H));
    if (stageW > best.stage) best = { columns, stage: stageW };
  }
  panels.style.gridTemplateColumns = `repeat(${best.columns}, minmax(0, 1fr))`;
  for (const stage of $$(".ccv-stage")) stage.style.maxWidth = `${Math.max(60, Math.floor(best.stage))}px`;
  const dpr = window.devicePixelRatio || 1;
  for (const canvas of $$("canvas.ccv-view")) {
    const cw = Math.max(1, Math.round(canvas.clientWidth * dpr)), ch = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== cw || canvas.height !== ch) [canvas.width, canvas.height] = [cw, ch];
  }
  renderAll();
}

function classReaders(v) {
  S.classAt = {};
  const byColour = new Map(v.palette.map((rgb, i) => [(rgb[0] << 16) | (rgb[1] << 8) | rgb[2], i]));
  const pixels = (src, done) => readPixels(src, (image) => done(image.data, image.width));
  for (const head of v.heads) {
    const found = { mask: null, confidence: null, width: 0 };
    pixels(head.mask, (data, width) => { found.mask = data; found.width = width; if (S.cell) updateStrips(...S.cell); });
    pixels(head.confidence, (data) => { found.confidence = data; if (S.cell) updateStrips(...S.cell); });
    // [class name, confidence] of pixel (x, y) under this head, or null until its pictures are read
    S.classAt[head.name] = (x, y) => {
      if (!found.mask || !found.confidence) return null;
      const i = 4 * (y * found.width + x), k = byColour.get((found.mask[i] << 16) | (found.mask[i + 1] << 8) | found.mask[i + 2]);
      return k === undefined ? null : [v.classes[k], found.confidence[i] / 255];
    };
  }
}
