// evoagent report: renders the panels from the JSON document embedded in the page.
// Text from the store is only ever set through textContent (never parsed as HTML).
(function () {
  "use strict";
  const doc = JSON.parse(document.getElementById("report-data").textContent);
  const S = doc.strings;
  const str = (i) => (i === null || i === undefined ? null : S[i]);
  // node: [id, task, reward, steps, generation, operator, source, transcript or null]
  const nodes = doc.nodes;
  const byId = new Map(nodes.map((n, i) => [n[0], i]));
  const parentsOf = new Map();
  const childrenOf = new Map();
  for (const [c, p, op, g] of doc.edges) {
    if (!parentsOf.has(c)) parentsOf.set(c, []);
    parentsOf.get(c).push({ node: p, op: str(op), gen: g });
    if (!childrenOf.has(p)) childrenOf.set(p, []);
    childrenOf.get(p).push({ node: c, op: str(op), gen: g });
  }
  const cut = new Set(doc.cut);
  const SHORT = 300;
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "cls") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits === undefined ? 3 : digits);
    return String(v);
  }
  const short = (id) => id.slice(0, 10);
  const link = (i) => el("a", { href: "#traj=" + nodes[i][0], text: short(nodes[i][0]) });

  function table(target, header, rows, numeric) {
    target.replaceChildren(el("tr", {}, ...header.map((h) => el("th", { text: h }))));
    for (const r of rows) {
      target.append(el("tr", {}, ...r.map((v, k) =>
        el("td", numeric && numeric[k] ? { cls: "num" } : {}, v instanceof Node ? v : fmt(v)))));
    }
  }

  // -- header, figures, tables -------------------------------------------------
  const m = doc.meta;
  document.getElementById("meta").textContent =
    `campaign ${m.campaign} · store ${m.store}, read from ${m.read_from} · generated ${m.generated_at} · ` +
    `${m.tasks} tasks · ${m.nodes} trajectories in the report`;
  table(document.getElementById("progress-table"),
    ["generation", "status", "success (best per task)", "replay-pool bound", "members solved", "mean reward",
      "items", "env steps (cumulative)"],
    doc.progress.map((g) => [g.generation, g.status, g.success_rate, g.bound, g.members_solved, g.mean_reward,
      g.nevals, g.env_steps]), [1, 0, 1, 1, 1, 1, 1, 1]);
  table(document.getElementById("operator-table"),
    ["generation", "operator", "children", "success rate", "mean gain", "reward gained", "USD", "USD / reward"],
    doc.operators.map((r) => [r.generation, r.operator, r.children, r.success_rate, r.mean_gain, r.reward_gained,
      r.cost_usd, r.usd_per_reward]), [1, 0, 1, 1, 1, 1, 1, 1]);
  table(document.getElementById("budget-table"), ["", "used", "limit"],
    doc.budget.map((b) => [b.what, b.used, b.limit === null ? "none" : b.limit]), [0, 1, 1]);

  // -- best per task ---------------------------------------------------------------
  const bestTable = document.getElementById("best-table");
  const bestRows = [];
  table(bestTable, ["task", "hardness", "db", "reward", "steps", "operator", "gen", "source", "tried", "question",
    "trajectory"], []);
  for (const [i, db, hardness, q, tried] of doc.best) {
    const n = nodes[i];
    const cells = [str(n[1]), hardness, db, n[2], n[3], str(n[5]), n[4], str(n[6]), tried, str(q)];
    const tr = el("tr", {}, ...cells.map((v, k) => el("td", [3, 4, 6, 8].includes(k) ? { cls: "num" } : {}, fmt(v))),
      el("td", {}, link(i)));
    tr.dataset.node = i;
    tr.dataset.search = cells.map((v) => (v === null ? "" : String(v))).join(" ").toLowerCase();
    bestRows.push(tr);
  }
  bestTable.append(...bestRows);
  const counter = document.getElementById("best-count");
  function filterBest() {
    const words = document.getElementById("best-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const tr of bestRows) {
      tr.hidden = !words.every((w) => tr.dataset.search.includes(w));
      shown += tr.hidden ? 0 : 1;
    }
    counter.textContent = ` ${shown} of ${bestRows.length} tasks`;
  }
  document.getElementById("best-filter").addEventListener("input", filterBest);
  filterBest();

  // -- transcript ------------------------------------------------------------------
  function expandable(text) {
    const box = el("div");
    if (text === null) {
      box.append(el("pre", { text: "–" }));
      return box;
    }
    const pre = el("pre", { text: text.length > SHORT ? text.slice(0, SHORT) + " …" : text });
    box.append(pre);
    if (text.length > SHORT) {
      const b = el("button", { cls: "more", type: "button", text: `show all (${text.length} characters)` });
      b.addEventListener("click", () => {
        const open = b.dataset.open === "1";
        pre.textContent = open ? text.slice(0, SHORT) + " …" : text;
        b.textContent = open ? `show all (${text.length} characters)` : "show less";
        b.dataset.open = open ? "0" : "1";
      });
      box.append(b);
    }
    return box;
  }
  function transcript(i) {
    const n = nodes[i];
    const body = document.getElementById("transcript-body");
    const task = doc.best.find((b) => nodes[b[0]][1] === n[1]);
    const facts = el("p", { cls: "facts" },
      el("span", { text: `trajectory ${n[0]}` }), el("span", { text: `task ${str(n[1])}` }),
      el("span", { text: `outcome reward ${fmt(n[2])}` }), el("span", { text: `${fmt(n[3])} steps` }),
      el("span", { text: `generation ${fmt(n[4])}` }), el("span", { text: `operator ${fmt(str(n[5]))}` }),
      el("span", { text: `source ${fmt(str(n[6]))}` }));
    const parts = [facts];
    if (task) parts.push(el("p", { text: `question: ${fmt(str(task[3]))}` }));
    const ps = parentsOf.get(i) || [];
    const par = el("p", {}, ps.length ? "parents: " : "parents: none (a fresh rollout or an imported run)");
    ps.forEach((p, k) => par.append(k ? ", " : "", link(p.node), ` (${fmt(p.op)}, reward ${fmt(nodes[p.node][2])})`));
    if (cut.has(i)) par.append(" — more ancestors are not in this report");
    parts.push(par);
    const kids = childrenOf.get(i) || [];
    if (kids.length) {
      const ch = el("p", {}, "children in this report: ");
      kids.slice(0, 20).forEach((c, k) => ch.append(k ? ", " : "", link(c.node), ` (${fmt(c.op)})`));
      if (kids.length > 20) ch.append(` … and ${kids.length - 20} more`);
      parts.push(ch);
    }
    if (n[7] === null) {
      parts.push(el("p", { text: `The steps of this trajectory were left out to keep the report small; ` +
        `see them with: evoagent show ${m.store} ${n[0]}` }));
    } else {
      n[7].forEach(([th, act, obs, rw, valid, pr], k) => {
        parts.push(el("div", { cls: "step " + (valid === false ? "err" : "ok") },
          el("div", { cls: "label", text: `step ${k} · env reward ${fmt(rw)} · process reward ${fmt(pr)} · ` +
            (valid === false ? "error" : "valid") }),
          el("div", { cls: "label", text: "thought" }), expandable(str(th)),
          el("div", { cls: "label", text: "action" }), expandable(str(act)),
          el("div", { cls: "label", text: "observation" }), expandable(str(obs))));
      });
    }
    body.replaceChildren(...parts);
    for (const tr of bestRows) tr.classList.toggle("chosen", Number(tr.dataset.node) === i);
  }

  // -- lineage ---------------------------------------------------------------------
  const MAX_NODES = 400;
  function ancestry(root, maxDepth) {
    const depth = new Map([[root, 0]]);
    const edges = [];
    let frontier = [root];
    let d = 0;
    let more = false;
    while (frontier.length) {
      if (d >= maxDepth || depth.size >= MAX_NODES) {
        more = frontier.some((x) => (parentsOf.get(x) || []).length > 0 || cut.has(x));
        break;
      }
      d += 1;
      const next = [];
      for (const c of frontier) {
        for (const p of parentsOf.get(c) || []) {
          if (p.node === c) continue;
          edges.push({ child: c, parent: p.node, op: p.op });
          if (!depth.has(p.node)) { depth.set(p.node, d); next.push(p.node); }
        }
      }
      frontier = next;
    }
    if (!more) more = [...depth.keys()].some((x) => cut.has(x));
    return { depth, edges, more };
  }
  function svg(tag, attrs, title) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (title) { const t = document.createElementNS(SVG, "title"); t.textContent = title; e.append(t); }
    return e;
  }
  function rewardColor(r) {
    if (r === null || r === undefined) return "#bbb";
    const t = Math.max(0, Math.min(1, r));  // red (0) through yellow to green (1)
    const mix = (a, b, u) => Math.round(a + (b - a) * u);
    const [c0, c1, u] = t < 0.5 ? [[215, 48, 39], [254, 224, 139], t * 2] : [[254, 224, 139], [26, 152, 80], t * 2 - 1];
    return `rgb(${mix(c0[0], c1[0], u)},${mix(c0[1], c1[1], u)},${mix(c0[2], c1[2], u)})`;
  }
  // Columns by the longest path to the chosen one: every parent stands left of all its children, so
  // no edge runs inside a column (over the labels) or backwards.
  function columns(depth, edges) {
    const col = new Map([...depth.keys()].map((n) => [n, 0]));
    for (let round = 0; round <= depth.size; round++) {
      let moved = false;
      for (const e of edges) {
        if (col.get(e.parent) < col.get(e.child) + 1) { col.set(e.parent, col.get(e.child) + 1); moved = true; }
      }
      if (!moved) break;
    }
    return col;
  }
  function lineage(i) {
    const maxDepth = Math.max(1, Math.min(50, Number(document.getElementById("lineage-depth").value) || 8));
    const { depth, edges, more } = ancestry(i, maxDepth);
    const col = columns(depth, edges);
    const layers = new Map();
    for (const [n, d] of col) { if (!layers.has(d)) layers.set(d, []); layers.get(d).push(n); }
    const deepest = Math.max(...layers.keys());
    const tallest = Math.max(...[...layers.values()].map((l) => l.length));
    const W = 1300, colW = deepest ? (W - 180) / deepest : 0, rowH = 60, top0 = 44;
    const H = Math.max(190, tallest * rowH + top0 + 40);
    // Place layer by layer from the chosen one outwards; each parent near the mean height of its
    // already placed children (fewer crossings), then by reward.
    const pos = new Map();
    const kids = new Map();
    for (const e of edges) { if (!kids.has(e.parent)) kids.set(e.parent, []); kids.get(e.parent).push(e.child); }
    const pull = (n) => {
      const ys = (kids.get(n) || []).filter((c) => pos.has(c)).map((c) => pos.get(c)[1]);
      return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : H / 2;
    };
    for (let d = 0; d <= deepest; d++) {
      const members = layers.get(d) || [];
      const want = new Map(members.map((n) => [n, pull(n)]));
      members.sort((a, b) => want.get(a) - want.get(b) || (nodes[b][2] ?? -1e9) - (nodes[a][2] ?? -1e9) ||
        (nodes[a][0] < nodes[b][0] ? -1 : 1));
      const top = top0 + (H - top0 - 30 - members.length * rowH) / 2 + rowH / 2;
      members.forEach((n, k) => pos.set(n, [W - 90 - d * colW, top + k * rowH]));
    }
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
    const defs = svg("defs", {});
    const marker = svg("marker", { id: "lineage-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#888" }));
    const grad = svg("linearGradient", { id: "lineage-reward" });
    for (const r of [0, 0.25, 0.5, 0.75, 1]) grad.append(svg("stop", { offset: `${r * 100}%`, "stop-color": rewardColor(r) }));
    defs.append(marker, grad);
    root.append(defs);
    // The key: what colours and arrows mean.
    const key = svg("g", { class: "key" });
    const k0 = svg("text", { x: 10, y: 18 }); k0.textContent = "outcome reward 0";
    const k1 = svg("text", { x: 232, y: 18 }); k1.textContent = "1  (grey: none) · arrows run from parent to child · " +
      "ringed: the chosen trajectory · columns: generations of ancestry (longest path)";
    key.append(k0, svg("rect", { x: 122, y: 8, width: 104, height: 12, fill: "url(#lineage-reward)" }), k1);
    root.append(key);
    const radius = (n) => (n === i ? 11 : 8);
    for (const e of edges) {
      const [x0, y0] = pos.get(e.parent), [x1, y1] = pos.get(e.child);
      const len = Math.hypot(x1 - x0, y1 - y0) || 1, r0 = radius(e.parent) + 1, r1 = radius(e.child) + 2;
      root.append(svg("line", { x1: x0 + (x1 - x0) * r0 / len, y1: y0 + (y1 - y0) * r0 / len,
        x2: x1 - (x1 - x0) * r1 / len, y2: y1 - (y1 - y0) * r1 / len, "marker-end": "url(#lineage-arrow)" }, e.op || ""));
    }
    // Operator names on the edges, each moved along its edge until it overlaps no other label.
    const boxes = [];
    const free = (x, y, w) => boxes.every((b) => Math.abs(b[0] - x) * 2 >= b[2] + w || Math.abs(b[1] - y) >= 14);
    for (const [n] of depth) { const [x, y] = pos.get(n); boxes.push([x, y - 16, 110], [x, y, 24]); }
    for (const e of edges.length <= 80 ? edges : []) {
      const [x0, y0] = pos.get(e.parent), [x1, y1] = pos.get(e.child);
      const w = 7 * (e.op || "").length + 8;
      const at = [0.5, 0.35, 0.65, 0.25, 0.75, 0.15, 0.85].map((u) => [x0 + (x1 - x0) * u, y0 + (y1 - y0) * u - 5])
        .find(([x, y]) => free(x, y, w));
      if (!at) continue;  // no room: the edge's tooltip still names it
      boxes.push([at[0], at[1], w]);
      const t = svg("text", { x: at[0], y: at[1], "text-anchor": "middle", class: "op" });
      t.textContent = e.op || "";
      root.append(t);
    }
    for (const [n] of depth) {
      const [x, y] = pos.get(n);
      const info = `${nodes[n][0]}\n${str(nodes[n][1])} · reward ${fmt(nodes[n][2])} · generation ${fmt(nodes[n][4])} · ` +
        `${fmt(str(nodes[n][5]))} · ${fmt(nodes[n][3])} steps`;
      const c = svg("circle", { cx: x, cy: y, r: radius(n), fill: rewardColor(nodes[n][2]),
        class: n === i ? "root" : "" }, info);
      c.addEventListener("click", () => { location.hash = "traj=" + nodes[n][0]; });
      const t = svg("text", { x: x, y: y - 15, "text-anchor": "middle", class: "node" });
      t.textContent = `${fmt(nodes[n][2], 2)} · ${short(nodes[n][0])}`;
      root.append(c, t);
    }
    for (let d = 0; d <= deepest; d++) {
      const t = svg("text", { x: W - 90 - d * colW, y: H - 8, "text-anchor": "middle", class: "col" });
      t.textContent = d === 0 ? "chosen" : `${d} back`;
      root.append(t);
    }
    document.getElementById("lineage-plot").replaceChildren(root);
    document.getElementById("lineage-note").textContent = `${depth.size} trajectories, ${edges.length} edges` +
      (more ? `; more ancestors beyond depth ${maxDepth} (or not in this report)` : "");
  }

  // -- choosing a trajectory: #traj=ID ---------------------------------------------
  let current = null;
  function choose() {
    let hash = location.hash.slice(1);
    try { hash = decodeURIComponent(hash); } catch (e) { /* a malformed hash names no trajectory */ }
    const wanted = hash.startsWith("traj=") ? byId.get(hash.slice(5)) : undefined;
    const i = wanted !== undefined ? wanted : (current === null ? doc.default : null);
    if (i === null || i === undefined) return;
    current = i;
    transcript(i);
    lineage(i);
    if (wanted !== undefined) document.getElementById("transcript").scrollIntoView();
  }
  window.addEventListener("hashchange", choose);
  document.getElementById("lineage-depth").addEventListener("change", () => current !== null && lineage(current));
  choose();
  window.__report = { ready: true, ms: performance.now() };
  document.body.dataset.ready = "1";
})();
