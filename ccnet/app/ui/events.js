// The viewer's events and its build, after maps.js, viewer.js and strips.js: the pointer, the keys,
// the toolbar, touch (a vertical swipe scrolls the page; a tap pins; a press held still, then moved,
// explores), and the build on every new value of the component.

function listen(stage) {
  let down = null, held = null, exploring = false;
  // pointerrawupdate (Chromium) arrives as soon as the input does; pointermove waits for the next frame
  const move = "onpointerrawupdate" in window ? "pointerrawupdate" : "pointermove";
  stage.addEventListener(move, (ev) => {
    if (ev.pointerType === "touch" && !exploring) return;  // a finger that has not held still is scrolling
    const [x, y] = pixelOf(ev, stage), [r, c] = cellOf(x, y);
    if (!S.cell || S.cell[0] !== r || S.cell[1] !== c) show(r, c, ev);
  });
  stage.addEventListener("pointerdown", (ev) => {
    down = [ev.clientX, ev.clientY];
    if (ev.pointerType !== "touch") { stage.focus(); return; }
    held = setTimeout(() => { exploring = true; stage.classList.add("ccv-exploring"); }, 300);
  });
  const end = () => { clearTimeout(held); exploring = false; stage.classList.remove("ccv-exploring"); };
  stage.addEventListener("pointerup", (ev) => {
    if (down && Math.hypot(ev.clientX - down[0], ev.clientY - down[1]) < 6) pin(...pixelOf(ev, stage), ev);
    down = null;
    end();
  });
  stage.addEventListener("pointercancel", () => { down = null; end(); });  // the browser took it: a scroll
  stage.addEventListener("touchmove", (ev) => { if (exploring) ev.preventDefault(); }, { passive: false });
  stage.addEventListener("pointerleave", () => {
    if (S.pinned) { const [r, c] = cellOf(...S.pinned); show(r, c); }
  });
}

function onKey(ev) {
  if (!S.value || !S.cell || ["INPUT", "SELECT", "BUTTON"].includes(ev.target.tagName)) return;
  const [h, w] = grid(), n = ev.shiftKey ? 4 : 1;
  const moves = { ArrowUp: [-n, 0], ArrowDown: [n, 0], ArrowLeft: [0, -n], ArrowRight: [0, n] };
  if (moves[ev.key]) {
    ev.preventDefault();
    const r = Math.max(0, Math.min(h - 1, S.cell[0] + moves[ev.key][0]));
    const c = Math.max(0, Math.min(w - 1, S.cell[1] + moves[ev.key][1]));
    show(r, c, ev);
  } else if (ev.key === "Enter") {
    ev.preventDefault();
    pin(...cellCentre(...S.cell), ev);
  }
}

function setView(view) {
  S.view = view;
  $$(".ccv-panel").forEach((p) => p.classList.toggle("ccv-active", p.dataset.view === view ||
    (p.dataset.view === "composed" && WHOLE.includes(view))));
  $$(".ccv-modes button").forEach((b) => b.classList.toggle("on", b.dataset.mode === view ||
    (b.dataset.mode === "composed" && !WHOLE.includes(view))));
  if (S.cell) show(...S.cell);
  syncUrl();
  if (S.pinned && !WHOLE.includes(view)) trigger("click", { x: S.pinned[0], y: S.pinned[1], view });
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
  copiesTheLink($(".ccv-link"));
  $(".ccv-save").addEventListener("click", savePicture);
  titlesChooseTheView($$(".ccv-panel[data-map] .ccv-title"), setView);
}

let building = 0;
async function build() {
  const mine = ++building, given = props.value;
  const root = $(".ccv-root");
  if (!given || !given.size) {
    root.innerHTML = '<div class="ccv-empty">Upload an image or pick an example.</div>';
    const cleared = S.value !== null;  // (before the first image, the link is still the server's to read)
    S.value = null;
    S.pinned = null;
    if (cleared) syncUrl();  // no image shown: none in the link either
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
  const sameImage = S.value && S.value.data === given.data;
  [S.data, S.dataUrl] = [data, given.data];
  const v = { ...data, ...given, pinned_maps: pinned };
  S.value = v;
  readSettings(v);
  const factor = codeFactors(v);
  S.heads = Object.fromEntries(v.heads.map((head) => [head.name, decodeHead(head, factor)]));
  S.own = v.own;
  S.luts = {};
  for (const [name, b64] of Object.entries(v.colormaps)) S.luts[name] = bytes(b64);
  if (!v.views.includes(S.view) || (!v.panels.some(([n]) => n === S.view) && !WHOLE.includes(S.view))) S.view = "composed";
  root.innerHTML = costStripHtml(v) + toolbar() + '<div class="ccv-panels">' +
    v.panels.map(([n, t]) => panelHtml(n, t)).join("") + "</div>" + colourbar() +
    '<div class="ccv-hover" aria-live="polite"></div>' + pinLineHtml() + headsStripHtml(v);
  root.dataset.mode = hasMaps(own()) ? "browser" : "server";
  root.dataset.kind = v.kind || "criss-cross";
  const [H, W] = v.size;
  S.mapCanvas = {};
  S.shown = {};
  layers(v);
  classReaders(v);
  for (const stage of $$(".ccv-stage")) {
    stage.style.aspectRatio = `${W} / ${H}`;
    listen(stage);
  }
  if (!S.resize) S.resize = new ResizeObserver(fit);
  S.resize.disconnect();
  S.resize.observe(root);
  fit();
  drawRamp();
  controls();
  if (v.pin) S.pinned = v.pin;
  else if (!sameImage) S.pinned = null;
  const start = S.pinned ? cellOf(...S.pinned) : (sameImage && S.cell ? S.cell : [Math.floor(v.grid[0] / 2), Math.floor(v.grid[1] / 2)]);
  show(...start);
  syncUrl();
}

element.addEventListener("keydown", onKey);
window.addEventListener("resize", fit);
window.__ccnetViewer = {
  state: S,
  composedAt: (r, c) => Array.from(composedMap(own(), grid(), r, c)),
  stepAt: (s, r, c) => Array.from(stepMap(own(), grid(), s, r, c)),
  headAt: (name, r, c) => { const m = headMaps(S.heads[name], grid(), r, c); return m && Array.from(m.composed); },
  reachAt: (r, c) => reach(own().kind, own().kind === "non-local" ? 1 : own().steps, grid(), r, c).counts,
  readersAt: (r, c) => Array.from(readers(own(), grid(), r, c)),
  timings: () => S.timings.slice(),
  pins: () => S.pins.slice(),
};
build();
watch("value", build);
