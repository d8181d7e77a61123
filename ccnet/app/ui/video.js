// The video viewer (gr.HTML js_on_load: `element`, `props`, `trigger` and `watch` come from Gradio).
// The component's value is small; the frames, their segmentation and the quantised weights of every
// step are fetched once per (model, clip) from the URL it names (ccnet/app/video_maps.py). Hovering a
// pixel of any frame then draws, in every frame, its position's weights after each step and composed
// (or the reach), computed here with no server round trip. A click, a tap or Enter pins the pixel:
// trigger('click', {t, x, y}) asks the server for its class (and, past the byte budget, its maps).
const V = {
  value: null, data: null, dataUrl: null, frames: [], grey: [], masks: [], maskData: [], codes: null, scales: null,
  factor: null, luts: {}, cmap: null, scale: null, clip: null, opacity: null, view: "composed", cell: null,
  pinned: null, frame: null, shown: {}, mapCanvas: {}, maxima: {}, timings: [], pins: [], fw: 0, fh: 0, gap: 6, resize: null,
  reached: null,
};
const STEP_COLOURS = [[255, 255, 255], [251, 140, 60], [90, 170, 255], [140, 220, 120]];  // reach: step 0..3
const $ = (sel) => element.querySelector(sel);
const $$ = (sel) => Array.from(element.querySelectorAll(sel));
const fmt = (n) => Number(n).toLocaleString("en-US");

function bytes(b64) {
  const raw = atob(b64), out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}
const floats = (b64) => new Float32Array(bytes(b64).buffer);
const dims = () => V.value.grid;  // [T, h, w]

// ---- the maps: the server's 3D layout [time | column | row] per position (ccnet/nn/attention3d.py) ----
// code c > 0 stands for scale * 10^((c - 1) * step - decades), 0 for a weight below the floor
function codeFactors(data) {
  const factor = new Float64Array(256), step = data.decades / (data.levels - 1);
  for (let c = 1; c < 256; c++) factor[c] = Math.pow(10, (c - 1) * step - data.decades);
  return factor;
}

// Spread `m` times position v's weights at step s over `out` (v's time line, column and row).
function spread(out, s, v, m) {
  const [T, h, w] = dims(), hw = h * w, L = T + h + w, codes = V.codes[s], base = v * L;
  const scale = V.scales[s][v] * m, f = V.factor, vt = Math.floor(v / hw), rem = v % hw, vr = Math.floor(rem / w);
  const vc = rem % w, frame = vt * hw;
  for (let j = 0; j < T; j++) out[j * hw + rem] += scale * f[codes[base + j]];
  for (let i = 0; i < h; i++) out[frame + i * w + vc] += scale * f[codes[base + T + i]];
  const row = frame + vr * w;
  for (let k = 0; k < w; k++) out[row + k] += scale * f[codes[base + T + h + k]];
}

const position = (t, r, c) => { const [, h, w] = dims(); return (t * h + r) * w + c; };

function stepMap(s, t, r, c) {
  const [T, h, w] = dims(), out = new Float32Array(T * h * w);
  spread(out, s, position(t, r, c), 1);
  return out;
}

// M = e_u A_R ... A_1 (ccnet.nn.attention_maps3d.composed_map): the mass flows through the last step first.
function composedMap(t, r, c) {
  const [T, h, w] = dims(), n = T * h * w;
  let mass = new Float32Array(n);
  mass[position(t, r, c)] = 1;
  for (let s = V.codes.length - 1; s >= 0; s--) {
    const out = new Float32Array(n);
    for (let v = 0; v < n; v++) if (mass[v] !== 0) spread(out, s, v, mass[v]);
    mass = out;
  }
  return mass;
}

// Which positions can carry weight to (t, r, c) after each step: a criss-cross step moves along one
// axis, so step k reaches the positions that differ in at most k of t, h, w; a non-local step, all.
// Returns, per position, the first step that reaches it (0: itself, Infinity: never) and the counts.
function reach(t, r, c) {
  const [T, h, w] = dims(), steps = V.value.steps, nonLocal = V.value.kind === "non-local-3d";
  const first = new Float64Array(T * h * w), counts = new Array(steps).fill(0);
  for (let pt = 0, p = 0; pt < T; pt++) for (let pr = 0; pr < h; pr++) for (let pc = 0; pc < w; pc++, p++) {
    const d = (pt !== t) + (pr !== r) + (pc !== c), at = d === 0 ? 0 : nonLocal ? 1 : d;
    first[p] = at <= steps ? at : Infinity;
    for (let s = Math.max(1, at); s <= steps; s++) counts[s - 1]++;
  }
  return { first, counts };
}

// The maps of a position: from the weights the page holds, else the server's maps of the pinned one.
function mapsAt(t, r, c) {
  if (V.codes) {
    const steps = V.codes.map((_, s) => stepMap(s, t, r, c));
    return { steps, composed: composedMap(t, r, c) };
  }
  const p = V.value.pinned_maps;
  if (p && p.cell[0] === t && p.cell[1] === r && p.cell[2] === c) return { steps: p.steps.map(floats), composed: floats(p.composed) };
  return null;
}

// ---- geometry: the server's rule, per frame (ccnet/inference/geometry.py) --------------------------
function cellOf(x, y) {
  const [H, W] = V.value.size, [, h, w] = dims();
  return [Math.floor((y * h) / H), Math.floor((x * w) / W)];
}
const bound = (i, count, size) => Math.ceil((i * size) / count);
function cellCentre(r, c) {
  const [H, W] = V.value.size, [, h, w] = dims();
  return [Math.floor((bound(c, w, W) + bound(c + 1, w, W) - 1) / 2), Math.floor((bound(r, h, H) + bound(r + 1, h, H) - 1) / 2)];
}
// (t, x, y) under the pointer on a row's canvas, or null between two frames
function frameAt(ev, canvas) {
  const rect = canvas.getBoundingClientRect(), [H, W] = V.value.size, [T] = dims();
  const along = ev.clientX - rect.left, t = Math.floor(along / (V.fw + V.gap));
  const inside = along - t * (V.fw + V.gap);
  if (t < 0 || t >= T || inside >= V.fw) return null;
  const x = Math.min(W - 1, Math.max(0, Math.floor((inside / V.fw) * W)));
  const y = Math.min(H - 1, Math.max(0, Math.floor(((ev.clientY - rect.top) / rect.height) * H)));
  return [t, x, y];
}

// ---- drawing --------------------------------------------------------------------------------------
function unit(value, top) {
  if (!(value > 0) || !(top > 0)) return 0;
  if (V.scale === "linear") return Math.min(1, value / top);
  return Math.max(0, Math.min(1, 1 + Math.log10(value / top) / 4));
}
const mapCanvas = (name) => (V.mapCanvas[name] = V.mapCanvas[name] || document.createElement("canvas"));

// A (T, h, w) map onto a (T·w x h) canvas, frame after frame, one colour scale for the whole clip.
function paintMap(name, map) {
  const [T, h, w] = dims(), canvas = mapCanvas(name);
  [canvas.width, canvas.height] = [T * w, h];
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(T * w, h), lut = V.luts[V.cmap], d = img.data;
  let max = 0, at = 0;
  for (let i = 0; i < map.length; i++) if (map[i] > max) { max = map[i]; at = i; }
  const top = max * V.clip;
  for (let i = 0; i < map.length; i++) {
    const t = Math.floor(i / (h * w)), rem = i % (h * w), o = 4 * ((rem - (rem % w)) / w * T * w + t * w + (rem % w));
    const u = 3 * Math.round(unit(map[i], top) * 255);
    d[o] = lut[u]; d[o + 1] = lut[u + 1]; d[o + 2] = lut[u + 2]; d[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return [max, Math.floor(at / (h * w))];
}

function paintReach(name, first) {
  const [T, h, w] = dims(), canvas = mapCanvas(name);
  [canvas.width, canvas.height] = [T * w, h];
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(T * w, h);
  first.forEach((f, i) => {
    const t = Math.floor(i / (h * w)), rem = i % (h * w), o = 4 * ((rem - (rem % w)) / w * T * w + t * w + (rem % w));
    img.data.set(f === Infinity ? [0, 0, 0, 0] : [...STEP_COLOURS[Math.min(f, 3)], 255], o);
  });
  ctx.putImageData(img, 0, 0);
}

// One row: every frame side by side (the frame and its segmentation, or the frame greyed under a map),
// the hovered position outlined in its frame with its row and column, and its time line in the others.
function render(row) {
  const canvas = row.querySelector("canvas"), ctx = canvas.getContext("2d"), name = row.dataset.view;
  const dpr = window.devicePixelRatio || 1, fw = V.fw * dpr, fh = canvas.height, step = (V.fw + V.gap) * dpr;
  const [H, W] = V.value.size, [T, h, w] = dims();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (let t = 0; t < T; t++) {
    const x0 = Math.round(t * step);
    ctx.globalAlpha = 1;
    ctx.imageSmoothingEnabled = true;
    if (name === "segmentation") {
      if (V.frames[t] && V.frames[t].complete) ctx.drawImage(V.frames[t], x0, 0, fw, fh);
      ctx.globalAlpha = V.opacity;
      ctx.imageSmoothingEnabled = false;
      if (V.masks[t] && V.masks[t].complete) ctx.drawImage(V.masks[t], x0, 0, fw, fh);
      ctx.globalAlpha = 1;
      ctx.fillStyle = "rgba(0,0,0,0.55)"; ctx.fillRect(x0, 0, 52 * dpr, 16 * dpr);
      ctx.fillStyle = "#fff"; ctx.font = `${11 * dpr}px sans-serif`; ctx.fillText(`frame ${t}`, x0 + 4 * dpr, 12 * dpr);
    } else {
      if (V.grey[t]) ctx.drawImage(V.grey[t], x0, 0, fw, fh);
      if (V.shown[name]) {
        ctx.globalAlpha = 0.8;
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(V.mapCanvas[name], t * w, 0, w, h, x0, 0, fw, fh);
        ctx.globalAlpha = 1;
      }
    }
    if (!V.cell) continue;
    const [ct, r, c] = V.cell, xs = (k) => x0 + Math.round((bound(k, w, W) / W) * fw), ys = (k) => Math.round((bound(k, h, H) / H) * fh);
    const box = (colour, dash) => {
      ctx.setLineDash(dash);
      ctx.lineWidth = 3 * dpr; ctx.strokeStyle = "#000";
      ctx.strokeRect(xs(c) + 0.5, ys(r) + 0.5, xs(c + 1) - xs(c) - 1, ys(r + 1) - ys(r) - 1);
      ctx.lineWidth = 1.5 * dpr; ctx.strokeStyle = colour;
      ctx.strokeRect(xs(c) + 0.5, ys(r) + 0.5, xs(c + 1) - xs(c) - 1, ys(r + 1) - ys(r) - 1);
      ctx.setLineDash([]);
    };
    if (t === ct) {
      ctx.setLineDash([4 * dpr, 3 * dpr]); ctx.lineWidth = dpr; ctx.strokeStyle = "rgba(255,255,255,0.85)";
      ctx.beginPath();
      for (const y of [ys(r), ys(r + 1)]) { ctx.moveTo(x0, y + 0.5); ctx.lineTo(x0 + fw, y + 0.5); }
      for (const x of [xs(c), xs(c + 1)]) { ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, fh); }
      ctx.stroke();
      ctx.setLineDash([]);
      box("#fff", []);
    } else {
      box("rgba(255,255,255,0.9)", [3 * dpr, 2 * dpr]);  // the same place in another frame: its time line
    }
    if (V.pinned && V.pinned[0] === t) {
      const [pr, pc] = cellOf(V.pinned[1], V.pinned[2]);
      if (t !== ct || pr !== r || pc !== c) {
        ctx.lineWidth = 2 * dpr; ctx.strokeStyle = "#f97316";
        ctx.strokeRect(xs(pc) + 0.5, ys(pr) + 0.5, xs(pc + 1) - xs(pc) - 1, ys(pr + 1) - ys(pr) - 1);
      }
    }
  }
}

function renderAll() { for (const row of $$(".ccvv-row")) render(row); }

function wholeTitle() {
  const [T, h, w] = dims(), n = T * h * w;
  if (V.view === "reach" && V.reached) {
    return `reach · ${V.reached.counts.map((k) => fmt(k)).join(", then ")} of ${fmt(n)} positions after ` +
      V.reached.counts.map((_, s) => `step ${s + 1}`).join(", ");
  }
  return V.value.panels[V.value.panels.length - 1][1];
}

function show(t, r, c, ev) {
  const begin = performance.now();
  V.cell = [t, r, c];
  const maps = mapsAt(t, r, c), views = {};
  if (maps) {
    maps.steps.forEach((map, s) => { views["step" + (s + 1)] = map; });
    views.composed = maps.composed;
  }
  V.shown = {};
  for (const row of $$(".ccvv-row[data-map]")) {
    const name = row.dataset.map, max = row.querySelector(".ccvv-max");
    if (name === "composed" && V.view === "reach") {
      V.reached = reach(t, r, c);
      paintReach(name, V.reached.first);
      V.shown[name] = true;
      row.querySelector(".ccvv-name").textContent = wholeTitle();
      max.textContent = "";
      continue;
    }
    if (name === "composed") row.querySelector(".ccvv-name").textContent = wholeTitle();
    if (views[name]) {
      const [top, frame] = paintMap(name, views[name]);
      max.textContent = `max ${top.toPrecision(3)} (frame ${frame})`;
      V.shown[name] = true;
    } else {
      max.textContent = V.codes ? "" : "pin a pixel: the server sends its maps";
    }
  }
  renderAll();
  const [x, y] = cellCentre(r, c), here = classAt(t, x, y);
  $(".ccvv-hover").textContent = `frame ${t}, cell (${r}, ${c}) of ${dims().join("×")}` + (here ? ` · ${here}` : "") +
    (V.pinned ? ` · pinned frame ${V.pinned[0]} (${V.pinned[1]}, ${V.pinned[2]})` : "");
  element.dataset.cell = `${t},${r},${c}`;
  pinLine();
  if (ev) {
    const t0 = ev.timeStamp, done = performance.now();
    // the frame that shows the new maps: its rAF callback runs before it is painted, a task queued there after
    requestAnimationFrame(() => setTimeout(() => {
      V.timings.push({ wait_ms: begin - t0, work_ms: done - begin, paint_ms: performance.now() - t0 });
      if (V.timings.length > 2000) V.timings.shift();
    }, 0));
  }
}

// The class under a frame's pixel, read from its segmentation picture (null until it is decoded).
function classAt(t, x, y) {
  const found = V.maskData[t];
  if (!found) return null;
  const [H, W] = V.value.size, px = Math.min(found.width - 1, Math.floor((x * found.width) / W));
  const py = Math.min(found.height - 1, Math.floor((y * found.height) / H)), i = 4 * (py * found.width + px);
  const k = V.byColour.get((found.data[i] << 16) | (found.data[i + 1] << 8) | found.data[i + 2]);
  return k === undefined ? null : V.data.classes[k];
}

// The pinned position's top places of the highlighted map, from what the page holds.
function pinLine() {
  const line = $(".ccvv-pin");
  if (!V.pinned) { line.textContent = ""; return; }
  const [t, x, y] = V.pinned, [r, c] = cellOf(x, y), maps = mapsAt(t, r, c);
  const view = V.view.startsWith("step") ? V.view : "composed";
  const map = maps && (view === "composed" ? maps.composed : maps.steps[Number(view.slice(4)) - 1]);
  let top = "";
  if (map) {
    const [, h, w] = dims(), order = Array.from(map.keys()).sort((a, b) => map[b] - map[a] || a - b).slice(0, 5);
    top = ` · top 5 of ${view} (t, row, col): ` + order.map((i) => `${Math.floor(i / (h * w))},${Math.floor((i % (h * w)) / w)},` +
      `${i % w} ${map[i].toFixed(3)}`).join(" · ");
  }
  line.innerHTML = `<b>pinned frame ${t} (${x}, ${y}) · position (${t}, ${r}, ${c})</b>${esc(top)}`;
}

// ---- the state in the URL, and pinning --------------------------------------------------------------
function syncUrl() {
  const u = new URL(window.location.href), v = V.value, q = new URLSearchParams();
  if (v) {
    if (v.clip) q.set("clip", v.clip); else if (v.key) q.set("key", v.key);
    q.set("model", v.model);
    if (V.pinned) { q.set("t", V.pinned[0]); q.set("x", V.pinned[1]); q.set("y", V.pinned[2]); }
    else if (V.frame != null) q.set("t", V.frame);
    for (const k of ["view", "cmap", "scale"]) q.set(k, V[k]);
  }
  u.search = q.toString();
  window.history.replaceState(null, "", u.toString());
  const link = $(".ccvv-link");
  if (link) link.dataset.url = u.toString();
}

function pin(t, x, y, ev) {
  const begin = performance.now();
  V.pinned = [t, x, y];
  show(t, ...cellOf(x, y));
  syncUrl();
  const t0 = ev ? ev.timeStamp : begin;
  requestAnimationFrame(() => setTimeout(() => V.pins.push({ paint_ms: performance.now() - t0 }), 0));
  trigger("click", { t, x, y });
}
