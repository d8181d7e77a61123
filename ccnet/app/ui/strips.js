// The claim at first sight, after viewer.js: the cost strip (non-local against R = 2, here and at the
// paper's size), every head of the family side by side at the pixel (its class and confidence, its map
// and how much of it lies on the cue panel), the pinned pixel's line (class, confidence, top cells) and
// one picture of it all to share.

const pct = (x) => `${(100 * x).toFixed(1)}%`;
const times = (x) => `${x.toFixed(1)}×`;

function costStripHtml(v) {
  const here = v.cost.here, paper = v.cost.paper;
  const at = paper ? ` at the paper's 97×97 <b title="${esc(paper.source)}">${times(paper.memory_x)}</b> (paper: ` +
    `${times(paper.paper_memory_x)}) and` : "";
  const flops = paper ? `R = 2 does <b title="${esc(paper.source)}">${pct(paper.fewer_flops)}</b> fewer FLOPs there ` +
    `(paper: ${pct(paper.paper_fewer_flops)}), <b title="${esc(here.source)}">${pct(here.fewer_flops)}</b> here.` : "";
  return `<div class="ccv-cost" data-testid="cost-strip">Attention maps of a non-local block against R = 2's:${at} ` +
    `<b title="${esc(here.source)}">${times(here.memory_x)}</b> on this image's ${here.grid[0]}×${here.grid[1]} cells; ` +
    `${flops} <a href="#cost-note">measured here ↓</a></div>`;
}

function headsStripHtml(v) {
  if (v.heads.length < 2) return "";
  const cards = v.heads.map((head) => `<div class="ccv-head${head.name === v.own ? " ccv-own" : ""}" data-head="${esc(head.name)}">` +
    `<div class="ccv-head-title"><b>${esc(head.label)}</b> <span>${esc(head.reach)}</span></div>` +
    (head.kind === "none" ? '<div class="ccv-head-none">no attention</div>'
      : '<canvas class="ccv-head-map"></canvas>') +
    '<div class="ccv-head-class"></div><div class="ccv-head-why"></div></div>').join("");
  return `<div class="ccv-heads" data-testid="heads-strip">${cards}</div>`;
}

function pinLineHtml() { return '<div class="ccv-pin" data-testid="pin-class"></div>'; }

// The pixel the strips describe: the pinned one when its cell is hovered, else the hovered cell's centre.
function stripPixel(r, c) {
  if (S.pinned) { const [pr, pc] = cellOf(...S.pinned); if (pr === r && pc === c) return S.pinned; }
  return cellCentre(r, c);
}

function onPanel(map) {
  const cells = S.value.panel_cells || [];
  return cells.length ? cells.reduce((sum, [r, c]) => sum + map[r * grid()[1] + c], 0) : null;
}

function drawHeadMap(canvas, map) {
  const [H, W] = S.value.size, dpr = window.devicePixelRatio || 1;
  canvas.style.aspectRatio = `${W} / ${H}`;
  const cw = Math.max(1, Math.round(canvas.clientWidth * dpr)), ch = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== cw || canvas.height !== ch) [canvas.width, canvas.height] = [cw, ch];
  const ctx = canvas.getContext("2d");
  ctx.globalAlpha = 1;
  ctx.drawImage(S.grey, 0, 0, cw, ch);
  const small = document.createElement("canvas");
  paintMap(small, map);
  ctx.globalAlpha = 0.85;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, cw, ch);
}

function updateStrips(r, c) {
  const [x, y] = stripPixel(r, c);
  for (const card of $$(".ccv-head")) {
    const name = card.dataset.head, head = S.heads[name], reader = S.classAt && S.classAt[name];
    const found = reader ? reader(x, y) : null;
    card.querySelector(".ccv-head-class").textContent = found ? `${found[0]} ${pct(found[1])}` : "…";
    const canvas = card.querySelector("canvas"), maps = hasMaps(head) ? headMaps(head, grid(), r, c) : null;
    if (canvas && maps) drawHeadMap(canvas, maps.composed);
    const share = maps ? onPanel(maps.composed) : null;
    card.querySelector(".ccv-head-why").textContent = share === null ? "" : `${pct(share)} of its weight on the sign`;
  }
  pinLine();
}

// The pinned pixel at once, from what the page holds: class, confidence and the top cells of the
// chosen map (the server's table, chart and downloads follow).
function pinLine() {
  const line = $(".ccv-pin");
  if (!line) return;
  if (!S.pinned) { line.textContent = ""; return; }
  const [x, y] = S.pinned, [r, c] = cellOf(x, y), reader = S.classAt && S.classAt[S.own];
  const found = reader ? reader(x, y) : null, maps = ownMaps(r, c);
  const view = WHOLE.includes(S.view) || !S.view.startsWith("step") ? "composed" : S.view;
  const map = maps && (view === "composed" ? maps.composed : maps.steps[Number(view.slice(4)) - 1]);
  const top = map ? topCells(map, grid(), 5).map(([tr, tc, wt]) => `(${tr}, ${tc}) ${wt.toFixed(3)}`).join(" · ") : "";
  line.textContent = `pinned (${x}, ${y}) → ${found ? `${found[0]} (${pct(found[1])})` : "…"} · cell (${r}, ${c})` +
    (top ? ` · top 5 of ${view}: ${top}` : "");
}

// One picture to share: the title, the pixel and its model, the panels, every head and the colour bar.
function savePicture() {
  const stages = $$("canvas.ccv-view"), heads = $$(".ccv-head"), width = 1400, pad = 16;
  const panelW = (width - pad * (stages.length + 1)) / stages.length;
  const [H, W] = S.value.size, panelH = panelW * H / W, headW = (width - pad * (heads.length + 1)) / Math.max(1, heads.length);
  const headH = headW * H / W, height = 90 + panelH + 40 + (heads.length ? headH + 80 : 0) + 40;
  const out = document.createElement("canvas");
  [out.width, out.height] = [width, height];
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, height);
  ctx.fillStyle = "#111"; ctx.font = "bold 22px sans-serif";
  ctx.fillText("CCNet Explorer · criss-cross attention", pad, 32);
  ctx.font = "15px sans-serif";
  ctx.fillText(`model ${S.value.model} · ${$(".ccv-pin").textContent || `cell ${S.cell}`}`.slice(0, 170), pad, 58);
  stages.forEach((canvas, i) => {
    const x = pad + i * (panelW + pad);
    ctx.fillText(canvas.closest(".ccv-panel").querySelector(".ccv-name").textContent, x, 82);
    ctx.drawImage(canvas, x, 90, panelW, panelH);
  });
  let y = 90 + panelH + 30;
  heads.forEach((card, i) => {
    const x = pad + i * (headW + pad), map = card.querySelector("canvas");
    ctx.fillText(card.querySelector(".ccv-head-title b").textContent, x, y);
    if (map) ctx.drawImage(map, x, y + 8, headW, headH);
    ctx.fillText(`${card.querySelector(".ccv-head-class").textContent} ${card.querySelector(".ccv-head-why").textContent}`
      .slice(0, 40), x, y + headH + 28);
  });
  y = height - 24;
  ctx.drawImage($(".ccv-ramp"), pad, y, 256, 12);
  ctx.fillText(`colours: ${S.cmap}, ${S.scale}, clip ${S.clip} of each map's maximum`, pad + 270, y + 11);
  const link = document.createElement("a");
  link.download = `ccnet_${S.value.model.replace(/[^\w.-]+/g, "_")}_${S.pinned ? S.pinned.join("_") : "cell"}.png`;
  link.href = out.toDataURL("image/png");
  link.click();
}
