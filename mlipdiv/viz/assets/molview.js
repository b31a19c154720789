// Conformer stepping and force arrows of the 3D views made by mlipdiv.viz.molview.view_html (no network, no server
// round trip: everything runs in the page). v: the 3Dmol.js viewer with one frame per conformer; D: the view's data,
// {n, start, captions (HTML-escaped), positions and forces (optional, per conformer and atom)}. The controls
// (#mv-slider, #mv-prev, #mv-next, #mv-play, #mv-forces) may be absent; #mv-caption is always there.
function mlipdivMolview(v, D) {
const $ = (id) => document.getElementById(id);
let current = D.start, timer = null;
function arrows(i) {
  v.removeAllShapes();
  if (!D.forces || !$('mv-forces').checked) return;
  D.positions[i].forEach((p, k) => {
    const f = D.forces[i][k];
    if (Math.hypot(f[0], f[1], f[2]) < 0.03) return;
    v.addArrow({start: {x: p[0], y: p[1], z: p[2]}, end: {x: p[0] + f[0], y: p[1] + f[1], z: p[2] + f[2]},
                radius: 0.06, color: '#D55E00'});
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
show(D.start);
}
