// 2D structure in map hovers (mlipdiv.viz.sketch): a Streamlit v2 component without a view of its own. It finds the
// page's Plotly maps marked with layout.meta.mlipdiv_depict, and while the pointer rests on a point it shows that
// point's molecule as a skeletal formula in a card beside the pointer. Everything is drawn here from the sketches
// the component received, so a hover costs no round trip to the server.

const STATE = (window.__mlipdivDepict = window.__mlipdivDepict || { data: null, card: null });
const COLOURS = { O: "#d62728", N: "#1f4fbf", S: "#b8860b", P: "#e67e22", F: "#2ca02c", Cl: "#2ca02c",
                  Br: "#8c2d04", I: "#6a1b9a", B: "#c76e6e", Si: "#7f7f7f" };
const SVG = "http://www.w3.org/2000/svg";
const MAX_W = 220, MAX_H = 160, PAD = 14;

function card() {
  if (STATE.card && document.body.contains(STATE.card)) return STATE.card;
  const div = document.createElement("div");
  div.className = "mlipdiv-depiction";
  div.setAttribute("role", "img");
  div.style.cssText = "position:fixed;z-index:1000;display:none;pointer-events:none;background:#fff;" +
    "border:1px solid #ccc;border-radius:6px;box-shadow:0 2px 8px rgba(0,0,0,.2);padding:2px";
  document.body.appendChild(div);
  STATE.card = div;
  return div;
}

function molecule(globalId) {
  // the molecule whose conformer range [offsets[i], offsets[i+1]) holds the point's global conformer id
  const off = STATE.data && STATE.data.offsets;
  if (!off || !(globalId >= 0) || globalId >= off[off.length - 1]) return -1;
  let lo = 0, hi = off.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (off[mid] <= globalId) lo = mid; else hi = mid - 1;
  }
  return lo;
}

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function draw(sk) {
  // a skeletal formula: bonds as lines (double and triple as parallel lines), labelled atoms over a white disc with
  // the element symbol on the atom and its hydrogens and charge after it (subscript counts)
  const n = sk.l.length, xs = [], ys = [];
  for (let i = 0; i < n; i++) { xs.push(sk.x[2 * i]); ys.push(sk.x[2 * i + 1]); }
  const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
  const scale = Math.min(3, (MAX_W - 2 * PAD) / Math.max(maxX - minX, 1), (MAX_H - 2 * PAD) / Math.max(maxY - minY, 1));
  const font = Math.max(11, Math.min(15, 5 * scale));
  // room for the longest label beside an atom at the edge (e.g. "NH2" runs right of its N)
  const labelRoom = Math.max(0, ...sk.l.map((l) => 0.6 * font * l.length));
  const width = Math.max(90, (maxX - minX) * scale + 2 * PAD + 2 * labelRoom);
  const height = Math.max(60, (maxY - minY) * scale + 2 * PAD);
  const ox = (width - (maxX - minX) * scale) / 2, oy = (height - (maxY - minY) * scale) / 2;
  const px = (i) => ox + (xs[i] - minX) * scale, py = (i) => oy + (ys[i] - minY) * scale;
  const svg = el("svg", { width: width, height: height, viewBox: `0 0 ${width} ${height}` });
  const gap = Math.max(2.5, 2 * scale);
  for (let k = 0; k < sk.b.length; k += 3) {
    const a = sk.b[k], b = sk.b[k + 1], order = sk.b[k + 2];
    const x1 = px(a), y1 = py(a), x2 = px(b), y2 = py(b);
    const len = Math.hypot(x2 - x1, y2 - y1) || 1, nx = (y1 - y2) / len, ny = (x2 - x1) / len;
    const shifts = order === 2 ? [-0.5, 0.5] : order === 3 ? [-1, 0, 1] : [0];
    for (const s of shifts) {
      svg.appendChild(el("line", { x1: x1 + s * gap * nx, y1: y1 + s * gap * ny, x2: x2 + s * gap * nx,
                                   y2: y2 + s * gap * ny, stroke: "#222", "stroke-width": 1.6 }));
    }
  }
  const towards = new Array(n).fill(0);  // which side an atom's bonds leave on: its hydrogens go on the other
  for (let k = 0; k < sk.b.length; k += 3) {
    towards[sk.b[k]] += xs[sk.b[k + 1]] - xs[sk.b[k]];
    towards[sk.b[k + 1]] += xs[sk.b[k]] - xs[sk.b[k + 1]];
  }
  for (let i = 0; i < n; i++) {
    const label = sk.l[i];
    if (!label) continue;
    const parts = label.match(/[A-Z][a-z]?|\d+|[+-]/g), symbol = parts[0];
    const half = 0.32 * font * symbol.length;  // the symbol sits on the atom, the rest runs away from its bonds
    const hydrogensFirst = towards[i] > 0 && parts[1] === "H";
    const ordered = hydrogensFirst ? [...parts.slice(1).filter((q) => !/^[+-]$/.test(q)), symbol,
                                      ...parts.filter((q) => /^[+-]$/.test(q))] : parts;
    svg.appendChild(el("circle", { cx: px(i), cy: py(i), r: font * 0.7, fill: "#fff" }));
    const text = el("text", { x: hydrogensFirst ? px(i) + half : px(i) - half, y: py(i), "font-size": font,
                              "text-anchor": hydrogensFirst ? "end" : "start", "font-family": "sans-serif",
                              "dominant-baseline": "central", fill: COLOURS[symbol] || "#222" });
    for (const part of ordered) {
      const span = el("tspan", /^\d+$/.test(part) ? { "font-size": font * 0.7, "baseline-shift": "sub" }
                                : /^[+-]$/.test(part) ? { "font-size": font * 0.8, "baseline-shift": "super" } : {});
      span.textContent = part;
      text.appendChild(span);
    }
    svg.appendChild(text);
  }
  return svg;
}

function ready() {
  return Boolean(STATE.data && STATE.data.digest === STATE.wanted);
}

function show(event) {
  if (!ready()) {
    if (STATE.ask) STATE.ask();
    return;
  }
  const point = event && event.points && event.points[0];
  const id = point && Array.isArray(point.customdata) ? point.customdata[0] : point && point.customdata;
  const i = molecule(Number(id));
  const sk = i >= 0 ? STATE.data.sketches[i] : null;
  const box = card();
  if (!sk) { box.style.display = "none"; return; }
  if (box.dataset.molecule !== String(i)) {
    box.replaceChildren(draw(sk));
    box.dataset.molecule = String(i);
  }
  // beside the pointer, on the side away from Plotly's own label (which opens to the right)
  const mouse = event.event || {};
  const x = mouse.clientX ?? 0, y = mouse.clientY ?? 0;
  box.style.display = "block";
  const w = box.offsetWidth, h = box.offsetHeight;
  box.style.left = `${x - w - 24 >= 0 ? x - w - 24 : x + 24}px`;
  box.style.top = `${Math.max(4, Math.min(window.innerHeight - h - 8, y - h / 2))}px`;
}

function hide() {
  if (STATE.card) STATE.card.style.display = "none";
}

function attach() {
  // maps appear and are replaced as the page reruns: attach to each new one once
  for (const gd of document.querySelectorAll(".js-plotly-plot")) {
    const meta = gd.layout && gd.layout.meta;
    if (typeof gd.on !== "function" || !meta || !meta.mlipdiv_depict) continue;
    const ours = gd._ev && typeof gd._ev.listeners === "function" ? gd._ev.listeners("plotly_hover") : null;
    if (ours ? ours.includes(show) : gd.__mlipdivDepict) continue;  // a purged and redrawn map lost its listeners
    gd.__mlipdivDepict = true;
    gd.on("plotly_hover", show);
    gd.on("plotly_unhover", hide);
  }
}

export default function (component) {
  // the sketches come once per session and dataset; later renders send only the dataset's digest. A browser that
  // lacks them (a message lost to an interrupted rerun) asks for them, with a new value each time so Python reruns,
  // at most every 2 s (a hover asks too: a render whose data did not change does not call this function)
  const data = component.data || {};
  STATE.wanted = data.digest;
  STATE.ask = () => {
    if (Date.now() - (STATE.askedAt || 0) < 2000) return;
    STATE.askedAt = Date.now();
    component.setStateValue("missing", `${data.digest}:${STATE.askedAt}`);
  };
  if (data.sketches) {
    STATE.data = data;
    STATE.received = (STATE.received || 0) + 1;  // how often they came (the browser test counts)
  } else if (!ready()) STATE.ask();
  // one timer per mounted instance: when the page changes, the old page's instance is cleaned up after the new
  // one has mounted, so a shared timer would be stopped by the page being left
  const host = component.parentElement;
  if (!host.__mlipdivTimer) host.__mlipdivTimer = setInterval(attach, 400);
  attach();
  return () => {
    clearInterval(host.__mlipdivTimer);
    host.__mlipdivTimer = null;
    hide();
  };
}
