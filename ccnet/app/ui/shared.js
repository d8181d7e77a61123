// What the images' viewer and the clips' viewer share (each page's script starts with this file):
// a JSON fetch, the copy-link button, panel titles that choose the view, and the colour ramp.

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);  // shown, never parsed

// The component's value is small (Gradio keeps it in the session); pictures and maps are fetched
// from the URL it names, once per image or clip (ccnet/app/server/blobs.py).
async function fetched(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${response.status}`);
  return response.json();
}

function copiesTheLink(button) {
  button.addEventListener("click", async (e) => {
    const url = e.target.dataset.url || window.location.href;
    try { await navigator.clipboard.writeText(url); e.target.textContent = "link copied"; }
    catch (err) { window.prompt("Copy this link:", url); }
    setTimeout(() => { e.target.textContent = "copy link"; }, 1500);
  });
}

// A click on a panel's title shows that panel's map (or the mode its button names).
function titlesChooseTheView(titles, setView) {
  for (const title of titles) {
    title.addEventListener("click", (e) => {
      const mode = e.target.closest("button[data-mode]");
      setView(mode ? mode.dataset.mode : title.parentElement.dataset.view);
    });
  }
}

// The colormap and scale menus of a toolbar; `prefix` names their classes (ccv or ccvv).
function mapMenus(prefix, colormaps, cmap, scale) {
  const opts = colormaps.map((n) => `<option${n === cmap ? " selected" : ""}>${esc(n)}</option>`);
  return `<label>colormap <select class="${prefix}-cmap">${opts.join("")}</select></label>` +
    `<label>scale <select class="${prefix}-scale"><option${scale === "log" ? " selected" : ""}>log</option>` +
    `<option${scale === "linear" ? " selected" : ""}>linear</option></select></label>`;
}

// The picture at `src` loaded, and its pixels read once (done(ImageData)): the pages read classes off it.
function readPixels(src, done) {
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    done(ctx.getImageData(0, 0, canvas.width, canvas.height));
  };
  img.src = src;
  return img;
}

function paintRamp(canvas, lut) {
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(256, 1);
  for (let i = 0; i < 256; i++) img.data.set([lut[3 * i], lut[3 * i + 1], lut[3 * i + 2], 255], 4 * i);
  ctx.putImageData(img, 0, 0);
}
