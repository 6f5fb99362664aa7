/* page.js: the script of the page `tally html` writes (tools/html.c embeds it, with d3 and
 * d3-flame-graph, into one file). The dump's figures come as JSON in #tally-data; everything
 * below draws from them: the call-site table, the flame graph (d3-flame-graph), the call trees
 * and one function's callers and callees, memory over time by call site with a time range to
 * select, the histograms (html.c draws the size classes). A measure selector, a text filter, a module
 * filter and the raw-stack switch apply to the table, the flame graph and the trees alike.
 * Errors of this script are shown in #errors, so that a test (tests/tools/html.sh) sees them. */
'use strict';
(function () {
  const errBox = document.getElementById('errors');
  window.addEventListener('error', function (e) {
    errBox.textContent += e.message + ' (line ' + e.lineno + ')\n';
  });
  const D = JSON.parse(document.getElementById('tally-data').textContent);
  const M = D.measures;
  const MI = {};
  M.forEach(function (m, j) { MI[m.k] = j; });
  const state = {
    measure: MI.peak !== undefined ? 'peak' : M[0].k, filter: '', module: '', raw: false,
    sortKey: null, sortDir: -1, treeMode: 'top-down', fn: '', inverted: false, bottomUp: false,
    range: null,
  };
  const $ = function (id) { return document.getElementById(id); };

  /* ---- numbers, as the text report writes them -------------------------------------------- */
  function fmtSize(b) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Math.abs(b), u = 0;
    while (v >= 1024 && u < 4) { v /= 1024; u++; }
    const s = u === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0);
    return (b < 0 ? '-' : '') + s + ' ' + units[u];
  }
  const fmtCount = function (v) { return Math.round(v).toLocaleString('en-US'); };
  function fmtM(m, v) { return (m.bytes ? fmtSize(v) : fmtCount(v)); }
  function pct(part, whole) { return whole > 0 ? (100 * part / whole).toFixed(1) + '%' : '-'; }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ---- sites, stacks, filters ------------------------------------------------------------- */
  const F = D.frames; // [merge name, shown as, module, flags: 1 Python, 2 inlined]
  function stackOf(s) { return state.raw && s.r ? s.r : s.f; }
  function value(s, key) {
    const v = s.v[MI[key]];
    return v > 0 ? v : 0;
  }
  function siteMatches(s) {
    const st = stackOf(s);
    if (state.module && !st.some(function (i) { return F[i][2] === state.module; }))
      return false;
    if (!state.filter)
      return true;
    const q = state.filter.toLowerCase();
    return st.some(function (i) { return F[i][1].toLowerCase().indexOf(q) >= 0; });
  }
  function visibleSites() { return D.sites.filter(siteMatches); }
  function siteName(s) {
    const st = stackOf(s);
    return st.length ? F[st[0]][1] : '(no stack)';
  }
  function stackText(st) {
    return st.map(function (i, k) { return (k ? 'by ' : 'at ') + F[i][1]; }).join('\n');
  }

  /* ---- tabs and controls ------------------------------------------------------------------ */
  const views = {};
  function show(tab) {
    document.querySelectorAll('nav.tabs button').forEach(function (b) {
      b.classList.toggle('on', b.dataset.tab === tab);
    });
    document.querySelectorAll('.view').forEach(function (v) {
      v.classList.toggle('on', v.id === 'view-' + tab);
    });
    state.tab = tab;
    $('controls').style.display = ['sites', 'flame', 'tree', 'function'].indexOf(tab) >= 0 ? '' : 'none';
    if (views[tab]) views[tab]();
  }
  function redraw() { if (views[state.tab]) views[state.tab](); }

  function setupControls() {
    const sel = $('measure');
    M.forEach(function (m) {
      const o = el('option', { value: m.k }, m.k + ': ' + m.what);
      sel.appendChild(o);
    });
    sel.value = state.measure;
    sel.addEventListener('change', function () { state.measure = sel.value; redraw(); });
    const f = $('filter');
    let timer = null;
    f.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.filter = f.value.trim(); redraw(); }, 150);
    });
    const mods = {};
    D.sites.forEach(function (s) { s.f.forEach(function (i) { if (F[i][2]) mods[F[i][2]] = 1; }); });
    const ms = $('module');
    Object.keys(mods).sort().forEach(function (m) { ms.appendChild(el('option', { value: m }, m)); });
    ms.addEventListener('change', function () { state.module = ms.value; redraw(); });
    const raw = $('raw');
    raw.addEventListener('change', function () { state.raw = raw.checked; redraw(); });
    document.querySelectorAll('nav.tabs button').forEach(function (b) {
      b.addEventListener('click', function () { show(b.dataset.tab); });
    });
  }

  /* ---- the table of call sites ------------------------------------------------------------ */
  const TABLE_ROWS = D.tableRows || 500;
  function histRows(h, labels) {
    const max = h.reduce(function (a, b) { return Math.max(a, b[1]); }, 0);
    const t = el('table', { class: 'hist' });
    h.forEach(function (b) {
      const tr = el('tr');
      tr.appendChild(el('td', { class: 'txt' }, labels[b[0]]));
      tr.appendChild(el('td', null, fmtCount(b[1])));
      const bar = el('td', { class: 'txt' });
      bar.appendChild(el('span', { style: 'display:inline-block;background:#6b8cc7;height:9px;width:' + Math.max(1, Math.round(200 * b[1] / max)) + 'px' }));
      tr.appendChild(bar);
      t.appendChild(tr);
    });
    return t;
  }
  views.sites = function () {
    const key = state.sortKey || state.measure;
    const cols = M.filter(function (m) { return m.table || m.k === key || m.k === state.measure; });
    const m = M[MI[key]];
    const rows = visibleSites().sort(function (a, b) {
      return state.sortDir * (value(a, key) - value(b, key)) || a.id - b.id;
    });
    let total = 0;
    rows.forEach(function (s) { total += value(s, key); });
    $('sites-note').textContent = rows.length.toLocaleString('en-US') + ' call sites' +
      (state.filter || state.module ? ' match' : '') + '; ' + fmtM(m, total) + ' ' + m.sfx +
      ' in all' + (rows.length > TABLE_ROWS ? '; the first ' + TABLE_ROWS + ' are shown' : '') +
      '. Click a column to sort by it, a call site for its whole stack.';
    const thead = $('sites').tHead.rows[0];
    thead.innerHTML = '';
    thead.appendChild(el('th', null, '#'));
    cols.forEach(function (c) {
      const th = el('th', { 'data-key': c.k, title: c.what }, c.sfx);
      if (c.k === key) th.className = 'sorted' + (state.sortDir > 0 ? ' up' : '');
      th.addEventListener('click', function () {
        if (state.sortKey === c.k || (!state.sortKey && c.k === state.measure)) state.sortDir = -state.sortDir;
        else state.sortDir = -1;
        state.sortKey = c.k;
        views.sites();
      });
      thead.appendChild(th);
    });
    thead.appendChild(el('th', { class: 'txt' }, 'call site'));
    const body = $('sites').tBodies[0];
    body.innerHTML = '';
    rows.slice(0, TABLE_ROWS).forEach(function (s, i) {
      const tr = el('tr', { 'data-site': s.id });
      const iv = s.iv && s.iv[MI[key]];
      /* a sampled figure whose interval is wider than itself does not rank its site */
      const ranked = !iv || iv[1] - iv[0] <= value(s, key);
      tr.appendChild(el('td', ranked ? null : { title: 'too few samples to rank' }, ranked ? String(i + 1) : '-'));
      cols.forEach(function (c) {
        const td = el('td', { 'data-v': String(value(s, c.k)), 'data-key': c.k }, D.est + fmtM(c, value(s, c.k)));
        const iv = s.iv && s.iv[MI[c.k]];
        if (iv && iv[1] > 0 && iv[0] !== iv[1]) { /* sample mode: the estimate's 95% interval */
          td.appendChild(el('br'));
          td.appendChild(el('small', { class: 'muted' }, '95%: ' + (iv[0] > 0 ? fmtM(c, iv[0]) + ' to ' : 'up to ') + fmtM(c, iv[1])));
        }
        tr.appendChild(td);
      });
      const td = el('td', { class: 'txt' });
      const det = el('details');
      det.appendChild(el('summary', null, siteName(s)));
      det.appendChild(el('pre', { class: 'stack' }, stackText(stackOf(s))));
      if (s.r && !state.raw) {
        const raw = el('details', { class: 'raw' });
        raw.appendChild(el('summary', { class: 'muted' }, 'raw stack (allocator wrappers kept)'));
        raw.appendChild(el('pre', { class: 'stack' }, stackText(s.r)));
        det.appendChild(raw);
      }
      if (s.hs && s.hs.length) {
        det.appendChild(el('div', { class: 'sub' }, 'requested sizes'));
        det.appendChild(histRows(s.hs, D.hist.slabels));
      }
      if (s.hl && s.hl.length) {
        det.appendChild(el('div', { class: 'sub' }, 'lifetimes (allocations between allocation and free)'));
        det.appendChild(histRows(s.hl, D.hist.llabels));
      }
      td.appendChild(det);
      tr.appendChild(td);
      body.appendChild(tr);
    });
  };

  /* ---- trees: the flame graph's, the call trees', one function's ---------------------------- */
  /* The tree of the visible sites' stacks under the measure: top-down (outermost frame at the
   * root) or bottom-up (allocating frame at the root). With focus, only stacks through that
   * function, rooted at it: callees (top-down) or callers (bottom-up). A recursive function
   * counts once per stack, at its outermost call. */
  function buildTree(key, bottomUp, focus) {
    const root = { name: focus || 'all', value: 0, self: 0, kids: new Map(), py: false };
    visibleSites().forEach(function (s) {
      const v = value(s, key);
      if (!(v > 0)) return;
      let st = stackOf(s).slice().reverse(); // outermost first
      if (focus) {
        const at = st.findIndex(function (i) { return F[i][0] === focus; });
        if (at < 0) return;
        st = bottomUp ? st.slice(0, at).reverse() : st.slice(at + 1);
      } else if (bottomUp) {
        st.reverse();
      }
      root.value += v;
      let n = root;
      st.forEach(function (i) {
        const name = F[i][0];
        let c = n.kids.get(name);
        if (!c) { c = { name: name, value: 0, self: 0, kids: new Map(), py: (F[i][3] & 1) === 1 }; n.kids.set(name, c); }
        c.value += v;
        n = c;
      });
      n.self += v;
    });
    return root;
  }
  function sortedKids(n) {
    return Array.from(n.kids.values()).sort(function (a, b) { return b.value - a.value || (a.name < b.name ? -1 : 1); });
  }

  /* ---- the flame graph (d3-flame-graph) ----------------------------------------------------- */
  let flameChart = null;
  function toFlame(n) {
    return { name: n.name, value: n.value, children: sortedKids(n).map(toFlame) };
  }
  views.flame = function () {
    const m = M[MI[state.measure]];
    const t = buildTree(state.measure, state.bottomUp, null);
    const box = $('flame-chart');
    box.innerHTML = '';
    $('flame-total').textContent = D.est + fmtM(m, t.value) + ' ' + m.sfx + ' in all' +
      (state.bottomUp ? ', allocating functions at the root' : '');
    if (!(t.value > 0)) {
      box.appendChild(el('p', { class: 'muted' }, 'Nothing to show: no call site has any ' + m.what + (state.filter || state.module ? ' among those the filters keep' : '') + '.'));
      flameChart = null;
      return;
    }
    flameChart = flamegraph.default()
      .width(Math.max(600, box.clientWidth || 1200))
      .cellHeight(18)
      .inverted(state.inverted)
      .transitionDuration(0)
      .minFrameSize(1)
      .sort(function (a, b) { return b.value - a.value; })
      .setDetailsElement($('flame-details'))
      .setLabelHandler(function (d) { return d.data.name + ': ' + D.est + fmtM(m, d.value) + ' (' + pct(d.value, t.value) + ')'; });
    d3.select(box).datum(toFlame(t)).call(flameChart);
    const q = $('flame-search').value.trim();
    if (q) flameChart.search(q);
  };
  function setupFlame() {
    $('flame-inverted').addEventListener('change', function (e) { state.inverted = e.target.checked; views.flame(); });
    $('flame-bottom-up').addEventListener('change', function (e) { state.bottomUp = e.target.checked; views.flame(); });
    $('flame-search').addEventListener('input', function (e) {
      if (!flameChart) return;
      if (e.target.value.trim()) flameChart.search(e.target.value.trim()); else flameChart.clear();
    });
    $('flame-reset').addEventListener('click', function () { if (flameChart) flameChart.resetZoom(); });
  }

  /* ---- call trees ---------------------------------------------------------------------------- */
  const KIDS_SHOWN = 60;
  function treeRows(parent, n, total, m, depth, openDepth) {
    const kids = sortedKids(n);
    kids.slice(0, KIDS_SHOWN).forEach(function (c) {
      const wrap = el('div', { class: 'node' + (c.py ? ' py' : '') });
      const row = el('div', { class: 'row', 'data-name': c.name, 'data-value': String(c.value) });
      const tog = el('span', { class: 'tog' }, c.kids.size ? '\u25B8' : '');
      const name = el('span', { class: 'name', style: 'padding-left:' + (depth * 14) + 'px', title: c.name });
      name.appendChild(tog);
      name.appendChild(document.createTextNode(c.name));
      row.appendChild(el('span', { class: 'num' }, D.est + fmtM(m, c.value)));
      row.appendChild(el('span', { class: 'num' }, pct(c.value, total)));
      row.appendChild(el('span', { class: 'num', title: 'self: allocated in this function itself' }, c.self > 0 ? D.est + fmtM(m, c.self) : ''));
      row.appendChild(name);
      const fnBtn = el('button', { class: 'small', title: 'its callers and callees' }, 'callers/callees');
      fnBtn.addEventListener('click', function (e) { e.stopPropagation(); openFunction(c.name); });
      name.appendChild(fnBtn);
      wrap.appendChild(row);
      const kidsBox = el('div', { class: 'kids' });
      wrap.appendChild(kidsBox);
      let open = false;
      function toggle() {
        if (!c.kids.size) return;
        open = !open;
        tog.textContent = open ? '\u25BE' : '\u25B8';
        row.classList.toggle('open', open);
        if (open && !kidsBox.firstChild) treeRows(kidsBox, c, total, m, depth + 1, openDepth);
        kidsBox.style.display = open ? '' : 'none';
      }
      row.addEventListener('click', toggle);
      parent.appendChild(wrap);
      if (depth < openDepth && kids.length && c === kids[0]) toggle(); // the heaviest path, opened
    });
    if (kids.length > KIDS_SHOWN) {
      let rest = 0;
      kids.slice(KIDS_SHOWN).forEach(function (c) { rest += c.value; });
      parent.appendChild(el('div', { class: 'more', 'data-value': String(rest), style: 'padding-left:' + (depth * 14 + 20) + 'px' }, (kids.length - KIDS_SHOWN) + ' more, ' + D.est + fmtM(m, rest)));
    }
  }
  function treeHead(box) {
    const h = el('div', { class: 'row head' });
    ['inclusive', 'share', 'self', 'function'].forEach(function (t) { h.appendChild(el('span', { class: t === 'function' ? '' : 'num' }, t)); });
    box.appendChild(h);
  }
  views.tree = function () {
    const m = M[MI[state.measure]];
    const bottomUp = state.treeMode === 'bottom-up';
    const t = buildTree(state.measure, bottomUp, null);
    const box = $('tree');
    box.innerHTML = '';
    $('tree-total').textContent = (bottomUp ? 'Bottom-up: the allocating functions, then their callers' : 'Top-down: callers to callees') + '; ' + D.est + fmtM(m, t.value) + ' ' + m.sfx + ' in all. Click a function to open it.';
    treeHead(box);
    treeRows(box, t, t.value, m, 0, 4);
  };
  function setupTree() {
    document.querySelectorAll('input[name=tree-mode]').forEach(function (r) {
      r.addEventListener('change', function () { state.treeMode = r.value; views.tree(); });
    });
  }

  /* ---- one function: its callers and its callees ------------------------------------------- */
  function openFunction(name) {
    state.fn = name;
    $('fn-name').value = name;
    show('function');
  }
  views['function'] = function () {
    const m = M[MI[state.measure]];
    const name = state.fn;
    const callers = $('fn-callers'), callees = $('fn-callees');
    callers.innerHTML = callees.innerHTML = '';
    if (!name) {
      $('fn-total').textContent = 'Type a function\'s name, or click "callers/callees" beside one in the call tree.';
      return;
    }
    const down = buildTree(state.measure, false, name), up = buildTree(state.measure, true, name);
    let self = down.self;
    $('fn-total').textContent = down.value > 0
      ? name + ': ' + D.est + fmtM(m, down.value) + ' ' + m.sfx + ' through it (inclusive), ' + D.est + fmtM(m, self) + ' in the function itself.'
      : 'No call site\'s stack passes through ' + name + (state.filter || state.module ? ' among those the filters keep' : '') + '.';
    if (down.value > 0) {
      treeHead(callers);
      treeRows(callers, up, down.value, m, 0, 2);
      treeHead(callees);
      treeRows(callees, down, down.value, m, 0, 2);
    }
  };
  function setupFunction() {
    const names = {};
    D.sites.forEach(function (s) { s.f.forEach(function (i) { names[F[i][0]] = 1; }); });
    const dl = $('fn-names');
    Object.keys(names).sort().slice(0, 5000).forEach(function (n) { dl.appendChild(el('option', { value: n })); });
    $('fn-name').addEventListener('change', function (e) { state.fn = e.target.value.trim(); views['function'](); });
  }

  /* ---- memory over time ----------------------------------------------------------------------- */
  const tip = el('div', { class: 'tip' });
  document.body.appendChild(tip);
  function showTip(ev, html) {
    tip.innerHTML = html;
    tip.style.display = 'block';
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8) + 'px';
    tip.style.top = (ev.clientY + 14) + 'px';
  }
  function hideTip() { tip.style.display = 'none'; }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]; }); }

  const TOP_SERIES = 8;
  let timeDrawn = false;
  views.time = function () {
    if (timeDrawn) return;
    timeDrawn = true;
    const T = D.timeline;
    const box = $('time-chart');
    if (!T || !T.t.length) { box.appendChild(el('p', { class: 'muted' }, 'This dump has no timeline.')); return; }
    const det = T.detail; // [point index, [[site, live, allocated]...]]
    // the series: the sites with the most live bytes at any detailed point
    const maxLive = new Map();
    det.forEach(function (p) { p[1].forEach(function (x) { if (x[1] > (maxLive.get(x[0]) || 0)) maxLive.set(x[0], x[1]); }); });
    const top = Array.from(maxLive.keys()).sort(function (a, b) { return maxLive.get(b) - maxLive.get(a); }).slice(0, TOP_SERIES);
    const keys = top.map(String).concat(['other']);
    const rows = det.map(function (p) {
      const r = { t: T.t[p[0]], live: T.live[p[0]], i: p[0] };
      let sum = 0;
      top.forEach(function (s) { r[s] = 0; });
      p[1].forEach(function (x) { if (r[x[0]] !== undefined) { r[x[0]] = Math.max(0, x[1]); sum += Math.max(0, x[1]); } });
      r.other = Math.max(0, r.live - sum);
      return r;
    });
    const W = Math.max(700, box.clientWidth || 1200), H = 320, mg = { l: 70, r: 70, t: 10, b: 30 };
    const x = d3.scaleLinear().domain([0, d3.max(T.t) || 1]).range([mg.l, W - mg.r]);
    const ymax = Math.max(d3.max(T.live) || 0, d3.max(T.rss) || 0, 1);
    const y = d3.scaleLinear().domain([0, ymax * 1.05]).nice().range([H - mg.b, mg.t]);
    const color = d3.scaleOrdinal(d3.schemeTableau10).domain(keys);
    const svg = d3.select(box).append('svg').attr('id', 'time-svg').attr('class', 'chart').attr('width', W).attr('height', H);
    const stack = d3.stack().keys(keys)(rows);
    const area = d3.area().x(function (d) { return x(d.data.t); }).y0(function (d) { return y(d[0]); }).y1(function (d) { return y(d[1]); });
    svg.append('g').selectAll('path').data(stack).join('path')
      .attr('class', 'series').attr('data-key', function (s) { return s.key; })
      .attr('fill', function (s) { return color(s.key); }).attr('fill-opacity', 0.85).attr('d', area);
    const line = function (vals) {
      return d3.line().x(function (d, i) { return x(T.t[i]); }).y(function (d) { return y(d); })(vals);
    };
    svg.append('path').attr('id', 'time-live').attr('fill', 'none').attr('stroke', '#222').attr('stroke-width', 1.2).attr('d', line(T.live));
    svg.append('path').attr('id', 'time-rss').attr('fill', 'none').attr('stroke', '#c33').attr('stroke-dasharray', '5,3').attr('d', line(T.rss));
    svg.append('g').attr('class', 'axis').attr('transform', 'translate(0,' + (H - mg.b) + ')').call(d3.axisBottom(x).ticks(10).tickFormat(function (v) { return v + ' s'; }));
    svg.append('g').attr('class', 'axis').attr('transform', 'translate(' + mg.l + ',0)').call(d3.axisLeft(y).ticks(6).tickFormat(fmtSize));
    // the legend: the sites by their first frame
    const lg = $('time-legend');
    keys.forEach(function (k) {
      const item = el('span', { 'data-key': k });
      item.appendChild(el('span', { class: 'sw', style: 'background:' + color(k) }));
      item.appendChild(document.createTextNode(k === 'other' ? 'other call sites' : siteName(D.sites[+k])));
      lg.appendChild(item);
    });
    const l2 = el('span');
    l2.innerHTML = '<span class="sw" style="background:#222"></span>live, every point &nbsp; <span class="sw" style="background:#c33"></span>RSS';
    lg.appendChild(l2);
    // hover: the values at the nearest detailed point
    const rule = svg.append('line').attr('stroke', '#555').attr('y1', mg.t).attr('y2', H - mg.b).style('display', 'none');
    const bis = d3.bisector(function (r) { return r.t; }).center;
    svg.on('mousemove', function (ev) {
      const px = d3.pointer(ev)[0];
      if (!rows.length || px < mg.l || px > W - mg.r) { rule.style('display', 'none'); hideTip(); return; }
      const r = rows[bis(rows, x.invert(px))];
      rule.attr('x1', x(r.t)).attr('x2', x(r.t)).style('display', null);
      let html = '<b>' + r.t.toFixed(3) + ' s</b>: ' + fmtSize(r.live) + ' live, RSS ' + fmtSize(T.rss[r.i]) + '<table>';
      keys.slice().reverse().forEach(function (k) {
        if (r[k] > 0) html += '<tr><td><span class="sw" style="display:inline-block;width:9px;height:9px;background:' + color(k) + '"></span> ' + esc(k === 'other' ? 'other call sites' : siteName(D.sites[+k])) + '</td><td class="num">' + fmtSize(r[k]) + '</td></tr>';
      });
      showTip(ev, html + '</table>');
    }).on('mouseleave', function () { rule.style('display', 'none'); hideTip(); });
    // a time range: what was allocated in it
    const brush = d3.brushX().extent([[mg.l, mg.t], [W - mg.r, H - mg.b]]).on('end', function (ev) {
      state.range = ev.selection ? [x.invert(ev.selection[0]), x.invert(ev.selection[1])] : null;
      rangeTable();
    });
    svg.append('g').attr('class', 'brush').call(brush);
    rateChart(x, W, mg);
    rangeTable();
  };

  /* allocations per second between consecutive points */
  function rateChart(x, W, mg) {
    const T = D.timeline, H = 140;
    const pts = [];
    for (let i = 1; i < T.t.length; i++) {
      const dt = T.t[i] - T.t[i - 1];
      if (dt > 0) pts.push({ t0: T.t[i - 1], t1: T.t[i], rate: (T.count[i] - T.count[i - 1]) / dt });
    }
    const svg = d3.select($('rate-chart')).append('svg').attr('id', 'rate-svg').attr('class', 'chart').attr('width', W).attr('height', H);
    const y = d3.scaleLinear().domain([0, (d3.max(pts, function (p) { return p.rate; }) || 1) * 1.05]).nice().range([H - 24, 8]);
    svg.append('g').selectAll('rect').data(pts).join('rect').attr('class', 'bar')
      .attr('x', function (p) { return x(p.t0); }).attr('width', function (p) { return Math.max(1, x(p.t1) - x(p.t0) - 0.5); })
      .attr('y', function (p) { return y(p.rate); }).attr('height', function (p) { return y(0) - y(p.rate); })
      .on('mousemove', function (ev, p) { showTip(ev, p.t0.toFixed(3) + ' to ' + p.t1.toFixed(3) + ' s: ' + fmtCount(p.rate) + ' allocations/s'); })
      .on('mouseleave', hideTip);
    svg.append('g').attr('class', 'axis').attr('transform', 'translate(0,' + (H - 24) + ')').call(d3.axisBottom(x).ticks(10).tickFormat(function (v) { return v + ' s'; }));
    svg.append('g').attr('class', 'axis').attr('transform', 'translate(' + mg.l + ',0)').call(d3.axisLeft(y).ticks(4).tickFormat(d3.format('.2s')));
  }

  /* A time range's allocations: exact in all (the points' totals), by call site where the
   * detailed points list the site (its allocated bytes at the last listing at or before each
   * end; a site first listed inside the range has its figure from the start: "at most"). */
  function rangeTable() {
    const T = D.timeline, out = $('range');
    out.innerHTML = '';
    if (!T || !T.t.length) return;
    const r = state.range || [0, T.t[T.t.length - 1]];
    const at = function (t) { // the last point at or before t
      let i = 0;
      while (i + 1 < T.t.length && T.t[i + 1] <= t) i++;
      return i;
    };
    const a = state.range ? at(r[0]) : 0, b = at(r[1]);
    out.appendChild(el('p', { id: 'range-total' }, (state.range ? 'From ' + T.t[a].toFixed(3) + ' s to ' + T.t[b].toFixed(3) + ' s' : 'The whole run (drag across the chart to choose a time range)') + ': ' +
      D.est + fmtCount(T.count[b] - T.count[a]) + ' allocations of ' + D.est + fmtSize(T.alloc[b] - T.alloc[a]) + '; live went from ' + fmtSize(T.live[a]) + ' to ' + fmtSize(T.live[b]) + '.'));
    const start = new Map(), end = new Map(), endLive = new Map();
    T.detail.forEach(function (p) {
      p[1].forEach(function (x) {
        if (p[0] <= a) start.set(x[0], x[2]);
        if (p[0] <= b) { end.set(x[0], x[2]); endLive.set(x[0], x[1]); }
      });
    });
    const rows = [];
    end.forEach(function (v, s) {
      const from = start.has(s) ? start.get(s) : 0, d = v - from;
      if (d > 0) rows.push({ s: s, d: d, exact: start.has(s) || !state.range, live: endLive.get(s) });
    });
    rows.sort(function (x, y) { return y.d - x.d; });
    const t = el('table', { id: 'range-sites' });
    const h = el('tr');
    ['allocated in the range', 'live at its end (when listed)', 'call site'].forEach(function (c, i) { h.appendChild(el('th', { class: i === 2 ? 'txt' : '' }, c)); });
    t.appendChild(el('thead')).appendChild(h);
    const body = t.appendChild(el('tbody'));
    rows.slice(0, 30).forEach(function (x) {
      const tr = el('tr', { 'data-site': D.sites[x.s].id, 'data-v': String(x.d) });
      tr.appendChild(el('td', null, (x.exact ? '' : 'at most ') + D.est + fmtSize(x.d)));
      tr.appendChild(el('td', null, D.est + fmtSize(x.live)));
      const td = el('td', { class: 'txt' });
      const det = el('details');
      det.appendChild(el('summary', null, siteName(D.sites[x.s])));
      det.appendChild(el('pre', { class: 'stack' }, stackText(stackOf(D.sites[x.s]))));
      td.appendChild(det);
      tr.appendChild(td);
      body.appendChild(tr);
    });
    out.appendChild(t);
  }

  /* ---- histograms --------------------------------------------------------------------- */
  function barChart(id, bars, fmtV, title) {
    const box = $(id);
    box.innerHTML = '';
    if (!bars.length) { box.appendChild(el('p', { class: 'muted' }, 'none')); return; }
    const W = Math.max(600, Math.min(1200, bars.length * 46 + 90)), H = 240, mg = { l: 70, r: 10, t: 10, b: 56 };
    const x = d3.scaleBand().domain(bars.map(function (b) { return b[0]; })).range([mg.l, W - mg.r]).padding(0.15);
    const y = d3.scaleLinear().domain([0, d3.max(bars, function (b) { return b[1]; }) * 1.05]).nice().range([H - mg.b, mg.t]);
    const svg = d3.select(box).append('svg').attr('class', 'chart').attr('width', W).attr('height', H);
    svg.append('g').selectAll('rect').data(bars).join('rect').attr('class', 'bar')
      .attr('data-count', function (b) { return String(b[1]); }).attr('data-label', function (b) { return b[0]; })
      .attr('x', function (b) { return x(b[0]); }).attr('width', x.bandwidth())
      .attr('y', function (b) { return y(b[1]); }).attr('height', function (b) { return y(0) - y(b[1]); })
      .on('mousemove', function (ev, b) { showTip(ev, esc(b[0]) + ': ' + fmtV(b[1]) + (title ? ' ' + title : '')); })
      .on('mouseleave', hideTip);
    svg.append('g').attr('class', 'axis').attr('transform', 'translate(0,' + (H - mg.b) + ')').call(d3.axisBottom(x))
      .selectAll('text').attr('transform', 'rotate(-35)').style('text-anchor', 'end');
    svg.append('g').attr('class', 'axis').attr('transform', 'translate(' + mg.l + ',0)').call(d3.axisLeft(y).ticks(5).tickFormat(fmtV === fmtSize ? fmtSize : d3.format('~s')));
  }
  let histDrawn = false;
  views.hist = function () {
    if (histDrawn) return;
    histDrawn = true;
    barChart('sizes', D.hist.sizes, fmtCount, 'allocations');
    barChart('lifetimes', D.hist.lifetimes, fmtCount, 'frees');
  };

  /* ---- leaks ------------------------------------------------------------------------------------ */
  views.leaks = function () {
    const body = $('leaks') && $('leaks').tBodies[0];
    if (!body || body.rows.length) return;
    D.leaks.forEach(function (l) {
      const s = D.sites[l[0]];
      const tr = el('tr', { 'data-site': s.id });
      tr.appendChild(el('td', { 'data-v': String(l[3]) }, fmtCount(l[3])));
      tr.appendChild(el('td', { 'data-v': String(l[2]) }, fmtCount(l[2])));
      tr.appendChild(el('td', { class: 'txt', 'data-v': l[1] }, l[1]));
      const td = el('td', { class: 'txt' });
      const det = el('details');
      det.appendChild(el('summary', null, siteName(s)));
      det.appendChild(el('pre', { class: 'stack' }, stackText(s.r || s.f)));
      td.appendChild(det);
      tr.appendChild(td);
      body.appendChild(tr);
    });
  };

  setupControls();
  setupFlame();
  setupTree();
  setupFunction();
  const first = document.querySelector('nav.tabs button');
  show(first ? first.dataset.tab : 'sites');
  views.leaks();
  window.tallyPage = { state: state, show: show, data: D };
  document.body.dataset.ready = '1';
})();
