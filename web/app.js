// @ts-check
/**
 * The atlas viewer: plain DOM + SVG, no dependencies, no build step. Every piece of atlas data reaches the page
 * through textContent or SVG attributes (never innerHTML), so token text cannot inject markup; whitespace inside
 * tokens is drawn visibly (· for a space, ↵ newline, → tab, \xNN other control characters).
 *
 * Routes (the URL fragment):
 *   #/                                   overview
 *   #/grid?model=&blocks=&hook=&settings=[&q=&status=&after=|before=] or [&sort=&order=&verdict=&offset=]
 *   #/feature/<record id>
 *   #/compare?feature=[&hook=&model=&settings=]
 *   #/search?q=[&offset=]                  every group's records whose decode contains q
 */

const app = /** @type {HTMLElement} */ (document.getElementById('app'));
const crumbs = /** @type {HTMLElement} */ (document.getElementById('crumbs'));
const dbLabel = /** @type {HTMLElement} */ (document.getElementById('db'));
const SVG_NS = 'http://www.w3.org/2000/svg';

// ----- DOM helpers ------------------------------------------------------------------------------------------------

/**
 * An element: attrs are set with setAttribute (on* keys become listeners); children are nodes or text.
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/**
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...any} children
 * @returns {SVGElement}
 */
function s(tag, attrs, ...children) {
  const el = /** @type {SVGElement} */ (document.createElementNS(SVG_NS, tag));
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** @param {Element} el @param {Record<string, any> | null | undefined} attrs */
function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style') throw new Error('inline style attributes are refused by the CSP; use classes');
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** @param {Node} el @param {any[]} children */
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Text with its whitespace and control characters made visible. @param {string} text */
function visible(text) {
  const frag = document.createDocumentFragment();
  let plain = '';
  const flush = () => {
    if (plain) frag.appendChild(document.createTextNode(plain));
    plain = '';
  };
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    let mark = null;
    if (ch === ' ') mark = '·';
    else if (ch === '\n') mark = '↵';
    else if (ch === '\t') mark = '→';
    else if (ch === '\u00a0') mark = '⍽';
    else if (code < 0x20 || code === 0x7f || (code >= 0x80 && code < 0xa0)) mark = `\\x${code.toString(16).padStart(2, '0')}`;
    if (mark === null) plain += ch;
    else {
      flush();
      frag.appendChild(h('span', { class: 'ws' }, mark));
    }
  }
  flush();
  return frag;
}

/**
 * One token in a monospace box; without text (no tokenizer) its id.
 * @param {string | null | undefined} text @param {number | null} [id] @param {string} [extra]
 */
function tok(text, id = null, extra = '') {
  const quoted = text !== null && text !== undefined ? JSON.stringify(text) : '';
  const title = id === null ? quoted || undefined : `token ${id}${quoted ? ` ${quoted}` : ''}`;
  if (text === null || text === undefined) return h('span', { class: `tok id ${extra}`.trim(), title }, `#${id}`);
  if (text === '') return h('span', { class: `tok empty ${extra}`.trim(), title }, '∅');
  return h('span', { class: `tok ${extra}`.trim(), title }, visible(text));
}

/** @param {number | null | undefined} x @param {number} [digits] */
function num(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return 'n/a';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '-∞';
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return x.toExponential(2);
  return x.toFixed(digits);
}

/** @param {number | null | undefined} x */
const pct = (x) => (x === null || x === undefined ? 'n/a' : `${Math.round(x * 100)}%`);
/** @param {[number, number]} b */
const blockLabel = (b) => (b[0] === b[1] ? String(b[0]) : `${b[0]}-${b[1]}`);
/** @param {string} hash */
const short = (hash) => hash.slice(0, 12);

/** A hue per key, so equal tokens share a colour across columns. @param {string} key */
function hue(key) {
  let x = 2166136261;
  for (let i = 0; i < key.length; i++) x = Math.imul(x ^ key.charCodeAt(i), 16777619);
  return (x >>> 0) % 360;
}

/** @param {string} path @param {Record<string, string | number | null | undefined>} [params] */
function link(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  const qs = q.toString();
  return `#${path}${qs ? `?${qs}` : ''}`;
}

/** @param {any[]} items */
function setCrumbs(items) {
  crumbs.replaceChildren(...items.flatMap((it, i) => [...(i ? [h('span', { class: 'sep' }, '›')] : []), typeof it === 'string' ? h('span', null, it) : it]));
}

// ----- API --------------------------------------------------------------------------------------------------------

class ApiError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** @param {string} path */
async function api(path) {
  const res = await fetch(path, { headers: { Accept: 'application/json' } });
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(res.status, `${res.status} ${res.statusText}`);
  }
  if (!res.ok) throw new ApiError(res.status, body && body.error ? body.error : `${res.status} ${res.statusText}`);
  return body;
}

/** Only the parameters a route knows travel from the fragment to the API. @param {URLSearchParams} from @param {string[]} keys */
function pick(from, keys) {
  const q = new URLSearchParams();
  for (const k of keys) {
    const v = from.get(k);
    if (v !== null && v !== '') q.set(k, v);
  }
  return q.toString();
}

// ----- charts (SVG) -----------------------------------------------------------------------------------------------

/** Round tick values covering [lo, hi]. @param {number} lo @param {number} hi @param {number} n */
function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) ?? 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** @param {number} v */
function tickLabel(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1);
  return String(Number(v.toPrecision(6)));
}

/**
 * The loss curve: [step, loss] points as a line, with axes and ticks.
 * @param {[number, number][]} points
 */
function lossPlot(points) {
  const W = 640;
  const H = 240;
  const m = { l: 64, r: 16, t: 14, b: 40 };
  const pts = points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'plot', role: 'img', 'aria-label': 'loss curve', 'data-test': 'loss-plot' });
  svg.appendChild(s('title', null, `loss over ${pts.length} sampled steps`));
  if (pts.length === 0) {
    svg.appendChild(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'axis-label' }, 'no loss recorded'));
    return svg;
  }
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const X = (/** @type {number} */ v) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (/** @type {number} */ v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  for (const v of ticks(y0, y1)) {
    svg.appendChild(s('line', { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), class: 'grid-line' }));
    svg.appendChild(s('text', { x: m.l - 6, y: Y(v) + 4, 'text-anchor': 'end', class: 'tick' }, tickLabel(v)));
  }
  for (const v of ticks(x0, x1)) {
    svg.appendChild(s('line', { x1: X(v), x2: X(v), y1: H - m.b, y2: H - m.b + 4, class: 'axis' }));
    svg.appendChild(s('text', { x: X(v), y: H - m.b + 16, 'text-anchor': 'middle', class: 'tick' }, tickLabel(v)));
  }
  svg.appendChild(s('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: 'axis' }));
  svg.appendChild(s('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: 'axis' }));
  svg.appendChild(s('text', { x: (m.l + W - m.r) / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-label' }, 'step'));
  svg.appendChild(s('text', { x: 14, y: (m.t + H - m.b) / 2, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 14 ${(m.t + H - m.b) / 2})` }, 'loss'));
  const d = pts.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
  svg.appendChild(s('path', { d, class: 'curve', 'data-test': 'loss-curve' }));
  const lastPt = pts[pts.length - 1];
  svg.appendChild(s('circle', { cx: X(lastPt[0]), cy: Y(lastPt[1]), r: 3, class: 'curve-end' }, s('title', null, `step ${lastPt[0]}: ${num(lastPt[1])}`)));
  return svg;
}

/**
 * The real-data histogram of a feature (a scan's DistributionSummary: equal-width bins over [min, max]) with counts on
 * a log scale, so the tail that matters is visible next to the bulk; and one vertical marker per activation the record
 * reports. A value beyond the histogram's range is drawn as an arrow at that edge ("off scale"), never squeezed in.
 * @param {{ edges: number[], counts: number[] }} hist
 * @param {{ kind: string, label: string, value: number | null, pct: string | null }[]} markers
 */
function histogramPlot(hist, markers) {
  const W = 760;
  const m = { l: 58, r: 26, b: 42 };
  const edges = hist.edges ?? [];
  const counts = hist.counts ?? [];
  const lo = edges[0];
  const hi = edges[edges.length - 1];
  const shown = markers.filter((k) => k.value !== null && Number.isFinite(k.value));
  // Marker labels go in rows above the plot, each row keeping labels apart (greedy, left to right).
  const span = hi > lo ? hi - lo : 1;
  const plotW = W - m.l - m.r;
  const X = (/** @type {number} */ v) => m.l + ((v - lo) / span) * plotW;
  const placed = shown
    .map((k) => {
      const off = k.value < lo ? 'left' : k.value > hi ? 'right' : null;
      const x = off === 'left' ? m.l : off === 'right' ? W - m.r : X(k.value);
      const text = `${k.label} ${num(k.value, 2)}${off ? ` ${off === 'right' ? '→' : '←'} off scale` : ''} · ${k.pct ?? 'uncalibrated'}`;
      return { ...k, off, x, text, w: text.length * 7 + 8 };
    })
    .sort((a, b) => a.x - b.x);
  /** @type {number[]} */
  const rowEnd = [];
  for (const k of placed) {
    const left = Math.max(2, Math.min(W - k.w - 2, k.x - k.w / 2));
    let row = rowEnd.findIndex((end) => end < left);
    if (row < 0) row = rowEnd.push(0) - 1;
    rowEnd[row] = left + k.w;
    Object.assign(k, { row, left });
  }
  const rowH = 15;
  const top = 12 + rowH * Math.max(1, rowEnd.length);
  const plotH = 170;
  const H = top + plotH + m.b;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'plot hist', role: 'img', 'aria-label': 'activation histogram on real text', 'data-test': 'histogram' });
  const total = counts.reduce((a, b) => a + b, 0);
  svg.appendChild(s('title', null, `histogram of ${total} real token activations, log-scale counts`));
  if (!(edges.length >= 2) || total === 0) {
    svg.appendChild(s('text', { x: W / 2, y: top + plotH / 2, 'text-anchor': 'middle', class: 'axis-label' }, 'no values'));
    return svg;
  }
  const maxC = Math.max(...counts);
  const decades = Math.max(1, Math.ceil(Math.log10(maxC)));
  // log10 from 0.8 (so a bin of one value still shows) to the next power of ten above the tallest bin.
  const y0 = Math.log10(0.8);
  const Y = (/** @type {number} */ c) => top + plotH - ((Math.log10(c) - y0) / (decades - y0)) * plotH;
  for (let d = 0; d <= decades; d++) {
    const y = Y(10 ** d);
    svg.appendChild(s('line', { x1: m.l, x2: W - m.r, y1: y, y2: y, class: 'grid-line' }));
    svg.appendChild(s('text', { x: m.l - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, tickLabel(10 ** d)));
  }
  counts.forEach((c, i) => {
    if (c <= 0) return;
    const x = X(edges[i]);
    const w = Math.max(1, X(edges[i + 1]) - x - 1);
    svg.appendChild(s('rect', { x, y: Y(c), width: w, height: top + plotH - Y(c), class: 'hbar', 'data-test': 'hist-bar' }, s('title', null, `[${num(edges[i])}, ${num(edges[i + 1])}${i === counts.length - 1 ? ']' : ')'}: ${c} tokens`)));
  });
  for (const v of ticks(lo, hi, 6)) {
    svg.appendChild(s('line', { x1: X(v), x2: X(v), y1: top + plotH, y2: top + plotH + 4, class: 'axis' }));
    svg.appendChild(s('text', { x: X(v), y: top + plotH + 16, 'text-anchor': 'middle', class: 'tick' }, tickLabel(v)));
  }
  svg.appendChild(s('line', { x1: m.l, x2: m.l, y1: top, y2: top + plotH, class: 'axis' }));
  svg.appendChild(s('line', { x1: m.l, x2: W - m.r, y1: top + plotH, y2: top + plotH, class: 'axis' }));
  svg.appendChild(s('text', { x: (m.l + W - m.r) / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-label' }, 'activation of one real token'));
  svg.appendChild(s('text', { x: 14, y: top + plotH / 2, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 14 ${top + plotH / 2})` }, 'tokens (log)'));
  for (const k of /** @type {any[]} */ (placed)) {
    const g = s('g', { class: `marker ${k.kind}`, 'data-test': 'marker', 'data-kind': k.kind, 'data-offscale': k.off ?? 'no' });
    const ly = 10 + rowH * k.row + 10;
    if (k.off) {
      // An arrow at the edge, pointing off the plot.
      const dx = k.off === 'right' ? 1 : -1;
      const ax = k.x;
      const ay = top + plotH / 2;
      g.appendChild(s('line', { x1: ax - 14 * dx, x2: ax, y1: ay, y2: ay, class: 'marker-line' }));
      g.appendChild(s('path', { d: `M${ax},${ay - 6}L${ax + 9 * dx},${ay}L${ax},${ay + 6}Z`, class: 'marker-head' }));
      g.appendChild(s('line', { x1: ax, x2: ax, y1: ly + 3, y2: ay - 6, class: 'marker-line dashed' }));
    } else g.appendChild(s('line', { x1: k.x, x2: k.x, y1: ly + 3, y2: top + plotH, class: 'marker-line' }));
    g.appendChild(s('text', { x: k.left + 4, y: ly, class: 'marker-label' }, k.text));
    g.appendChild(s('title', null, k.text));
    svg.appendChild(g);
  }
  return svg;
}

/**
 * Colour of one token by its activation: orange for positive, blue for negative, intensity |a| / scale.
 * @param {number} a @param {number} scale
 */
function actColour(a, scale) {
  const t = scale > 0 ? Math.max(0, Math.min(1, Math.abs(a) / scale)) : 0;
  return a >= 0 ? `hsl(28 95% ${Math.round(100 - 48 * t)}%)` : `hsl(215 85% ${Math.round(100 - 48 * t)}%)`;
}

/**
 * One corpus window with each token highlighted by the feature's activation there; the example's position is
 * outlined. Long windows show the stretch around it.
 * @param {any} e a ScanExample @param {(id: number) => string | null} text @param {number} scale
 */
function exampleRow(e, text, scale) {
  const ids = e.ids ?? [];
  const acts = e.token_activations ?? [];
  const from = Math.max(0, e.position - 20);
  const to = Math.min(ids.length, e.position + 8);
  const toks = [];
  if (from > 0) toks.push(h('span', { class: 'muted' }, '… '));
  for (let t = from; t < to; t++) {
    const a = acts[t];
    const piece = text(ids[t]);
    const el = h('span', { class: `etok${t === e.position ? ' peak' : ''}`, 'data-test': 'etok', 'data-act': a, title: `position ${t} · token ${ids[t]}${piece !== null ? ` ${JSON.stringify(piece)}` : ''} · activation ${num(a, 4)}` }, piece === null ? `#${ids[t]}` : visible(piece));
    if (Number.isFinite(a)) el.style.backgroundColor = actColour(a, scale);
    toks.push(el);
  }
  if (to < ids.length) toks.push(h('span', { class: 'muted' }, ' …'));
  return h('div', { class: 'example', 'data-test': 'example' }, h('span', { class: 'ex-act', title: 'activation at the outlined token' }, num(e.activation, 3)), h('span', { class: 'ex-where muted' }, `story ${e.story} · pos ${e.position}`), h('span', { class: 'ex-text' }, toks));
}

// ----- pages ------------------------------------------------------------------------------------------------------

/** @param {any} o */
async function overviewPage(o) {
  const cards = h(
    'div',
    { class: 'cards', 'data-test': 'summary' },
    [
      ['records', o.records],
      ['completed', o.ok],
      ['failed', o.failed],
      ['models', o.models.length],
      ['groups', o.groups.length],
    ].map(([k, v]) => h('div', { class: `card ${k === 'failed' && v > 0 ? 'bad' : ''}` }, h('div', { class: 'card-value' }, String(v)), h('div', { class: 'card-label' }, String(k)))),
  );
  const models = h(
    'table',
    { class: 'data', 'data-test': 'models' },
    h('thead', null, h('tr', null, ['model', 'hash', 'format', 'architecture', 'blocks', 'dim', 'vocab', 'tokenizer'].map((t) => h('th', null, t)))),
    h(
      'tbody',
      null,
      o.models.map((/** @type {any} */ m) =>
        h(
          'tr',
          null,
          h('td', null, m.name),
          h('td', { class: 'mono', title: m.hash }, short(m.hash)),
          h('td', null, m.format ?? '—'),
          h('td', null, m.architecture ?? '—'),
          h('td', { class: 'num' }, m.n_layers ?? '—'),
          h('td', { class: 'num' }, m.dim ?? '—'),
          h('td', { class: 'num' }, m.vocab ?? '—'),
          h('td', { title: m.checkpoint ?? 'checkpoint not found: token ids are shown instead of text' }, m.tokenizer ?? 'ids only'),
        ),
      ),
    ),
  );
  const groups = h(
    'table',
    { class: 'data', 'data-test': 'groups' },
    h('thead', null, h('tr', null, ['model', 'blocks', 'hook', 'settings', 'records', 'completed', 'failed', 'features', ''].map((t) => h('th', null, t)))),
    h(
      'tbody',
      null,
      o.groups.map((/** @type {any} */ g) => {
        const href = link('/grid', { model: g.model_hash, blocks: g.blocks_label, hook: g.hook, settings: g.settings_hash });
        return h(
          'tr',
          { 'data-test': 'group' },
          h('td', null, g.model_name),
          h('td', { class: 'num' }, g.blocks_label),
          h('td', null, g.hook),
          h('td', { class: 'mono', title: g.settings_hash }, short(g.settings_hash)),
          h('td', { class: 'num' }, g.records),
          h('td', { class: 'num' }, g.ok),
          h('td', { class: `num ${g.failed ? 'bad' : ''}` }, g.failed),
          h('td', { class: 'num' }, g.features ? `${g.features[0]}–${g.features[1]}` : '—'),
          h('td', null, h('a', { href, 'data-test': 'open-grid' }, 'grid →'), ' ', g.features ? h('a', { href: link('/compare', { feature: g.features[0], hook: g.hook, settings: g.settings_hash }), 'data-test': 'open-compare', title: 'this feature across block ranges and models' }, `compare #${g.features[0]} →`) : null),
        );
      }),
    ),
  );
  const failures = o.failures.length
    ? h(
        'table',
        { class: 'data', 'data-test': 'failures' },
        h('thead', null, h('tr', null, ['record', 'model', 'blocks', 'hook', 'selection', 'error'].map((t) => h('th', null, t)))),
        h(
          'tbody',
          null,
          o.failures.map((/** @type {any} */ f) =>
            h(
              'tr',
              null,
              h('td', null, h('a', { href: link(`/feature/${f.id}`) }, `#${f.id}`)),
              h('td', null, f.model_name),
              h('td', { class: 'num' }, blockLabel(f.blocks)),
              h('td', null, f.hook),
              h('td', { class: 'mono' }, f.select),
              h('td', { class: 'error-text' }, f.error ?? '(no message)'),
            ),
          ),
        ),
      )
    : h('p', { class: 'muted' }, 'No failed records.');
  return {
    title: 'atlas overview',
    crumbs: ['overview'],
    nodes: [
      h('h1', null, 'Overview'),
      cards,
      h('p', { class: 'muted' }, `schema v${o.schema_version} · block ranges ${o.block_ranges.map(blockLabel).join(', ') || '—'} · hooks ${o.hooks.join(', ') || '—'}`),
      overviewForms(o),
      h('h2', null, 'Models'),
      models,
      h('h2', null, 'Groups'),
      h('p', { class: 'muted' }, 'One group per model, block range, hook and settings. Open a grid to browse its features.'),
      groups,
      h('h2', null, `Failures${o.failed > o.failures_shown ? ` (latest ${o.failures_shown} of ${o.failed})` : ''}`),
      failures,
    ],
  };
}

/**
 * Percentile bands a grid cell is coloured by: the scan's quantile bins (p0–p50 … p99.9–max), so a cell's colour and a
 * feature page's bin samples speak of the same ranges. Uncalibrated cells are grey.
 */
const PCT_BANDS = [
  { cls: 'p999', min: 99.9, label: '≥ p99.9' },
  { cls: 'p99', min: 99, label: 'p99–p99.9' },
  { cls: 'p90', min: 90, label: 'p90–p99' },
  { cls: 'p50', min: 50, label: 'p50–p90' },
  { cls: 'p0', min: -Infinity, label: '< p50' },
];
/** @param {number | null} p */
const bandOf = (p) => (p === null || p === undefined ? 'uncal' : (PCT_BANDS.find((b) => p >= b.min) ?? PCT_BANDS[PCT_BANDS.length - 1]).cls);
/** A cell's percentile as the server formatted it (calibrate.ts formatPercentile). @param {string | null} t */
const pctText = (t) => t ?? 'uncal.';

const SORTS = [
  ['feature', 'feature'],
  ['percentile', 'decoded percentile'],
  ['skip', 'skip share'],
  ['stability', 'stability'],
];

/** The overview's atlas-wide search and its compare form. @param {any} o */
function overviewForms(o) {
  const q = h('input', { type: 'search', name: 'q', placeholder: 'decode text contains…', 'aria-label': 'search every group', 'data-test': 'atlas-search', maxlength: 200 });
  const search = h(
    'form',
    {
      class: 'controls',
      'data-test': 'search-form',
      onsubmit: (/** @type {Event} */ e) => {
        e.preventDefault();
        const v = /** @type {HTMLInputElement} */ (q).value;
        if (v) location.hash = link('/search', { q: v });
      },
    },
    h('b', null, 'Search every model, block range and hook '),
    q,
    h('button', { type: 'submit' }, 'Search'),
  );
  const feature = h('input', { type: 'number', min: 0, name: 'feature', placeholder: 'feature #', 'aria-label': 'feature to compare', class: 'narrow', 'data-test': 'compare-feature' });
  const hook = h('select', { name: 'hook', 'aria-label': 'hook' }, [h('option', { value: '' }, 'any hook'), o.hooks.map((/** @type {string} */ v) => h('option', { value: v }, v))]);
  const compare = h(
    'form',
    {
      class: 'controls',
      'data-test': 'compare-form',
      onsubmit: (/** @type {Event} */ e) => {
        e.preventDefault();
        const f = /** @type {HTMLInputElement} */ (feature).value.trim();
        if (/^\d+$/.test(f)) location.hash = link('/compare', { feature: f, hook: /** @type {HTMLSelectElement} */ (hook).value });
      },
    },
    h('b', null, 'Compare one feature across block ranges and models '),
    feature,
    hook,
    h('button', { type: 'submit' }, 'Compare'),
  );
  return [search, compare];
}

/** @param {URLSearchParams} params */
async function gridPage(params) {
  const data = await api(`/api/grid?${pick(params, ['model', 'blocks', 'hook', 'settings', 'after', 'before', 'limit', 'q', 'status', 'sort', 'order', 'verdict', 'offset'])}`);
  const g = data.group;
  const base = { model: g.model_hash, blocks: blockLabel(g.blocks), hook: g.hook, settings: g.settings_hash };
  const title = `${g.model_name} · blocks ${blockLabel(g.blocks)} · ${g.hook}`;
  const ranked = data.paging === 'offset';

  const q = h('input', { type: 'search', name: 'q', value: data.q ?? '', placeholder: 'top-1 text contains…', 'aria-label': 'search top-1 text', 'data-test': 'search', maxlength: 200 });
  const status = h('select', { name: 'status', 'aria-label': 'status' }, ['all', 'ok', 'failed'].map((v) => h('option', { value: v, selected: v === data.status }, v)));
  const sort = h('select', { name: 'sort', 'aria-label': 'sort by', 'data-test': 'sort' }, SORTS.map(([v, t]) => h('option', { value: v, selected: v === data.sort }, `sort: ${t}`)));
  const order = h('select', { name: 'order', 'aria-label': 'order', 'data-test': 'order' }, [h('option', { value: '', selected: !params.get('order') }, 'default order'), h('option', { value: 'desc', selected: params.get('order') === 'desc' }, 'descending'), h('option', { value: 'asc', selected: params.get('order') === 'asc' }, 'ascending')]);
  const verdict = h(
    'select',
    { name: 'verdict', 'aria-label': 'verdict finding', 'data-test': 'verdict-filter' },
    h('option', { value: '', selected: !data.verdict }, 'any verdict'),
    data.verdict && !data.verdict_counts.some((/** @type {any} */ v) => v.code === data.verdict) ? h('option', { value: data.verdict, selected: true }, `${data.verdict} (0)`) : null,
    data.verdict_counts.map((/** @type {any} */ v) => h('option', { value: v.code, selected: v.code === data.verdict }, `${v.code} (${v.records})`)),
  );
  const go = h('input', { type: 'number', name: 'feature', min: 0, placeholder: 'feature #', 'aria-label': 'go to feature', class: 'narrow' });
  const val = (/** @type {HTMLElement} */ el) => /** @type {HTMLInputElement} */ (el).value;
  const form = h(
    'form',
    {
      class: 'controls',
      onsubmit: (/** @type {Event} */ e) => {
        e.preventDefault();
        const f = val(go).trim();
        const next = { ...base, q: val(q), status: val(status) === 'all' ? null : val(status), sort: val(sort) === 'feature' ? null : val(sort), order: val(order) || null, verdict: val(verdict) || null };
        const plain = !next.sort && !next.order && !next.verdict;
        location.hash = link('/grid', /^\d+$/.test(f) && plain ? { ...next, after: Number(f) - 1 } : next);
      },
    },
    q,
    status,
    sort,
    order,
    verdict,
    go,
    h('button', { type: 'submit' }, 'Show'),
  );
  const keep = { ...base, q: data.q, status: data.status === 'all' ? null : data.status, limit: params.get('limit'), sort: params.get('sort'), order: params.get('order'), verdict: data.verdict };
  const filtered = data.q || data.status !== 'all' || data.verdict;
  const range = ranked ? `${data.offset + 1}–${data.offset + data.cells.length} of ${data.matched}` : `features ${data.cells[0]?.feature}–${data.cells[data.cells.length - 1]?.feature} · ${data.matched}`;
  const pager = () =>
    h(
      'div',
      { class: 'pager' },
      (ranked ? data.prev_offset !== null : data.prev_before !== null)
        ? h('a', { href: link('/grid', ranked ? { ...keep, offset: data.prev_offset } : { ...keep, before: data.prev_before }), 'data-test': 'prev-page' }, '← previous')
        : h('span', { class: 'muted' }, '← previous'),
      h('span', { class: 'muted' }, data.cells.length ? `${range} ${filtered ? 'matching' : 'in this group'}${ranked ? ` · by ${SORTS.find(([v]) => v === data.sort)?.[1]}, ${data.order === 'desc' ? 'descending' : 'ascending'}${data.sort === 'feature' ? '' : ' (records without it last)'}` : ''}` : 'no features here'),
      (ranked ? data.next_offset !== null : data.next_after !== null)
        ? h('a', { href: link('/grid', ranked ? { ...keep, offset: data.next_offset } : { ...keep, after: data.next_after }), 'data-test': 'next-page' }, 'next →')
        : h('span', { class: 'muted' }, 'next →'),
    );
  const legend = h(
    'div',
    { class: 'legend', 'data-test': 'legend' },
    h('span', { class: 'muted' }, 'cell colour: decoded activation as a percentile of real text '),
    PCT_BANDS.map((b) => h('span', { class: `swatch band-${b.cls}` }, b.label)),
    h('span', { class: 'swatch band-uncal' }, 'uncalibrated'),
    h('span', { class: 'swatch band-failed' }, 'failed'),
  );
  const grid = h(
    'div',
    { class: 'grid', 'data-test': 'grid' },
    data.cells.map((/** @type {any} */ c) => {
      const band = c.status === 'failed' ? 'failed' : bandOf(c.pct_decoded);
      const extra = [c.skip_share !== null ? `skip ${pct(c.skip_share)}` : null, c.stability !== null ? `stable ${pct(c.stability)}` : null].filter(Boolean).join(' · ');
      return h(
        'a',
        {
          class: `cell band-${band}`,
          href: link(`/feature/${c.id}`),
          'data-test': 'cell',
          'data-feature': c.feature,
          'data-band': band,
          'data-verdict': (c.verdict ?? []).join(' '),
          title: `feature ${c.feature}: continuous ${num(c.act_continuous)}, decoded ${num(c.act_decoded)} (${c.pct_text ?? 'uncalibrated'}), random ${num(c.act_random)}${c.verdict ? ` · verdict: ${c.verdict.join(', ') || 'no findings'}` : ''}`,
        },
        h('span', { class: 'fnum' }, `#${c.feature}`),
        c.status === 'ok' ? h('span', { class: 'top1' }, c.top1_text === null ? h('span', { class: 'muted' }, '—') : tok(c.top1_text)) : h('span', { class: 'top1 error-text' }, 'failed'),
        h('span', { class: 'act' }, c.status === 'ok' ? `${num(c.act_decoded, 2)} · ${pctText(c.pct_text)}` : ''),
        extra ? h('span', { class: 'act' }, extra) : null,
      );
    }),
  );
  return {
    title: `grid: ${title}`,
    crumbs: [h('a', { href: '#/' }, 'overview'), title],
    nodes: [
      h('h1', null, title),
      h(
        'p',
        { class: 'muted' },
        `settings ${short(g.settings_hash)} · ${g.records} records (${g.ok} completed, ${g.failed} failed) · features ${g.features ? `${g.features[0]}–${g.features[1]}` : '—'} · each cell: feature, top-1 decode, decoded activation and its percentile`,
      ),
      form,
      data.q ? h('p', { class: 'muted' }, h('a', { href: link('/search', { q: data.q }), 'data-test': 'search-all' }, `search every model, block range and hook for "${data.q}" →`)) : null,
      legend,
      pager(),
      data.cells.length ? grid : h('p', { class: 'empty', 'data-test': 'no-match' }, data.q ? `No feature's top-1 text contains "${data.q}".` : data.verdict ? `No feature's verdict has ${data.verdict}.` : 'No features on this page.'),
      data.cells.length > 24 ? pager() : null,
    ],
  };
}

/** Every group's records whose decode or refined text contains q. @param {URLSearchParams} params */
async function searchPage(params) {
  const data = await api(`/api/search?${pick(params, ['q', 'offset', 'limit'])}`);
  const q = h('input', { type: 'search', name: 'q', value: data.q, 'aria-label': 'search the atlas', 'data-test': 'atlas-search', maxlength: 200 });
  const form = h(
    'form',
    {
      class: 'controls',
      onsubmit: (/** @type {Event} */ e) => {
        e.preventDefault();
        location.hash = link('/search', { q: /** @type {HTMLInputElement} */ (q).value });
      },
    },
    q,
    h('button', { type: 'submit' }, 'Search'),
  );
  const table = h(
    'table',
    { class: 'data', 'data-test': 'search-hits' },
    h('thead', null, h('tr', null, ['record', 'model', 'blocks', 'hook', 'settings', 'selection', 'matched in', 'top-1', 'percentile'].map((t) => h('th', null, t)))),
    h(
      'tbody',
      null,
      data.hits.map((/** @type {any} */ x) =>
        h(
          'tr',
          { 'data-test': 'hit' },
          h('td', null, h('a', { href: link(`/feature/${x.id}`) }, `#${x.id}`)),
          h('td', null, x.model_name),
          h('td', { class: 'num' }, x.blocks_label),
          h('td', null, x.hook),
          h('td', { class: 'mono', title: x.settings_hash }, short(x.settings_hash)),
          h('td', { class: 'mono' }, x.select),
          h('td', null, x.matched_in),
          h('td', null, x.status === 'ok' ? tok(x.top1_text) : h('span', { class: 'error-text' }, 'failed')),
          h('td', { class: 'num' }, x.pct_text ?? 'uncalibrated'),
        ),
      ),
    ),
  );
  const pager = h(
    'div',
    { class: 'pager' },
    data.prev_offset !== null ? h('a', { href: link('/search', { q: data.q, offset: data.prev_offset }) }, '← previous') : h('span', { class: 'muted' }, '← previous'),
    h('span', { class: 'muted' }, data.hits.length ? `${data.offset + 1}–${data.offset + data.hits.length} of ${data.matched} records` : 'no records match'),
    data.next_offset !== null ? h('a', { href: link('/search', { q: data.q, offset: data.next_offset }) }, 'next →') : h('span', { class: 'muted' }, 'next →'),
  );
  return {
    title: `search: ${data.q}`,
    crumbs: [h('a', { href: '#/' }, 'overview'), `search "${data.q}"`],
    nodes: [
      h('h1', null, `Records whose decode contains "${data.q}"`),
      h('p', { class: 'muted' }, 'Across every model, block range, hook and settings of the atlas: any rank of the top-k decode, and the refined prompt. Case-insensitive for ASCII.'),
      form,
      pager,
      data.hits.length ? table : h('p', { class: 'empty', 'data-test': 'no-hits' }, `No record's decode contains "${data.q}".`),
    ],
  };
}

/** @param {string} id */
async function featurePage(id) {
  const data = await api(`/api/record/${encodeURIComponent(id)}`);
  const r = data.record;
  const pieces = data.pieces;
  const text = (/** @type {number} */ tid) => pieces[String(tid)] ?? null;
  // An SAE record's feature axis is the SAE's latents (the record's `sae`, issue 21).
  const sae = r.sae ?? null;
  const label = r.feature !== null ? `${sae ? 'SAE latent' : 'feature'} ${r.feature}` : r.select;
  const where = `${r.model.name} · blocks ${blockLabel(r.blocks)} · ${r.hook}${sae ? ` · SAE ${sae.architecture} ${sae.d_sae} latents (${short(sae.hash)})` : ''}`;
  const gridHref = link('/grid', { model: r.model.hash, blocks: blockLabel(r.blocks), hook: r.hook, settings: r.settings_hash, after: r.feature !== null ? Math.max(-1, r.feature - 1) : null });

  const compareHref = r.feature !== null ? link('/compare', { feature: r.feature, hook: r.hook, settings: r.settings_hash }) : null;
  const nav = h(
    'div',
    { class: 'pager' },
    data.prev ? h('a', { href: link(`/feature/${data.prev.id}`), 'data-test': 'prev-feature' }, `← feature ${data.prev.feature}`) : h('span', { class: 'muted' }, '← first'),
    h('a', { href: gridHref }, 'grid'),
    compareHref
      ? h('a', { href: compareHref, 'data-test': 'open-compare' }, data.same_feature_elsewhere ? `compare across block ranges and models (${data.same_feature_elsewhere} more)` : 'compare (no other block range or model has this feature yet)')
      : null,
    data.next ? h('a', { href: link(`/feature/${data.next.id}`), 'data-test': 'next-feature' }, `feature ${data.next.feature} →`) : h('span', { class: 'muted' }, 'last →'),
  );

  const sections = [];
  sections.push(
    // The run's status says only whether it completed; what the result means is the verdict's, shown apart below.
    h('h1', null, label, ' ', h('span', { class: `badge run-${r.status}`, 'data-test': 'status', title: 'whether the run completed; see the verdict for what its result means' }, r.status === 'ok' ? 'run completed' : 'run failed')),
    h('p', { class: 'muted' }, `${where} · selection ${r.select} · settings ${short(r.settings_hash)} · record #${r.id} · ${r.created_at}`, data.tokenizer ? '' : ' · checkpoint not found: token ids shown'),
    nav,
  );
  if (r.status === 'failed') sections.push(h('div', { class: 'error-box', 'data-test': 'error' }, r.error ?? 'failed (no message)'));
  sections.push(verdictSection(r), realDataSection(data, text));

  // Top-k tokens per position, with the cosine of each position's decode.
  if (Array.isArray(r.topk) && r.topk.length) {
    const T = r.topk[0].length;
    const free = new Set(r.free ?? []);
    const scale = r.cosine_scale;
    const table = h(
      'table',
      { class: 'data topk', 'data-test': 'topk' },
      h('thead', null, h('tr', null, h('th', null, 'rank'), Array.from({ length: T }, (_, t) => h('th', { class: free.has(t) ? '' : 'fixed', title: free.has(t) ? 'free (optimised) position' : 'fixed context position' }, `t${t}${free.has(t) ? '' : ' (fixed)'}`)), h('th', null, 'as text'))),
      h(
        'tbody',
        null,
        r.topk.map((/** @type {number[]} */ row, k) =>
          h('tr', { class: k === 0 ? 'top1-row' : '' }, h('th', null, String(k + 1)), row.map((tid, t) => h('td', { class: free.has(t) ? '' : 'fixed' }, tok(text(tid), tid))), h('td', null, tok(r.topk_text?.[k] ?? null, null))),
        ),
        h(
          'tr',
          { class: 'cos-row', 'data-test': 'cosines' },
          h('th', { title: 'cosine between the optimised embedding and its top-1 token' }, 'cosine'),
          Array.from({ length: T }, (_, t) => {
            const c = r.cosine?.[t];
            const bar = h('div', { class: `cos-bar ${scale !== undefined && c !== undefined && c < scale ? 'low' : ''}` });
            bar.style.width = `${Math.max(0, Math.min(1, Math.abs(c ?? 0))) * 100}%`;
            return h('td', { class: free.has(t) ? '' : 'fixed' }, h('div', { class: 'cos' }, bar), h('span', { class: 'cos-value' }, num(c, 2)));
          }),
          h('td', { class: 'muted' }, scale !== undefined ? `orange: below the typical nearest-neighbour cosine ${num(scale, 2)}` : ''),
        ),
      ),
    );
    sections.push(h('h2', null, 'Top-k decode per position'), h('div', { class: 'scroll' }, table));
  }

  sections.push(logitSection(r, text), skipStabilitySection(r, data), controlsSection(data, compareHref), activationsSection(r, data));

  if (r.baseline) {
    const b = r.baseline;
    sections.push(
      h('h2', null, `Baseline: ${b.kind}`),
      h('p', null, 'Top tokens: ', (b.tokens ?? []).map((/** @type {number} */ tid, /** @type {number} */ i) => tok(b.tokens_text?.[i] ?? text(tid), tid)), h('span', { class: 'muted' }, ` · agreement with the top-1 decode ${pct(b.agreement)} · activation ${num(b.activation)}`)),
    );
  }
  if (r.refined) {
    const f = r.refined;
    sections.push(
      h('h2', null, `Refined prompt (${f.method})`),
      h(
        'table',
        { class: 'data compact', 'data-test': 'refined' },
        h(
          'tbody',
          null,
          h('tr', null, h('th', null, 'tokens'), h('td', null, (f.ids ?? []).map((/** @type {number} */ tid) => tok(text(tid), tid)))),
          h('tr', null, h('th', null, 'text'), h('td', null, tok(f.text ?? null, null))),
          h('tr', null, h('th', null, 'activation'), h('td', null, `${num(f.activation)} (start ${num(f.start_activation)})`)),
          h('tr', null, h('th', null, 'cross-entropy'), h('td', null, `${num(f.cross_entropy)} nats (start ${num(f.start_cross_entropy)})`)),
          h('tr', null, h('th', null, 'search'), h('td', null, `${f.steps ?? '?'} steps, ${f.evaluations ?? '?'} evaluations, ${f.improvements ?? '?'} improvements${f.converged ? ', converged' : ''}${f.retokenizes === false ? ', does not retokenize' : ''}`)),
        ),
      ),
    );
  }
  if (r.exhaustive) {
    const e = r.exhaustive;
    const best = (/** @type {any[]} */ list) => h('ol', { class: 'best' }, (list ?? []).map((x) => h('li', null, tok(x.text ?? text(x.id), x.id), ' ', h('span', { class: 'muted' }, num(x.activation)))));
    sections.push(
      h('h2', null, `Exhaustive baseline (${e.vocab ?? '?'} tokens tried)`),
      h(
        'div',
        { class: 'two-col', 'data-test': 'exhaustive' },
        h('div', null, h('h3', null, 'best token repeated at every position'), best(e.repeated?.best)),
        e.context ? h('div', null, h('h3', null, `best at position ${e.context.position} in context `, tok(e.context.context_text ?? '', null)), best(e.context.best)) : null,
      ),
      e.ranked?.length
        ? h(
            'table',
            { class: 'data compact' },
            h('thead', null, h('tr', null, ['position', 'decoded token', 'rank (repeated)', 'rank (in context)'].map((t) => h('th', null, t)))),
            h('tbody', null, e.ranked.map((/** @type {any} */ x) => h('tr', null, h('td', { class: 'num' }, x.position ?? '—'), h('td', null, tok(x.text ?? text(x.id), x.id)), h('td', { class: 'num' }, x.repeated_rank ?? '—'), h('td', { class: 'num' }, x.context_rank ?? '—')))),
          )
        : null,
    );
  }

  sections.push(h('h2', null, 'Loss'), lossPlot(r.loss ?? []));

  sections.push(
    h('h2', null, 'Settings'),
    h(
      'table',
      { class: 'data compact', 'data-test': 'settings' },
      h('tbody', null, Object.entries(r.settings ?? {}).map(([k, v]) => h('tr', null, h('th', null, k), h('td', { class: 'mono' }, typeof v === 'string' ? v : JSON.stringify(v))))),
    ),
  );
  const rep = data.reproduce;
  const cmd = (/** @type {string} */ c, /** @type {string} */ test) => {
    const pre = h('pre', { class: 'cmd', 'data-test': test }, c);
    const btn = h('button', { type: 'button', class: 'copy' }, 'copy');
    btn.addEventListener('click', () => {
      const done = () => (btn.textContent = 'copied');
      if (navigator.clipboard) navigator.clipboard.writeText(c).then(done, () => selectText(pre));
      else selectText(pre);
    });
    return h('div', { class: 'cmd-wrap' }, pre, btn);
  };
  sections.push(
    h('h2', null, 'Reproduce'),
    cmd(rep.visualize, 'reproduce'),
    rep.atlas_build ? h('p', { class: 'muted' }, 'or into an atlas:') : null,
    rep.atlas_build ? cmd(rep.atlas_build, 'reproduce-atlas') : null,
    rep.notes.length ? h('ul', { class: 'notes' }, rep.notes.map((/** @type {string} */ n) => h('li', null, n))) : null,
  );
  if (r.timings) sections.push(h('p', { class: 'muted' }, `timings: ${Object.entries(r.timings).map(([k, v]) => `${k.replace(/_ms$/, '')} ${num(/** @type {number} */ (v), 1)} ms`).join(' · ')}`));
  return { title: `${label} · ${where}`, crumbs: [h('a', { href: '#/' }, 'overview'), h('a', { href: gridHref }, where), label], nodes: sections };
}

/** Finding codes that are a caution about the result (the rest: decoded-high, a strong result; uncalibrated). */
const CAUTION = new Set(['decoded-typical', 'decoded-below-random', 'continuous-beyond-real', 'target-unreachable', 'skip-path', 'unstable']);

/** The verdict: its findings, each with its code; kept apart from the run's status. @param {any} r */
function verdictSection(r) {
  /** @type {any[]} */
  let body;
  if (r.status !== 'ok') body = [h('p', { class: 'muted', 'data-test': 'verdict-none' }, 'No verdict: the run did not complete.')];
  else if (!Array.isArray(r.verdict)) body = [h('p', { class: 'muted', 'data-test': 'verdict-none' }, 'No verdict recorded: this record was written before verdicts were.')];
  else if (r.verdict.length === 0) body = [h('p', { 'data-test': 'verdict-none' }, 'No findings: none of the documented thresholds (VERDICT_THRESHOLDS in features/verdict.ts) was crossed. That is not a judgement that the result is good.')];
  else
    body = [
      h(
        'ul',
        { class: 'findings', 'data-test': 'verdict' },
        r.verdict.map((/** @type {any} */ f) =>
          h('li', { 'data-code': f.code }, h('span', { class: `finding ${f.code === 'uncalibrated' ? 'neutral' : CAUTION.has(f.code) ? 'caution' : 'strong'}` }, f.code), ' ', f.message),
        ),
      ),
    ];
  return [h('h2', null, 'Verdict'), ...body];
}

/** The markers a record puts on the real-data histogram, each with its percentile. @param {any} r @param {any} data */
function markersOf(r, data) {
  const p = data.percentile_text ?? {};
  const a = r.activation ?? {};
  const out = [
    { kind: 'continuous', label: 'continuous', value: a.continuous ?? null, pct: p.continuous ?? null },
    { kind: 'decoded', label: 'decoded', value: a.decoded ?? null, pct: p.decoded ?? null },
    { kind: 'random', label: 'random', value: a.random ?? null, pct: p.random ?? null },
  ];
  if (r.refined) out.push({ kind: 'refined', label: 'refined', value: r.refined.activation ?? null, pct: p.refined ?? null });
  const ex = r.exhaustive?.repeated?.best?.[0];
  if (ex) out.push({ kind: 'exhaustive', label: 'exhaustive best', value: ex.activation ?? null, pct: p.exhaustive_best ?? null });
  return out;
}

/** The feature on real text: histogram with markers, top windows and quantile-bin samples. @param {any} data @param {(id: number) => string | null} text */
function realDataSection(data, text) {
  const r = data.record;
  const out = /** @type {Element[]} */ ([h('h2', null, 'On real text')]);
  const sc = data.scan;
  if (!sc) {
    out.push(
      h(
        'p',
        { class: 'muted', 'data-test': 'no-scan' },
        r.feature === null
          ? 'No corpus scan is shown for a selection other than one feature at all positions.'
          : `No corpus scan of feature ${r.feature} at blocks ${blockLabel(r.blocks)} ${r.hook} in this atlas: run llm-features atlas scan --db ATLAS --model MODEL --blocks ${blockLabel(r.blocks)} --hook ${r.hook} --features ${r.feature} --corpus FILE.`,
      ),
    );
    return out;
  }
  const f = sc.feature;
  const tk = f.tokens;
  const cal = r.calibration;
  const T = (r.free ?? []).length;
  out.push(
    h(
      'p',
      { class: 'muted', 'data-test': 'scan-info' },
      `Histogram: feature ${f.feature} on every real token (positions ≥ 1 of ${sc.scan.windows} windows, ${tk.count} tokens) of ${sc.scan.corpus_name} (scan #${sc.scan.id})${tk.exact ? '' : `, quantiles from every ${tk.sample_every}-th value`}. ` +
        `Mean ${num(tk.mean)}, std ${num(tk.std)}, p50 ${num(tk.p50)}, p99 ${num(tk.p99)}, p99.9 ${num(tk.p99_9)}, max ${num(tk.max)}, ${pct(tk.positive_share)} above 0. `,
      cal
        ? `Markers are this record's activations (the mean over its ${T} free position${T === 1 ? '' : 's'}); their percentiles are against that same statistic on ${cal.windows} real windows of ${cal.corpus} (${cal.source === 'scan' ? 'a scan' : 'the corpus'}), not against the per-token histogram.`
        : 'Markers are this record\'s activations; the record is uncalibrated (built without --corpus or --scan-db), so they carry no percentile.',
    ),
    histogramPlot(tk.histogram ?? { edges: [], counts: [] }, markersOf(r, data)),
  );
  const scale = Math.max(Math.abs(tk.max ?? 0), Math.abs(tk.min ?? 0));
  const legend = h('span', { class: 'act-legend muted' }, 'token colour: ', ['negative', 0, 'max'].map((lab, i) => {
    const sw = h('span', { class: 'swatch' }, String(lab === 0 ? '0' : lab === 'max' ? num(scale, 2) : `−${num(scale, 2)}`));
    sw.style.backgroundColor = actColour(i === 0 ? -scale : i === 1 ? 0 : scale, scale);
    return sw;
  }));
  out.push(
    h('h3', null, `Top-activating windows (${(f.top ?? []).length})`, ' ', legend),
    h('div', { class: 'examples', 'data-test': 'examples' }, (f.top ?? []).map((/** @type {any} */ e) => exampleRow(e, text, scale))),
    h('h3', null, 'Samples from quantile bins'),
    h(
      'div',
      { class: 'bins', 'data-test': 'bins' },
      (f.bins ?? []).map((/** @type {any} */ b) =>
        h('div', { class: 'bin', 'data-test': 'bin', 'data-label': b.label }, h('div', { class: 'bin-head' }, h('b', null, b.label), ' ', h('span', { class: 'muted' }, `[${num(b.lo)}, ${num(b.hi)}]`)), b.examples.length ? b.examples.map((/** @type {any} */ e) => exampleRow(e, text, scale)) : h('span', { class: 'muted' }, 'no tokens in this bin')),
      ),
    ),
  );
  const p0 = f.position0;
  if (p0) out.push(h('p', { class: 'muted' }, `Position 0 (every window's first token: the attention sink, BOS when stories start with it) is kept apart: mean ${num(p0.mean)}, max ${num(p0.max)} over ${p0.count} windows.`));
  return out;
}

/** What the feature's direction does to the output logits (issue 13's logit_effects). @param {any} r @param {(id: number) => string | null} text */
function logitSection(r, text) {
  const le = r.logit_effects;
  const head = h('h2', null, 'Logit effects');
  if (!le) return [head, h('p', { class: 'muted', 'data-test': 'no-logit-effects' }, 'Not recorded for this record (it was built before logit effects were, or its selection has none).')];
  const list = (/** @type {any[]} */ xs, /** @type {string} */ cls) =>
    h('ol', { class: `effects ${cls}` }, (xs ?? []).map((x) => h('li', null, tok(x.text ?? text(x.id), x.id), ' ', h('span', { class: 'num' }, num(x.value, 3)))));
  return [
    head,
    h('p', { class: 'muted' }, "The feature's direction pushed through the final norm and the head: the tokens whose logits it raises most and lowers most."),
    h('div', { class: 'two-col', 'data-test': 'logit-effects' }, h('div', { 'data-test': 'promoted' }, h('h3', null, 'promoted'), list(le.promoted, 'up')), h('div', { 'data-test': 'suppressed' }, h('h3', null, 'suppressed'), list(le.suppressed, 'down'))),
  ];
}

/** The skip-path share and the seed spread (issue 13's skip and stability). @param {any} r @param {any} data */
function skipStabilitySection(r, data) {
  const rows = [];
  const sk = r.skip;
  rows.push(
    h(
      'tr',
      { 'data-test': 'skip' },
      h('th', null, 'skip path'),
      h(
        'td',
        null,
        !sk
          ? h('span', { class: 'muted' }, 'not measured for this record')
          : sk.share === null
            ? h('span', { class: 'muted' }, `not applicable: ${sk.not_applicable ?? 'no reason given'}`)
            : `${pct(sk.share)} of the optimum's objective is carried by the identity (skip) path alone`,
      ),
    ),
  );
  const st = r.stability;
  const pt = data.percentile_text ?? {};
  rows.push(
    h(
      'tr',
      { 'data-test': 'stability' },
      h('th', null, 'stability'),
      h(
        'td',
        null,
        !st
          ? h('span', { class: 'muted' }, 'one start only (build with --seeds K > 1 to measure it)')
          : `${st.seeds} starts: top-1 agreement ${pct(st.agreement)} (mean over pairs, optimised positions); decoded ${num(st.decoded.min)} to ${num(st.decoded.max)} (mean ${num(st.decoded.mean)}, std ${num(st.decoded.std)})` +
              `${st.percentile ? `, percentile ${pt.stability_min ?? '?'} to ${pt.stability_max ?? '?'}` : ', uncalibrated'}; shown: start ${st.best}`,
      ),
    ),
  );
  return [h('h2', null, 'Skip path and stability'), h('table', { class: 'data compact' }, h('tbody', null, rows))];
}

/** The same run on control models (same shape; marked by name), with the compare link. @param {any} data @param {string | null} compareHref */
function controlsSection(data, compareHref) {
  const cs = data.controls ?? [];
  const head = h('h2', null, 'Controls');
  const r = data.record;
  if (!cs.length)
    return [
      head,
      h(
        'p',
        { class: 'muted', 'data-test': 'no-controls' },
        `No control in this atlas: no other model of the same shape (architecture, blocks, width, vocabulary) has this run with these settings. Make one with llm-features random-model --like MODEL --out DIR [--keep-embeddings] and atlas build it with the same flags.`,
      ),
    ];
  return [
    head,
    h('p', { class: 'muted' }, 'The same selection, blocks, hook and settings on the atlas\'s other models of the same shape. A model counts as a control when its name says so (random, untrained, control); the atlas cannot tell trained weights from random ones.'),
    h(
      'table',
      { class: 'data compact', 'data-test': 'controls' },
      h('thead', null, h('tr', null, ['model', 'kind', 'top-1', 'decoded', 'percentile', 'skip share', `top-1 agreement with ${r.model.name}`].map((t) => h('th', null, t)))),
      h(
        'tbody',
        null,
        cs.map((/** @type {any} */ c) =>
          h(
            'tr',
            { 'data-test': 'control', 'data-kind': c.kind },
            h('td', null, h('a', { href: link(`/feature/${c.id}`) }, c.model_name)),
            h('td', null, h('span', { class: `finding ${c.kind === 'control' ? 'neutral' : 'plain'}` }, c.kind)),
            h('td', null, c.status === 'ok' ? tok(c.top1_text) : h('span', { class: 'error-text' }, 'failed')),
            h('td', { class: 'num' }, num(c.activation.decoded)),
            h('td', { class: 'num' }, c.pct_decoded_text ?? 'uncalibrated'),
            h('td', { class: 'num' }, c.skip_share === null ? '—' : pct(c.skip_share)),
            h('td', { class: 'num', title: `over ${c.agreement_positions} free positions` }, pct(c.top1_agreement)),
          ),
        ),
      ),
    ),
    compareHref ? h('p', null, h('a', { href: compareHref, 'data-test': 'controls-compare' }, 'compare these records side by side →')) : null,
  ];
}

/** Every activation the record reports, with its percentile of real text. @param {any} r @param {any} data */
function activationsSection(r, data) {
  const a = r.activation ?? {};
  const p = data.percentile_text ?? {};
  /** @type {[string, number | null, string | null][]} */
  const acts = [
    ['continuous', a.continuous ?? null, p.continuous ?? null],
    ['decoded', a.decoded ?? null, p.decoded ?? null],
    ['random tokens', a.random ?? null, p.random ?? null],
  ];
  if (r.baseline) acts.push([`baseline (${r.baseline.kind})`, r.baseline.activation ?? null, p.skip_baseline ?? null]);
  if (r.refined) acts.push([`refined (${r.refined.method})`, r.refined.activation ?? null, p.refined ?? null]);
  if (r.exhaustive?.repeated?.best?.length) acts.push(['exhaustive best', r.exhaustive.repeated.best[0].activation ?? null, p.exhaustive_best ?? null]);
  const cal = r.calibration;
  return [
    h('h2', null, 'Activations'),
    h(
      'table',
      { class: 'data compact', 'data-test': 'activations' },
      h('thead', null, h('tr', null, h('th', null, ''), h('th', null, 'value'), h('th', { title: cal ? `percentile of the same statistic on ${cal.windows} real windows of ${cal.corpus}` : 'no real-data reference' }, 'percentile of real text'))),
      h('tbody', null, acts.map(([k, v, q]) => h('tr', null, h('th', null, k), h('td', { class: 'num' }, num(v, 4)), h('td', { class: `num ${q === null ? 'muted' : ''}` }, q ?? 'uncalibrated')))),
      h('tbody', null, h('tr', null, h('th', null, 'objective initial'), h('td', { class: 'num' }, num(r.objective?.initial, 4)), h('td', null, '')), h('tr', null, h('th', null, 'objective final'), h('td', { class: 'num' }, num(r.objective?.final, 4)), h('td', null, ''))),
    ),
  ];
}

/** @param {Node} el */
function selectText(el) {
  const range = document.createRange();
  range.selectNodeContents(el);
  const sel = window.getSelection();
  sel?.removeAllRanges();
  sel?.addRange(range);
}

/** @param {URLSearchParams} params */
async function comparePage(params) {
  const data = await api(`/api/compare?${pick(params, ['feature', 'hook', 'model', 'settings'])}`);
  const cols = data.columns;

  const featureInput = h('input', { type: 'number', min: 0, name: 'feature', value: data.feature, 'aria-label': 'feature', class: 'narrow' });
  const hookSelect = h('select', { name: 'hook', 'aria-label': 'hook' }, ['', 'resid', 'attn', 'attn_out', 'mlp', 'mlp_out'].map((v) => h('option', { value: v, selected: (data.hook ?? '') === v }, v || 'any hook')));
  const form = h(
    'form',
    {
      class: 'controls',
      onsubmit: (/** @type {Event} */ e) => {
        e.preventDefault();
        location.hash = link('/compare', { feature: /** @type {HTMLInputElement} */ (featureInput).value, hook: /** @type {HTMLSelectElement} */ (hookSelect).value, model: data.model, settings: data.settings });
      },
    },
    'feature ',
    featureInput,
    hookSelect,
    h('button', { type: 'submit' }, 'Compare'),
    data.settings ? h('span', { class: 'muted' }, ` settings ${short(data.settings)} `, h('a', { href: link('/compare', { feature: data.feature, hook: data.hook, model: data.model }) }, '(any settings)')) : null,
  );

  const maxT = data.consensus.length;
  const head = h(
    'tr',
    null,
    h('th', null, ''),
    cols.map((/** @type {any} */ c) =>
      h('th', { 'data-test': 'compare-col' }, h('a', { href: link(`/feature/${c.id}`) }, `${c.model.name}`), h('div', null, `blocks ${c.blocks_label} · ${c.hook}`), h('div', { class: 'muted mono' }, short(c.settings_hash))),
    ),
  );
  const rowOf = (/** @type {string} */ label, /** @type {(c: any) => any} */ f, cls = '') => h('tr', { class: cls }, h('th', null, label), cols.map((/** @type {any} */ c) => h('td', null, f(c))));
  const rows = [
    rowOf('status', (c) => h('span', { class: `badge ${c.status}` }, c.status)),
    rowOf('top-1 as text', (c) => (c.top1_text !== null ? tok(c.top1_text, null) : h('span', { class: 'muted' }, c.error ?? '—'))),
    rowOf('continuous', (c) => num(c.activation?.continuous), 'num'),
    rowOf('decoded', (c) => num(c.activation?.decoded), 'num'),
    rowOf('random', (c) => num(c.activation?.random), 'num'),
    rowOf('baseline agreement', (c) => pct(c.baseline_agreement), 'num'),
  ];
  for (let t = 0; t < maxT; t++) {
    const cons = data.consensus[t];
    rows.push(
      h(
        'tr',
        { class: 'pos-row' },
        h('th', null, `t${t} top-1`),
        cols.map((/** @type {any} */ c) => {
          const p = c.positions[t];
          if (!p) return h('td', null, '');
          const shared = p.free && cons.shared[p.key] >= 2;
          const el = tok(p.text, p.id, shared ? `agree${p.key === cons.key ? ' majority' : ''}` : '');
          if (shared) el.style.backgroundColor = `hsl(${hue(p.key)} 80% 82%)`;
          return h('td', { class: p.free ? '' : 'fixed', 'data-agree': shared ? 'yes' : 'no' }, el, h('span', { class: 'cos-value' }, ` cos ${num(p.cosine, 2)}`));
        }),
      ),
    );
  }
  const table = h('table', { class: 'data compare', 'data-test': 'compare' }, h('thead', null, head), h('tbody', null, rows));

  const pairKey = (/** @type {number} */ a, /** @type {number} */ b) => `${Math.min(a, b)}:${Math.max(a, b)}`;
  const pairMap = new Map(data.pairs.map((/** @type {any} */ p) => [pairKey(p.a, p.b), p]));
  const colName = (/** @type {any} */ c) => `${c.model.name} ${c.blocks_label}`;
  const matrix = h(
    'table',
    { class: 'data matrix', 'data-test': 'pairs' },
    h('thead', null, h('tr', null, h('th', null, 'top-1 agreement / top-k Jaccard'), cols.map((/** @type {any} */ c) => h('th', null, colName(c))))),
    h(
      'tbody',
      null,
      cols.map((/** @type {any} */ a) =>
        h(
          'tr',
          null,
          h('th', null, colName(a)),
          cols.map((/** @type {any} */ b) => {
            if (a.id === b.id) return h('td', { class: 'muted' }, '—');
            const p = pairMap.get(pairKey(a.id, b.id));
            if (p && p.not_pairable) return h('td', { class: 'muted', title: p.not_pairable }, 'not pairable');
            if (!p || p.top1_agreement === null) return h('td', { class: 'muted' }, 'n/a');
            const td = h('td', { class: 'num', title: `${p.positions} shared free positions` }, `${pct(p.top1_agreement)} / ${num(p.jaccard, 2)}`);
            td.style.backgroundColor = `hsl(140 60% ${Math.round(97 - 40 * p.top1_agreement)}%)`;
            return td;
          }),
        ),
      ),
    ),
  );
  return {
    title: `compare feature ${data.feature}`,
    crumbs: [h('a', { href: '#/' }, 'overview'), `compare feature ${data.feature}`],
    nodes: [
      h('h1', null, `Feature ${data.feature} across block ranges and models`),
      form,
      h('p', { class: 'muted' }, `${cols.length} record${cols.length === 1 ? '' : 's'}${data.truncated ? ' (more exist; narrow by hook or settings)' : ''}. Highlighted tokens are the top-1 decode of two or more columns at that position (one colour per token); bold marks the most common.`),
      h('div', { class: 'scroll' }, table),
      h('h2', null, 'Agreement'),
      h('div', { class: 'scroll' }, matrix),
    ],
  };
}

// ----- router -----------------------------------------------------------------------------------------------------

let generation = 0;

async function route() {
  const my = ++generation;
  const raw = location.hash.replace(/^#/, '') || '/';
  const qi = raw.indexOf('?');
  const path = qi < 0 ? raw : raw.slice(0, qi);
  const params = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
  app.setAttribute('aria-busy', 'true');
  try {
    /** @type {{ title: string, crumbs: any[], nodes: any[] }} */
    let page;
    let m;
    if (path === '/' || path === '') {
      const o = await api('/api/overview');
      dbLabel.textContent = o.db;
      page = await overviewPage(o);
    } else if (path === '/grid') page = await gridPage(params);
    else if ((m = /^\/feature\/(\d+)$/.exec(path))) page = await featurePage(m[1]);
    else if (path === '/compare') page = await comparePage(params);
    else if (path === '/search') page = await searchPage(params);
    else throw new ApiError(404, `no page ${path}`);
    // A page renders only if no newer navigation started while it loaded.
    if (my !== generation) return;
    document.title = page.title;
    setCrumbs(page.crumbs);
    app.replaceChildren(...page.nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
    app.dataset.page = path.split('/')[1] || 'overview';
    app.dataset.route = raw;
    window.scrollTo(0, 0);
  } catch (err) {
    if (my !== generation) return;
    const e = /** @type {ApiError} */ (err);
    const heading = e.status === 404 ? 'Not found' : e.status === 400 ? 'Bad request' : 'Error';
    document.title = `${heading} · llm-features atlas`;
    setCrumbs([h('a', { href: '#/' }, 'overview'), 'error']);
    app.dataset.page = 'error';
    app.dataset.route = raw;
    app.replaceChildren(h('h1', null, heading), h('div', { class: 'error-box', 'data-test': 'error' }, e.message ?? String(err)), h('p', null, h('a', { href: '#/' }, 'back to the overview')));
  } finally {
    if (my === generation) app.removeAttribute('aria-busy');
  }
}

window.addEventListener('hashchange', route);
if (!dbLabel.textContent) api('/api/overview').then((o) => (dbLabel.textContent = o.db), () => {});
route();
