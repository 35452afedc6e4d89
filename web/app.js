// @ts-check
/**
 * The atlas viewer: plain DOM + SVG, no dependencies, no build step. Every piece of atlas data reaches the page
 * through textContent or SVG attributes (never innerHTML), so token text cannot inject markup; whitespace inside
 * tokens is drawn visibly (· for a space, ↵ newline, → tab, \xNN other control characters).
 *
 * Routes (the URL fragment):
 *   #/                                   overview
 *   #/grid?model=&blocks=&hook=&settings=[&q=&status=&after=|before=]
 *   #/feature/<record id>
 *   #/compare?feature=[&hook=&model=&settings=]
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
 * Horizontal bars around zero: one row per [label, value, class].
 * @param {[string, number | null, string][]} items
 */
function barChart(items) {
  const W = 640;
  const row = 28;
  const m = { l: 190, r: 90, t: 6, b: 6 };
  const H = m.t + m.b + row * items.length;
  const vals = items.map((it) => it[1]).filter((v) => v !== null && Number.isFinite(v)).map(Number);
  const lo = Math.min(0, ...vals);
  const hi = Math.max(0, ...vals, lo === 0 ? 1e-9 : 0);
  const X = (/** @type {number} */ v) => m.l + ((v - lo) / (hi - lo || 1)) * (W - m.l - m.r);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'plot bars', role: 'img', 'aria-label': 'activations' });
  items.forEach(([label, v, cls], i) => {
    const y = m.t + i * row;
    svg.appendChild(s('text', { x: m.l - 8, y: y + row / 2 + 4, 'text-anchor': 'end', class: 'bar-label' }, label));
    if (v === null || !Number.isFinite(v)) {
      svg.appendChild(s('text', { x: X(0) + 6, y: y + row / 2 + 4, class: 'tick' }, 'n/a'));
      return;
    }
    const a = X(Math.min(0, v));
    const b = X(Math.max(0, v));
    svg.appendChild(s('rect', { x: a, y: y + 5, width: Math.max(1, b - a), height: row - 10, class: `bar ${cls}` }, s('title', null, `${label}: ${v}`)));
    // Values right of the bar (or of the zero line for negative bars), clear of the labels on the left.
    svg.appendChild(s('text', { x: Math.max(b, X(0)) + 6, y: y + row / 2 + 4, 'text-anchor': 'start', class: 'bar-value' }, num(v)));
  });
  svg.appendChild(s('line', { x1: X(0), x2: X(0), y1: m.t - 2, y2: H - m.b + 2, class: 'axis' }));
  return svg;
}

// ----- pages ------------------------------------------------------------------------------------------------------

/** @param {any} o */
async function overviewPage(o) {
  const cards = h(
    'div',
    { class: 'cards', 'data-test': 'summary' },
    [
      ['records', o.records],
      ['ok', o.ok],
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
    h('thead', null, h('tr', null, ['model', 'blocks', 'hook', 'settings', 'records', 'ok', 'failed', 'features', ''].map((t) => h('th', null, t)))),
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
          h('td', null, h('a', { href, 'data-test': 'open-grid' }, 'grid →')),
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

/** @param {URLSearchParams} params */
async function gridPage(params) {
  const data = await api(`/api/grid?${pick(params, ['model', 'blocks', 'hook', 'settings', 'after', 'before', 'limit', 'q', 'status'])}`);
  const g = data.group;
  const base = { model: g.model_hash, blocks: blockLabel(g.blocks), hook: g.hook, settings: g.settings_hash };
  const title = `${g.model_name} · blocks ${blockLabel(g.blocks)} · ${g.hook}`;

  const q = h('input', { type: 'search', name: 'q', value: data.q ?? '', placeholder: 'top-1 text contains…', 'aria-label': 'search top-1 text', 'data-test': 'search', maxlength: 200 });
  const status = h('select', { name: 'status', 'aria-label': 'status' }, ['all', 'ok', 'failed'].map((v) => h('option', { value: v, selected: v === data.status }, v)));
  const go = h('input', { type: 'number', name: 'feature', min: 0, placeholder: 'feature #', 'aria-label': 'go to feature', class: 'narrow' });
  const form = h(
    'form',
    {
      class: 'controls',
      onsubmit: (/** @type {Event} */ e) => {
        e.preventDefault();
        const f = /** @type {HTMLInputElement} */ (go).value.trim();
        const next = { ...base, q: /** @type {HTMLInputElement} */ (q).value, status: /** @type {HTMLSelectElement} */ (status).value === 'all' ? null : /** @type {HTMLSelectElement} */ (status).value };
        location.hash = link('/grid', /^\d+$/.test(f) ? { ...next, after: Number(f) - 1 } : next);
      },
    },
    q,
    status,
    go,
    h('button', { type: 'submit' }, 'Show'),
  );
  const keep = { ...base, q: data.q, status: data.status === 'all' ? null : data.status, limit: params.get('limit') };
  const pager = () =>
    h(
      'div',
      { class: 'pager' },
      data.prev_before !== null ? h('a', { href: link('/grid', { ...keep, before: data.prev_before }), 'data-test': 'prev-page' }, '← previous') : h('span', { class: 'muted' }, '← previous'),
      h('span', { class: 'muted' }, data.cells.length ? `features ${data.cells[0].feature}–${data.cells[data.cells.length - 1].feature} · ${data.matched} ${data.q || data.status !== 'all' ? 'matching' : 'in this group'}` : 'no features here'),
      data.next_after !== null ? h('a', { href: link('/grid', { ...keep, after: data.next_after }), 'data-test': 'next-page' }, 'next →') : h('span', { class: 'muted' }, 'next →'),
    );
  const grid = h(
    'div',
    { class: 'grid', 'data-test': 'grid' },
    data.cells.map((/** @type {any} */ c) =>
      h(
        'a',
        { class: `cell ${c.status === 'failed' ? 'failed' : ''}`, href: link(`/feature/${c.id}`), 'data-test': 'cell', 'data-feature': c.feature, title: `feature ${c.feature}: continuous ${num(c.act_continuous)}, decoded ${num(c.act_decoded)}, random ${num(c.act_random)}` },
        h('span', { class: 'fnum' }, `#${c.feature}`),
        c.status === 'ok' ? h('span', { class: 'top1' }, c.top1_text === null ? h('span', { class: 'muted' }, '—') : tok(c.top1_text)) : h('span', { class: 'top1 error-text' }, 'failed'),
        h('span', { class: 'act' }, c.status === 'ok' ? num(c.act_decoded, 2) : ''),
      ),
    ),
  );
  return {
    title: `grid: ${title}`,
    crumbs: [h('a', { href: '#/' }, 'overview'), title],
    nodes: [
      h('h1', null, title),
      h(
        'p',
        { class: 'muted' },
        `settings ${short(g.settings_hash)} · ${g.records} records (${g.ok} ok, ${g.failed} failed) · features ${g.features ? `${g.features[0]}–${g.features[1]}` : '—'} · each cell: feature, top-1 decode, decoded activation`,
      ),
      form,
      pager(),
      data.cells.length ? grid : h('p', { class: 'empty', 'data-test': 'no-match' }, data.q ? `No feature's top-1 text contains "${data.q}".` : 'No features on this page.'),
      data.cells.length > 24 ? pager() : null,
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
    h('h1', null, label, ' ', h('span', { class: `badge ${r.status}`, 'data-test': 'status' }, r.status)),
    h('p', { class: 'muted' }, `${where} · selection ${r.select} · settings ${short(r.settings_hash)} · record #${r.id} · ${r.created_at}`, data.tokenizer ? '' : ' · checkpoint not found: token ids shown'),
    nav,
  );
  if (r.status === 'failed') sections.push(h('div', { class: 'error-box', 'data-test': 'error' }, r.error ?? 'failed (no message)'));

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

  // Activations.
  const a = r.activation ?? {};
  /** @type {[string, number | null, string][]} */
  const acts = [
    ['continuous', a.continuous ?? null, 'continuous'],
    ['decoded', a.decoded ?? null, 'decoded'],
    ['random tokens', a.random ?? null, 'random'],
  ];
  if (r.baseline) acts.push([`baseline (${r.baseline.kind})`, r.baseline.activation ?? null, 'baseline']);
  if (r.refined) acts.push([`refined (${r.refined.method})`, r.refined.activation ?? null, 'refined']);
  if (r.exhaustive?.repeated?.best?.length) acts.push(['exhaustive best', r.exhaustive.repeated.best[0].activation ?? null, 'exhaustive']);
  sections.push(
    h('h2', null, 'Activations'),
    h(
      'div',
      { class: 'two-col' },
      barChart(acts),
      h(
        'table',
        { class: 'data compact', 'data-test': 'activations' },
        h('tbody', null, acts.map(([k, v]) => h('tr', null, h('th', null, k), h('td', { class: 'num' }, num(v, 4))))),
        h('tbody', null, h('tr', null, h('th', null, 'objective initial'), h('td', { class: 'num' }, num(r.objective?.initial, 4))), h('tr', null, h('th', null, 'objective final'), h('td', { class: 'num' }, num(r.objective?.final, 4)))),
      ),
    ),
  );

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
    setCrumbs([h('a', { href: '#/' }, 'overview'), 'error']);
    app.dataset.page = 'error';
    app.dataset.route = raw;
    app.replaceChildren(h('h1', null, e.status === 404 ? 'Not found' : e.status === 400 ? 'Bad request' : 'Error'), h('div', { class: 'error-box', 'data-test': 'error' }, e.message ?? String(err)), h('p', null, h('a', { href: '#/' }, 'back to the overview')));
  } finally {
    if (my === generation) app.removeAttribute('aria-busy');
  }
}

window.addEventListener('hashchange', route);
if (!dbLabel.textContent) api('/api/overview').then((o) => (dbLabel.textContent = o.db), () => {});
route();
