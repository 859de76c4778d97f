"""The page's script and style.

Hover thumbnails and click-to-pick on the hypersphere plot: gr.Plot has no hover/click events, so the
script attaches to the plotly div. Hover shows customdata[1] (a data: URI) beside the cursor, or, for a run too
large to embed its faces, the one face the server sends for that row (#hs-hover, cached in the page); click
writes the row (customdata[0]) into the hidden #hs-click textbox, whose change event shows the face.
A 3-D plot's hover event carries no mouse position, so the last mousemove over the plot is used.
"""

HEAD = """
<script>
(function () {
  let mouse = {x: 0, y: 0};
  document.addEventListener('mousemove', function (e) { mouse = {x: e.clientX, y: e.clientY}; }, true);
  function tip() {
    let t = document.getElementById('dfdet-tip');
    if (!t) {
      t = document.createElement('img');
      t.id = 'dfdet-tip';
      t.style.cssText = 'position:fixed;display:none;width:96px;height:96px;z-index:10000;pointer-events:none;' +
        'border:2px solid #333;border-radius:4px;background:#fff;image-rendering:auto';
      document.body.appendChild(t);
    }
    return t;
  }
  function place(t, x, y) {
    const w = window.innerWidth, h = window.innerHeight;
    let left = x + 16, top = y - 48;  // right of the cursor; left of it near the right edge
    if (left + 100 > w) left = x - 116;
    t.style.left = Math.max(4, left) + 'px';
    t.style.top = Math.max(4, Math.min(top, h - 104)) + 'px';
  }
  // A large run's faces come one per hover from the server (#hs-hover -> #hs-hover-uri), kept here by run and row.
  const fetched = {};
  let pending = null;
  function runName() {
    const r = document.querySelector('#hs-run input');
    return r ? r.value : '';
  }
  window.dfdetThumb = function (v) {
    const i = String(v || '').indexOf('|');
    if (i < 0) return;
    const key = runName() + '|' + v.slice(0, i);
    fetched[key] = v.slice(i + 1);
    if (key === pending) { const t = tip(); t.src = fetched[key]; t.style.display = 'block'; }
  };
  function hook() {
    document.querySelectorAll('#hs-plot .js-plotly-plot').forEach(function (gd) {
      if (gd.__dfdet || typeof gd.on !== 'function') return;
      gd.__dfdet = true;
      gd.on('plotly_hover', function (ev) {
        const p = ev.points && ev.points[0];
        const cd = p && p.customdata;
        if (!cd || cd[0] === undefined || cd[0] === '') return;
        const t = tip();
        const e = ev.event || {};
        const has = typeof e.clientX === 'number' && (e.clientX || e.clientY);
        place(t, has ? e.clientX : mouse.x, has ? e.clientY : mouse.y);
        const key = runName() + '|' + String(cd[0]);
        pending = key;
        const src = cd[1] || fetched[key];
        if (src) { t.src = src; t.style.display = 'block'; return; }
        const box = document.querySelector('#hs-hover textarea, #hs-hover input');  // a large run: ask the server
        if (!box) return;
        box.value = String(cd[0]);
        box.dispatchEvent(new Event('input', {bubbles: true}));
        box.dispatchEvent(new Event('change', {bubbles: true}));
      });
      gd.on('plotly_unhover', function () { pending = null; tip().style.display = 'none'; });
      gd.on('plotly_click', function (ev) {
        const p = ev.points && ev.points[0];
        const cd = p && p.customdata;
        if (!cd || cd[0] === undefined || cd[0] === '') return;
        const box = document.querySelector('#hs-click textarea, #hs-click input');
        if (!box) return;
        box.value = String(cd[0]);
        box.dispatchEvent(new Event('input', {bubbles: true}));
        box.dispatchEvent(new Event('change', {bubbles: true}));
      });
    });
  }
  setInterval(hook, 600);
  // A file the image input's browser check would refuse with a toast (an mp4 dropped on it): refused in the
  // view's own status line instead, by name, through the hidden #cmp-refuse box (the server words it).
  function refuse(files) {
    const bad = [...(files || [])].find(f => !(f.type || '').startsWith('image/'));
    if (!bad) return false;
    const box = document.querySelector('#cmp-refuse textarea, #cmp-refuse input');
    if (!box) return false;
    box.value = bad.name + '|' + Date.now();
    box.dispatchEvent(new Event('input', {bubbles: true}));
    box.dispatchEvent(new Event('change', {bubbles: true}));
    return true;
  }
  document.addEventListener('change', function (e) {
    const t = e.target;
    if (!t.matches || !t.matches('#cmp-image input[type=file]')) return;
    if (refuse(t.files)) { e.stopImmediatePropagation(); e.preventDefault(); t.value = ''; }
  }, true);
  document.addEventListener('drop', function (e) {
    if (!e.target.closest || !e.target.closest('#cmp-image')) return;
    if (refuse(e.dataTransfer && e.dataTransfer.files)) { e.stopImmediatePropagation(); e.preventDefault(); }
  }, true);
})();
</script>
"""

# The copy-link button: the server builds the query string; this copies the full URL.
COPY_JS = """
(q) => {
  const url = window.location.origin + window.location.pathname + (q ? '?' + q : '');
  if (navigator.clipboard) { navigator.clipboard.writeText(url).catch(() => {}); }
  return url;
}
"""

CSS = """
#status-line .badge {display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600;
  margin-right: 6px;}
#status-line .badge.demo {background: #b00020; color: #fff;}
#status-line .badge.live {background: #1b7f3b; color: #fff;}
#status-line .badge.building {background: #8a6d00; color: #fff;}
#status-line .badge.none {background: #555; color: #fff;}
#status-line p {margin: 0;}
.demo-warning {color: #b00020; font-weight: 600;}
.status-line .status {padding: 6px 10px; border-radius: 6px; margin: 2px 0;}
.status-line .status.err {background: #fdecea; color: #8a1c1c; border: 1px solid #f5c2c0;}
.status-line .status.ok {background: #eef6ee; color: #1b5e20;}
.how {color: #555; font-size: 0.92em;}
#cmp-table table {table-layout: auto;}
#cmp-table th, #roc-conf th, #roc-metrics th, #cal-table th, #cmp-table th *, #roc-conf th *, #roc-metrics th *,
#cal-table th * {word-break: normal; overflow-wrap: normal; white-space: normal;}
#cmp-table, #roc-conf, #roc-metrics, #cal-table {--input-text-size: 13px;}
#xp-maps .caption-label {white-space: normal; overflow: visible; text-overflow: clip; font-size: 11px;
  line-height: 1.2;}
#er-fp .caption-label, #er-fn .caption-label, #er-dis .caption-label {white-space: normal; overflow: visible;
  text-overflow: clip; font-size: 11px; line-height: 1.2;}
#page-title h1 {margin-bottom: 0;}
/* Tiles of a fixed size that fits the gallery's height (a lone crop otherwise fills the width and is clipped) */
#cmp-crops .grid-container {grid-template-columns: repeat(auto-fill, 170px) !important;}
#sl-ends .grid-container, #sl-strip .grid-container {grid-template-columns: repeat(auto-fill, 120px) !important;}
#cmp-crops .thumbnail-item, #sl-ends .thumbnail-item, #sl-strip .thumbnail-item {aspect-ratio: 1 / 1;}
#sl-ends .caption-label, #sl-strip .caption-label {white-space: normal; overflow: visible; text-overflow: clip;
  font-size: 11px; line-height: 1.2;}
/* A phone: the results come first (inputs below them), tables keep whole numbers and scroll sideways */
@media (max-width: 640px) {
  #cmp-layout {flex-direction: column-reverse; flex-wrap: nowrap;}
  #cmp-layout > .column {width: 100% !important; min-width: 0 !important; max-width: 100%;}
  #cmp-table .virtual-table-viewport, #roc-conf .virtual-table-viewport, #roc-metrics .virtual-table-viewport,
  #cal-table .virtual-table-viewport {overflow-x: auto;}
  #cmp-table table, #roc-conf table, #roc-metrics table, #cal-table table {min-width: 560px;}
  #cmp-table td, #cmp-table td *, #roc-conf td *, #roc-metrics td *, #cal-table td * {word-break: keep-all;
    overflow-wrap: normal;}
}
#link-note .link-note {padding: 4px 10px; border-radius: 6px; background: #fff8e1; color: #5d4200; font-size: 0.9em;}
"""
