// fmfl dashboard: renders the node's /status document, pushed every second over server-sent events (/events).
// Plain browser JavaScript (no build step); charts with uPlot (served from node_modules). Every string from the
// status document is inserted as text, never as HTML: peers choose their device names and addresses.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const short = (id) => (id ? id.slice(-8) : '–');
  const COLORS = ['#4fb3ff', '#3fcf8e', '#ffb454', '#ff6b6b', '#c792ea', '#7fdbca', '#f78c6c', '#addb67'];
  const charts = { acc: null, bytes: null, exits: 0 };

  function fmtBytes(n) {
    if (n === null || n === undefined) return '–';
    const u = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    let x = n;
    while (x >= 1000 && i < u.length - 1) { x /= 1000; i++; }
    return `${x >= 100 || i === 0 ? Math.round(x) : x.toFixed(1)} ${u[i]}`;
  }
  function ago(ms, now) {
    const s = Math.max(0, (now - ms) / 1000);
    return s < 1 ? 'now' : s < 60 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
  }
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(tbody, cells) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      if (c instanceof Node) { const td = document.createElement('td'); td.appendChild(c); tr.appendChild(td); }
      else if (c && typeof c === 'object') tr.appendChild(el('td', c.text, c.cls));
      else tr.appendChild(el('td', c));
    }
    tbody.appendChild(tr);
  }
  function fill(tableId, rows) {
    const tbody = $(tableId).querySelector('tbody');
    tbody.replaceChildren();
    for (const r of rows) row(tbody, r);
  }
  function tag(text, cls) { return el('span', text, `tag ${cls || ''}`); }

  function renderCards(d) {
    const f = d.federation;
    const members = d.members.length;
    $('federation').textContent = `· ${d.node.federation}`;
    $('self').textContent = d.node.id;
    const round = f ? f.round : 0;
    $('round').textContent = f ? `${f.round} / ${f.rounds}` : 'no federation';
    $('round').dataset.round = String(round);
    $('phase').textContent = f ? (f.phase === 'training' ? `training round ${f.current.round}: step ${f.current.step}/${f.current.steps}` : f.phase === 'waiting' ? `waiting for members ${members}/${f.minMembers}` : f.phase + (f.stoppedBy ? ` (${f.stoppedBy})` : '')) : 'idle';
    $('members').textContent = String(members);
    $('members').dataset.count = String(members);
    $('connected').textContent = `${d.members.filter((m) => !m.self && m.connected).length} connected to this node`;
    $('leader').textContent = f && f.current.leader ? short(f.current.leader) : f && f.last && f.last.leader ? short(f.last.leader) : '–';
    $('deadline').textContent = f && f.current.deadlineMs ? `deadline in ${Math.max(0, (f.current.deadlineMs - d.timeMs) / 1000).toFixed(0)} s` : f && f.current.leader ? `leads round ${f.current.round}` : f && f.last && f.last.leader ? `led round ${f.last.round}` : '';
    const last = f && f.last;
    $('acc').textContent = last ? `${(last.accuracy[last.accuracy.length - 1] * 100).toFixed(1)}%` : '–';
    $('accsub').textContent = last ? `exits ${last.accuracy.map((a) => (a * 100).toFixed(1)).join(' / ')}` : '';
    $('bytes').textContent = `${fmtBytes(d.bytes.updateUp)} / ${fmtBytes(d.bytes.updateDown)}`;
    $('wire').textContent = `wire in ${fmtBytes(d.bytes.wireIn)}, out ${fmtBytes(d.bytes.wireOut)}`;
    const eps = f && f.epsilon !== null ? `ε ${f.epsilon.toFixed(2)}` : 'no DP';
    const cons = f && f.consensusDistance !== null ? ` · ${f.consensusDistance.toExponential(2)}` : '';
    $('privacy').textContent = eps + cons;
    $('steps').textContent = f && f.stepsPerSecond ? `${f.stepsPerSecond} training steps/s` : '';
  }

  function renderMesh(d) {
    const svg = $('mesh');
    const NS = 'http://www.w3.org/2000/svg';
    svg.replaceChildren();
    const n = d.members.length;
    const pos = new Map();
    d.members.forEach((m, i) => {
      const a = (2 * Math.PI * i) / Math.max(1, n) - Math.PI / 2;
      const r = n === 1 ? 0 : 90;
      pos.set(m.id, [160 + r * Math.cos(a), 120 + r * Math.sin(a)]);
    });
    for (const [a, b] of d.mesh.edges) {
      const p = pos.get(a);
      const q = pos.get(b);
      if (!p || !q) continue;
      const line = document.createElementNS(NS, 'line');
      line.setAttribute('x1', p[0]); line.setAttribute('y1', p[1]); line.setAttribute('x2', q[0]); line.setAttribute('y2', q[1]);
      svg.appendChild(line);
    }
    for (const m of d.members) {
      const [x, y] = pos.get(m.id);
      const c = document.createElementNS(NS, 'circle');
      c.setAttribute('cx', x); c.setAttribute('cy', y); c.setAttribute('r', 16);
      c.setAttribute('class', m.self ? 'self' : m.connected ? '' : 'gone');
      const title = document.createElementNS(NS, 'title');
      title.textContent = `${m.id}${m.round !== null ? ` · round ${m.round}` : ''}`;
      c.appendChild(title);
      svg.appendChild(c);
      const t = document.createElementNS(NS, 'text');
      t.setAttribute('x', x); t.setAttribute('y', y + 30);
      t.textContent = short(m.id) + (m.self ? ' (this)' : '');
      svg.appendChild(t);
    }
    $('dialing').textContent = d.dialing.length ? d.dialing.map((x) => `dialing ${x.addr} (${x.attempts} tries${x.cause ? `: ${x.cause}` : ''})`).join('\n') : '';
  }

  function axisRounds() {
    return { label: 'round', stroke: '#8aa0b4', grid: { stroke: '#243444' }, ticks: { stroke: '#243444' }, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (u, v) => v.map((x) => String(x)) };
  }
  function makeChart(target, series, yAxis, data) {
    const w = Math.max(280, target.clientWidth - 4);
    return new uPlot({ width: w, height: 220, series, axes: [axisRounds(), yAxis], scales: { x: { time: false } }, legend: { show: true }, cursor: { drag: { x: false, y: false } } }, data, target);
  }
  function renderCharts(d) {
    const rounds = d.rounds;
    if (rounds.length === 0) return;
    const exits = rounds[rounds.length - 1].accuracy.length;
    const xs = rounds.map((r) => r.version);
    const acc = [xs];
    for (let e = 0; e < exits; e++) acc.push(rounds.map((r) => (r.accuracy[e] !== undefined ? r.accuracy[e] * 100 : null)));
    const bytes = [xs, rounds.map((r) => r.bytesUp), rounds.map((r) => r.bytesDown)];
    if (!charts.acc || charts.exits !== exits) {
      if (charts.acc) charts.acc.destroy();
      const series = [{ label: 'round' }];
      for (let e = 0; e < exits; e++) series.push({ label: `exit ${e + 1}`, stroke: COLORS[e % COLORS.length], width: 2, points: { show: true, size: 6 }, value: (u, v) => (v === null ? '–' : `${v.toFixed(1)}%`) });
      charts.acc = makeChart($('chart-acc'), series, { label: 'test accuracy', stroke: '#8aa0b4', grid: { stroke: '#243444' }, ticks: { stroke: '#243444' }, values: (u, v) => v.map((x) => `${x}%`) }, acc);
      charts.exits = exits;
    } else charts.acc.setData(acc);
    if (!charts.bytes) {
      const series = [{ label: 'round' },
        { label: 'up', stroke: '#4fb3ff', fill: 'rgba(79,179,255,.12)', width: 2, points: { show: true, size: 6 }, value: (u, v) => fmtBytes(v) },
        { label: 'down', stroke: '#ffb454', fill: 'rgba(255,180,84,.10)', width: 2, points: { show: true, size: 6 }, value: (u, v) => fmtBytes(v) }];
      charts.bytes = makeChart($('chart-bytes'), series, { label: 'bytes', size: 70, stroke: '#8aa0b4', grid: { stroke: '#243444' }, ticks: { stroke: '#243444' }, values: (u, v) => v.map(fmtBytes) }, bytes);
    } else charts.bytes.setData(bytes);
  }

  function renderTables(d) {
    fill('peers', d.members.map((m) => [
      { text: short(m.id) + (m.self ? ' (this node)' : ''), cls: '' },
      m.capabilities.device, m.capabilities.datasetSize,
      m.round === null ? '–' : m.round,
      m.phase || '–',
      m.rttMs === null ? '–' : `${m.rttMs.toFixed(1)} ms`,
      m.self ? 'now' : ago(m.lastSeenMs, d.timeMs),
      m.self ? tag('self') : m.connected ? tag('connected', 'ok') : tag('via mesh', 'warn'),
      { text: m.addrs.join('  '), cls: 'addr' },
    ]));
    fill('rounds', d.rounds.slice(-12).reverse().map((r) => [
      r.version,
      r.leader ? short(r.leader) : '–',
      `${r.contributors} of ${r.members}`,
      r.via,
      { text: r.hash.slice(0, 12), cls: '' },
      `${(r.roundMs / 1000).toFixed(1)} s`,
      r.accuracy.map((a) => (a * 100).toFixed(1)).join(' / '),
    ]));
    const counts = Object.entries(d.refusals.byReason);
    $('refusal-counts').textContent = counts.length ? counts.map(([k, v]) => `${k}: ${v}`).join(' · ') : 'none';
    fill('refusals', d.refusals.recent.slice(-10).reverse().map((r) => [new Date(r.timeMs).toLocaleTimeString(), r.reason, r.where, short(r.peer)]));
  }

  function render(d) {
    renderCards(d);
    renderMesh(d);
    renderTables(d);
    renderCharts(d);
    document.body.dataset.updated = String(d.timeMs);
  }

  function connect() {
    const live = $('live');
    const es = new EventSource('/events');
    es.addEventListener('open', () => { live.textContent = 'live'; live.className = 'live on'; });
    es.addEventListener('error', () => { live.textContent = 'reconnecting…'; live.className = 'live off'; });
    es.addEventListener('status', (ev) => {
      try { render(JSON.parse(ev.data)); } catch (err) { console.error('fmfl dashboard: bad status event', err); }
    });
  }
  connect();
})();
