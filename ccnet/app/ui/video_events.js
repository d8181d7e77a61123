// The video viewer's build and events, after video.js: the rows and the strip's layout, the pointer
// (hover any frame; a click or a tap pins; a press held still, then moved, explores on a phone), the
// keys (arrows move within a frame, [ and ] change frame, Enter pins) and the toolbar.

function rowHtml(name, title) {
  const modes = name !== "composed" || V.value.kind === "non-local-3d" ? "" : '<span class="ccvv-modes">' +
    ["composed", "reach"].map((m) => `<button type="button" data-mode="${m}"${(V.view === "reach") === (m === "reach") ? ' class="on"' : ""}>${m}</button>`).join("") + "</span>";
  const active = V.view === name || (name === "composed" && V.view === "reach");
  return `<div class="ccvv-row${active ? " ccvv-active" : ""}" data-view="${name}"${name === "segmentation" ? "" : ` data-map="${name}"`}>` +
    `<div class="ccvv-title"><b class="ccvv-name">${esc(title)}</b>${modes}<span class="ccvv-max"></span></div>` +
    `<canvas class="ccvv-canvas" data-testid="video-${name}"></canvas></div>`;
}

// 3D criss-cross against space-time non-local: this clip (analytic), CamVid's size (measured), 5 x 97 x 97.
function costHtml(cost) {
  const nb = "\u00a0";  // a figure and its unit on one line
  const mb = (b) => (b >= 1e9 ? `${(b / 1e9).toFixed(1)}${nb}GB` : b >= 1e6 ? `${(b / 1e6).toFixed(1)}${nb}MB` : `${(b / 1e3).toFixed(0)}${nb}kB`);
  const gib = (b) => `${(b / 2 ** 30).toFixed(1)}${nb}GiB`, here = cost.here, paper = cost.paper, cam = cost.camvid;
  const tip = (text, source) => `<b title="${esc(source)}">${text}</b>`;
  let html = `Attention maps, 3D criss-cross against space-time non-local: ${tip(mb(here.step_bytes), here.source)} a step` +
    (here.steps > 1 ? ` (R\u00a0=\u00a0${here.steps}: ${mb(here.criss_cross_bytes)})` : "") + ` against ` +
    `${tip(mb(here.nonlocal_bytes), here.source)} (${(here.nonlocal_bytes / here.step_bytes).toFixed(0)}× a step) on this ` +
    `clip's ${here.grid.join("×")} positions; `;
  if (cam) {
    html += `at CamVid's ${cam.grid.join("×")}, R\u00a0=\u00a03 ${tip(`${(cam.criss_cross.median_ms / 1000).toFixed(2)}${nb}s, ` +
      `${(cam.criss_cross.peak_bytes / 2 ** 20).toFixed(0)}${nb}MiB peak`, cam.source)} (measured), non-local ` +
      `${tip(gib(cam.nonlocal.peak_bytes), cam.nonlocal.reason || cam.source)} for its map alone (not run); `;
  }
  return html + `at ${paper.grid.join("×")}, ${tip(mb(paper.step_bytes), paper.source)} a step against ` +
    `${tip(mb(paper.nonlocal_bytes), paper.source)}.`;
}

function toolbar() {
  return '<div class="ccvv-tools">' + mapMenus("ccvv", Object.keys(V.data.colormaps), V.cmap, V.scale) +
    `<label>segmentation <input class="ccvv-opacity" type="range" min="0" max="1" step="0.05" value="${V.opacity}"></label>` +
    '<button class="ccvv-link" type="button">copy link</button></div>';
}

function colourbar() {
  const steps = V.value.kind === "non-local-3d" ? 0 : V.value.steps;
  const reach = steps ? "; reach: " + Array.from({ length: steps }, (_, s) => `<i class="s${s + 1}">step ${s + 1}</i>`).join(" ") : "";
  return `<div class="ccvv-bar"><canvas class="ccvv-ramp" width="256" height="1"></canvas><span>each map's colours run ` +
    `from its maximum over the whole clip${V.scale === "log" ? ", down 4 decades (log)" : " (linear)"}${reach}</span></div>`;
}

function drawRamp() {
  $(".ccvv-bar").outerHTML = colourbar();
  paintRamp($(".ccvv-ramp"), V.luts[V.cmap]);
}

// The frames, their segmentation and the greyed frames under the maps, decoded once per clip.
function layers(data) {
  V.frames = []; V.masks = []; V.grey = []; V.maskData = [];
  V.byColour = new Map(data.palette.map((rgb, i) => [(rgb[0] << 16) | (rgb[1] << 8) | rgb[2], i]));
  data.frames.forEach((src, t) => {
    const img = new Image();
    img.onload = () => {
      const grey = document.createElement("canvas");
      [grey.width, grey.height] = [img.naturalWidth, img.naturalHeight];
      const ctx = grey.getContext("2d");
      ctx.filter = "grayscale(1) brightness(0.55)";
      ctx.drawImage(img, 0, 0);
      V.grey[t] = grey;
      renderAll();
    };
    img.src = src;
    V.frames[t] = img;
  });
  data.masks.forEach((src, t) => {
    V.masks[t] = readPixels(src, (image) => {
      V.maskData[t] = image;
      if (V.cell && V.cell[0] === t) show(...V.cell); else renderAll();  // the hover line names the class
    });
  });
}

// The frames' width: all rows within the height the screen leaves them, the frames of a row side by
// side; on a phone at least 120 px a frame, the strip scrolling sideways.
function fit() {
  const strip = $(".ccvv-strip");
  if (!strip || !V.value) return;
  const [H, W] = V.value.size, [T] = dims(), rows = $$(".ccvv-row").length, phone = window.innerWidth < 720;
  // on a desktop the rows end above the screen's bottom, with the colour bar and the pixel's lines
  const top = strip.getBoundingClientRect().top + window.scrollY;
  const room = Math.max(240, phone ? window.innerHeight * 0.75 : window.innerHeight - top - 90);
  const byWidth = (strip.clientWidth - 8 - V.gap * (T - 1)) / T, byHeight = (room / rows - 24) * (W / H);
  V.fw = Math.max(phone ? 144 : 60, Math.floor(Math.min(byWidth, byHeight)));
  V.fh = Math.round((V.fw * H) / W);
  const dpr = window.devicePixelRatio || 1, cssWidth = T * V.fw + (T - 1) * V.gap;
  for (const canvas of $$("canvas.ccvv-canvas")) {
    canvas.style.width = `${cssWidth}px`;
    canvas.style.height = `${V.fh}px`;
    [canvas.width, canvas.height] = [Math.round(cssWidth * dpr), Math.round(V.fh * dpr)];
  }
  for (const row of $$(".ccvv-row")) row.style.width = `${cssWidth}px`;
  strip.style.setProperty("--ccvv-seen", `${strip.clientWidth - 12}px`);  // a title stays within the strip's view
  renderAll();
}

function listen(canvas) {
  let down = null, held = null, exploring = false;
  const move = "onpointerrawupdate" in window ? "pointerrawupdate" : "pointermove";
  canvas.addEventListener(move, (ev) => {
    if (ev.pointerType === "touch" && !exploring) return;  // a finger that has not held still is scrolling
    const at = frameAt(ev, canvas);
    if (!at) return;
    const [r, c] = cellOf(at[1], at[2]);
    if (!V.cell || V.cell[0] !== at[0] || V.cell[1] !== r || V.cell[2] !== c) show(at[0], r, c, ev);
  });
  canvas.addEventListener("pointerdown", (ev) => {
    down = [ev.clientX, ev.clientY];
    if (ev.pointerType !== "touch") { $(".ccvv-root").focus({ preventScroll: true }); return; }
    held = setTimeout(() => { exploring = true; canvas.classList.add("ccvv-exploring"); }, 300);
  });
  const end = () => { clearTimeout(held); exploring = false; canvas.classList.remove("ccvv-exploring"); };
  canvas.addEventListener("pointerup", (ev) => {
    const at = frameAt(ev, canvas);
    if (down && at && Math.hypot(ev.clientX - down[0], ev.clientY - down[1]) < 6) pin(...at, ev);
    down = null;
    end();
  });
  canvas.addEventListener("pointercancel", () => { down = null; end(); });
  canvas.addEventListener("touchmove", (ev) => { if (exploring) ev.preventDefault(); }, { passive: false });
  canvas.addEventListener("pointerleave", () => {
    if (V.pinned) show(V.pinned[0], ...cellOf(V.pinned[1], V.pinned[2]));
  });
}

function onKey(ev) {
  if (!V.value || !V.cell || ["INPUT", "SELECT", "BUTTON"].includes(ev.target.tagName)) return;
  const [T, h, w] = dims(), n = ev.shiftKey ? 4 : 1, [t, r, c] = V.cell;
  const moves = { ArrowUp: [0, -n, 0], ArrowDown: [0, n, 0], ArrowLeft: [0, 0, -n], ArrowRight: [0, 0, n], "[": [-1, 0, 0], "]": [1, 0, 0] };
  if (moves[ev.key]) {
    ev.preventDefault();
    const [dt, dr, dc] = moves[ev.key], clamp = (v, k) => Math.max(0, Math.min(k - 1, v));
    show(clamp(t + dt, T), clamp(r + dr, h), clamp(c + dc, w), ev);
  } else if (ev.key === "Enter") {
    ev.preventDefault();
    pin(t, ...cellCentre(r, c), ev);
  }
}

function setView(view) {
  V.view = view;
  $$(".ccvv-row").forEach((row) => row.classList.toggle("ccvv-active", row.dataset.view === view ||
    (row.dataset.view === "composed" && view === "reach")));
  $$(".ccvv-modes button").forEach((b) => b.classList.toggle("on", (b.dataset.mode === "reach") === (view === "reach")));
  if (V.cell) show(...V.cell);
  syncUrl();
}

function controls() {
  const redraw = () => { if (V.cell) show(...V.cell); syncUrl(); };
  $(".ccvv-cmap").addEventListener("change", (e) => { V.cmap = e.target.value; drawRamp(); redraw(); });
  $(".ccvv-scale").addEventListener("change", (e) => { V.scale = e.target.value; drawRamp(); redraw(); });
  $(".ccvv-opacity").addEventListener("input", (e) => { V.opacity = Number(e.target.value); renderAll(); });
  copiesTheLink($(".ccvv-link"));
  titlesChooseTheView($$(".ccvv-row[data-map] .ccvv-title"), setView);
}

let building = 0;
async function build() {
  const mine = ++building, given = props.value, root = $(".ccvv-root");
  if (!given || !given.size) {
    root.innerHTML = '<div class="ccvv-empty">Upload a clip or pick a demo clip.</div>';
    const cleared = V.value !== null;
    V.value = null; V.pinned = null; V.cell = null;
    if (cleared) syncUrl();
    return;
  }
  let data, pinned = null;
  try {
    data = V.dataUrl === given.data ? V.data : await fetched(given.data);
    if (given.pinned) pinned = await fetched(given.pinned);
  } catch (err) {
    if (mine === building) root.innerHTML = '<div class="ccvv-empty">The clip\'s maps could not be fetched; reload the page.</div>';
    return;
  }
  if (mine !== building) return;  // a newer value arrived meanwhile: that build draws
  const sameClip = V.value && V.dataUrl === given.data;
  [V.data, V.dataUrl] = [data, given.data];
  V.value = { ...given, pinned_maps: pinned };
  for (const k of ["cmap", "scale", "clip", "opacity"]) if (V[k] === null) V[k] = given.defaults[k];  // the server's, once
  const d = given.display || {};
  if (typeof d.cmap === "string" && Object.hasOwn(data.colormaps, d.cmap)) V.cmap = d.cmap;
  if (d.scale === "log" || d.scale === "linear") V.scale = d.scale;
  if (typeof given.view === "string" && given.views.includes(given.view)) V.view = given.view;
  const names = given.panels.map(([n]) => n);
  if (!names.includes(V.view) && !(V.view === "reach" && names.includes("composed") && given.kind !== "non-local-3d")) V.view = "composed";
  V.factor = codeFactors(data);
  V.codes = data.codes ? data.codes.map(bytes) : null;
  V.scales = data.scales ? data.scales.map(floats) : null;
  V.luts = {};
  for (const [name, b64] of Object.entries(data.colormaps)) V.luts[name] = bytes(b64);
  if (!sameClip) layers(data);
  root.innerHTML = `<div class="ccvv-cost" data-testid="video-cost">${costHtml(data.cost)}</div>` + toolbar() +
    '<div class="ccvv-strip">' + given.panels.map(([n, title]) => rowHtml(n, title)).join("") + "</div>" + colourbar() +
    '<div class="ccvv-hover" aria-live="polite"></div><div class="ccvv-pin" data-testid="video-pin"></div>';
  root.dataset.mode = V.codes ? "browser" : "server";
  root.dataset.kind = given.kind;
  V.mapCanvas = {};
  V.shown = {};
  for (const canvas of $$("canvas.ccvv-canvas")) listen(canvas);
  if (!V.resize) V.resize = new ResizeObserver(() => fit());
  V.resize.disconnect();
  V.resize.observe(root);
  fit();
  drawRamp();
  controls();
  if (given.pin) V.pinned = given.pin;
  else if (!sameClip) V.pinned = null;
  // the frame a link opened on stays in the URL until a pin names one (or another clip comes)
  if (!sameClip || given.t != null) V.frame = given.t != null && !given.pin ? given.t : null;
  const [T, h, w] = given.grid;
  const start = V.pinned ? [V.pinned[0], ...cellOf(V.pinned[1], V.pinned[2])]
    : sameClip && V.cell ? V.cell : [Math.min(T - 1, given.t || 0), Math.floor(h / 2), Math.floor(w / 2)];
  show(...start);
  syncUrl();
}

element.addEventListener("keydown", onKey);
window.addEventListener("resize", fit);
window.__ccnetVideo = {
  state: V,
  stepAt: (s, t, r, c) => Array.from(stepMap(s, t, r, c)),
  composedAt: (t, r, c) => Array.from(composedMap(t, r, c)),
  reachAt: (t, r, c) => reach(t, r, c).counts,
  timings: () => V.timings.slice(),
  pins: () => V.pins.slice(),
};
build();
watch("value", build);
