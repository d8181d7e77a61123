// The maps, computed in the page from what the server sent once per image (ccnet/app/browser_maps.py):
// each head's quantised weights, decoded here; the step and composed maps of a cell, a non-local
// head's dense row, the reach (which cells can carry weight after each step), the readers (who
// reads a cell after all steps: a column of the composed matrix) and the top cells of a map.
// Loaded first; viewer.js and strips.js use these functions.

function bytes(b64) {
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}
const floats = (b64) => new Float32Array(bytes(b64).buffer);

// code c > 0 stands for scale * 10^((c - 1) * step - decades); 0 for a weight below the floor
function codeFactors(v) {
  const factor = new Float64Array(256), step = v.decades / (v.levels - 1);
  for (let c = 1; c < 256; c++) factor[c] = Math.pow(10, (c - 1) * step - v.decades);
  return factor;
}

function decodeHead(head, factor) {
  const out = { ...head, factor };
  if (head.codes) { out.codes = head.codes.map(bytes); out.scales = head.scales.map(floats); }
  if (head.dense) { out.denseCodes = bytes(head.dense.codes); out.denseScales = floats(head.dense.scales); }
  return out;
}

const hasMaps = (head) => !!(head && (head.codes || head.denseCodes));

// Weight cell (r, c) gives entry j of its cross at step s (j < h: column, else row).
function crossWeight(head, grid, s, r, c, j) {
  const [h, w] = grid, cell = r * w + c;
  return head.scales[s][cell] * head.factor[head.codes[s][cell * (h + w) + j]];
}

function stepMap(head, grid, s, r, c) {
  const [h, w] = grid, out = new Float32Array(h * w);
  for (let k = 0; k < h; k++) out[k * w + c] += crossWeight(head, grid, s, r, c, k);
  for (let k = 0; k < w; k++) out[r * w + k] += crossWeight(head, grid, s, r, c, h + k);
  return out;
}

// M = e_q A_R ... A_1, as ccnet.nn.attention_maps.composed_map: mass flows through the last step first.
function composedMap(head, grid, r, c) {
  const [h, w] = grid;
  let mass = new Float32Array(h * w);
  mass[r * w + c] = 1;
  for (let s = head.steps - 1; s >= 0; s--) {
    const out = new Float32Array(h * w);
    for (let v = 0; v < h * w; v++) {
      const m = mass[v];
      if (m === 0) continue;
      const vr = Math.floor(v / w), vc = v % w;
      for (let k = 0; k < h; k++) out[k * w + vc] += m * crossWeight(head, grid, s, vr, vc, k);
      for (let k = 0; k < w; k++) out[vr * w + k] += m * crossWeight(head, grid, s, vr, vc, h + k);
    }
    mass = out;
  }
  return mass;
}

// A non-local head's one map: row q of its dense matrix.
function denseRow(head, grid, r, c) {
  const n = grid[0] * grid[1], q = r * grid[1] + c, out = new Float32Array(n), scale = head.denseScales[q];
  for (let v = 0; v < n; v++) out[v] = scale * head.factor[head.denseCodes[q * n + v]];
  return out;
}

// What one head shows for a cell: its step maps and the map after all its steps (null without maps).
function headMaps(head, grid, r, c) {
  if (head.codes) {
    const steps = [];
    for (let s = 0; s < head.steps; s++) steps.push(stepMap(head, grid, s, r, c));
    return { steps, composed: composedMap(head, grid, r, c) };
  }
  if (head.denseCodes) return { steps: [], composed: denseRow(head, grid, r, c) };
  return null;
}

// Which cells can carry weight to cell (r, c) after each step: the support, not the weights. A
// criss-cross step adds every cell on the row and column of a cell already reached; a non-local
// step adds every cell. Returns, per cell, the first step that reaches it (0: the cell itself,
// Infinity: never) and the counts after each step.
function reach(kind, steps, grid, r, c) {
  const [h, w] = grid, first = new Float64Array(h * w).fill(Infinity), counts = [];
  first[r * w + c] = 0;
  let rows = new Set([r]), cols = new Set([c]);
  for (let s = 1; s <= steps; s++) {
    if (kind === "non-local") { first.forEach((f, i) => { if (f === Infinity) first[i] = s; }); }
    else {
      for (let i = 0; i < h * w; i++) {
        if (first[i] === Infinity && (rows.has(Math.floor(i / w)) || cols.has(i % w))) first[i] = s;
      }
      rows = new Set(); cols = new Set();
      first.forEach((f, i) => { if (f <= s) { rows.add(Math.floor(i / w)); cols.add(i % w); } });
    }
    counts.push(first.reduce((n, f) => n + (f <= s ? 1 : 0), 0));
  }
  return { first, counts };
}

// Who reads cell (r, c) after all the steps: column v of M = A_R ... A_1, i.e. A_R(...(A_1 e_v)),
// each step's weights applied to the mass a cell's cross holds.
function readers(head, grid, r, c) {
  const [h, w] = grid, n = h * w;
  if (head.denseCodes) {
    const out = new Float32Array(n), v = r * w + c;
    for (let q = 0; q < n; q++) out[q] = head.denseScales[q] * head.factor[head.denseCodes[q * n + v]];
    return out;
  }
  let x = new Float32Array(n);
  x[r * w + c] = 1;
  for (let s = 0; s < head.steps; s++) {
    const out = new Float32Array(n);
    for (let q = 0; q < n; q++) {
      const qr = Math.floor(q / w), qc = q % w;
      let sum = 0;
      for (let k = 0; k < h; k++) sum += crossWeight(head, grid, s, qr, qc, k) * x[k * w + qc];
      for (let k = 0; k < w; k++) sum += crossWeight(head, grid, s, qr, qc, h + k) * x[qr * w + k];
      out[q] = sum;
    }
    x = out;
  }
  return x;
}

// The k largest cells of a map as [row, col, weight], largest first (ties: the earlier cell).
function topCells(map, grid, k) {
  const order = Array.from(map.keys()).sort((a, b) => map[b] - map[a] || a - b);
  return order.slice(0, k).map((i) => [Math.floor(i / grid[1]), i % grid[1], map[i]]);
}
