// Conformer stepping and force arrows of the 3D views made by mlipdiv.viz.molview.view_html (no network, no server
// round trip: everything runs in the page). v: the 3Dmol.js viewer with one frame per conformer; D: the view's data,
// {n, start, captions (HTML-escaped), positions, forces (each conformer's largest = 1.2 A), magnitude (meV/A) and
// colour_max, colours (optional, per conformer and atom)}. The controls (#mv-slider, #mv-prev, #mv-next, #mv-play,
// #mv-forces, #mv-scale) may be absent; #mv-caption is always there.
function mlipdivMolview(v, D) {
const $ = (id) => document.getElementById(id);
let current = D.start, timer = null;
function hex(c) { return [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)); }
function colour(t) {  // t in [0, 1] along D.colours
  const s = D.colours, x = Math.min(Math.max(t, 0), 1) * (s.length - 1), k = Math.min(Math.floor(x), s.length - 2);
  const a = hex(s[k]), b = hex(s[k + 1]), u = x - k;
  return '#' + a.map((q, m) => Math.round(q + (b[m] - q) * u).toString(16).padStart(2, '0')).join('');
}
function arrows(i) {
  v.removeAllShapes();
  if (!D.forces || !$('mv-forces').checked) return;
  const scale = $('mv-scale') ? parseFloat($('mv-scale').value) : 1;
  D.positions[i].forEach((p, k) => {
    const f = D.forces[i][k], len = Math.hypot(f[0], f[1], f[2]);
    if (len < 0.02) return;
    const off = 0.35 / len;  // start at the atom's surface (sphere radius about 0.35 A), not inside it
    const s = [p[0] + f[0] * off, p[1] + f[1] * off, p[2] + f[2] * off];
    v.addArrow({start: {x: s[0], y: s[1], z: s[2]},
                end: {x: s[0] + f[0] * scale, y: s[1] + f[1] * scale, z: s[2] + f[2] * scale},
                radius: 0.07, color: colour(D.magnitude[i][k] / D.colour_max)});
  });
}
function show(i) {
  current = (i + D.n) % D.n;
  if ($('mv-slider')) $('mv-slider').value = current;
  $('mv-caption').innerHTML = D.captions[current];
  Promise.resolve(v.setFrame(current)).then(() => { arrows(current); v.render(); });
}
if ($('mv-slider')) {
  $('mv-slider').addEventListener('input', (e) => show(parseInt(e.target.value)));
  $('mv-prev').onclick = () => show(current - 1);
  $('mv-next').onclick = () => show(current + 1);
  $('mv-play').onclick = () => {
    if (timer) { clearInterval(timer); timer = null; $('mv-play').textContent = 'play'; return; }
    timer = setInterval(() => show(current + 1), 400); $('mv-play').textContent = 'pause';
  };
}
if ($('mv-forces')) $('mv-forces').addEventListener('change', () => show(current));
if ($('mv-scale')) $('mv-scale').addEventListener('input', () => { if ($('mv-forces').checked) show(current); });
show(D.start);
}
