"use strict";
// The report's episode list and episode pages. Episode text is untrusted: it is only ever written as text
// nodes (textContent, createTextNode), never parsed as HTML.
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const BLOCKS = JSON.parse(document.getElementById("blocks").textContent);
  const INDEX = DATA.index;
  const LOWER = new Set(DATA.lower_is_better);
  const PAGE = 200;
  const LONG_CHARS = 800, LONG_LINES = 14;
  const cache = new Map();
  let shown = PAGE, matches = [], openIndex = -1;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of [].concat(children === undefined ? [] : children)) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function num(v, digits) {
    return typeof v === "number" && isFinite(v) ? (Number.isInteger(v) ? String(v) : v.toFixed(digits === undefined ? 3 : digits)) : (v === null || v === undefined ? "-" : String(v));
  }
  function text(v) {
    if (typeof v === "string") return v;
    try { return JSON.stringify(v, null, 2); } catch (e) { return String(v); }
  }

  // ---------- the list ----------
  function fillSelect(id, values) {
    const select = document.getElementById(id);
    for (const v of [...new Set(values)].sort()) select.appendChild(el("option", {value: v}, v));
  }
  fillSelect("f-env", INDEX.map(r => r.env));
  fillSelect("f-agent", INDEX.map(r => r.agent));
  fillSelect("f-hack", INDEX.flatMap(r => r.hack));

  function filtered() {
    const env = document.getElementById("f-env").value, agent = document.getElementById("f-agent").value;
    const result = document.getElementById("f-result").value, hack = document.getElementById("f-hack").value;
    const task = document.getElementById("f-task").value.trim().toLowerCase();
    const out = [];
    for (let i = 0; i < INDEX.length; i++) {
      const r = INDEX[i];
      if (env && r.env !== env) continue;
      if (agent && r.agent !== agent) continue;
      if (result && r.result !== result) continue;
      if (hack === "any" && !r.hack.length) continue;
      if (hack === "none" && r.hack.length) continue;
      if (hack && hack !== "any" && hack !== "none" && !r.hack.includes(hack)) continue;
      if (task && !r.task.toLowerCase().includes(task)) continue;
      out.push(i);
    }
    return out;
  }
  function row(i) {
    const r = INDEX[i];
    const flags = r.hack.map(h => el("span", {class: "chip bad"}, h));
    if (r.error) flags.push(el("span", {class: "chip warn", title: r.error}, r.error.split(":")[0] + " error"));
    const tr = el("tr", {"data-index": String(i), title: "seed " + num(r.seed) + " · return " + num(r.ret)}, [
      el("td", {}, String(i)), el("td", {}, r.env), el("td", {}, r.agent), el("td", {class: "task"}, r.task),
      el("td", {class: r.result}, r.result === "error" ? "error" : num(r.outcome, 2)),
      el("td", {}, String(r.turns)), el("td", {}, String(r.calls)), el("td", {}, flags)]);
    if (i === openIndex) tr.classList.add("open");
    tr.addEventListener("click", () => openEpisode(i));
    return tr;
  }
  function renderList() {
    const body = document.querySelector("#episode-list tbody");
    const frag = document.createDocumentFragment();
    for (const i of matches.slice(0, shown)) frag.appendChild(row(i));
    body.replaceChildren(frag);
    document.getElementById("count").textContent = matches.length + " of " + INDEX.length + " episodes" +
      (matches.length > shown ? " (showing " + shown + ")" : "");
    document.getElementById("more").hidden = matches.length <= shown;
  }
  function refilter() { shown = PAGE; matches = filtered(); renderList(); }
  for (const id of ["f-env", "f-agent", "f-result", "f-hack"]) document.getElementById(id).addEventListener("change", refilter);
  document.getElementById("f-task").addEventListener("input", refilter);
  document.getElementById("filters").addEventListener("submit", e => e.preventDefault());
  document.getElementById("more").addEventListener("click", () => { shown += PAGE; renderList(); });

  // ---------- lazy loading ----------
  async function block(b) {
    if (!cache.has(b)) {
      const bytes = Uint8Array.from(atob(BLOCKS[b]), c => c.charCodeAt(0));
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      cache.set(b, new Response(stream).text().then(JSON.parse));
    }
    return cache.get(b);
  }
  async function episode(i) {
    const eps = await block(Math.floor(i / DATA.block_size));
    return eps[i % DATA.block_size];
  }

  // ---------- rendering an episode ----------
  function looksLikeDiff(s) { return /^(diff --git |--- |\+\+\+ )/m.test(s) && /^@@ /m.test(s); }
  function diffBlock(s) {
    const pre = el("pre", {class: "diff"});
    for (const line of s.split("\n")) {
      const cls = line.startsWith("@@") ? "hunk" : (line.startsWith("+") && !line.startsWith("+++")) ? "add" :
        (line.startsWith("-") && !line.startsWith("---")) ? "del" : null;
      pre.appendChild(cls ? el("span", {class: cls}, line) : document.createTextNode(line + "\n"));
    }
    return pre;
  }
  function sqlTable(s) {
    // execute_sql's result: "a | b" lines, then "(N rows...)"; anything else stays text
    const lines = s.split("\n");
    if (lines.length < 2 || !/^\((more than )?[\d,]+ rows?/.test(lines[lines.length - 1])) return null;
    const rows = lines.slice(0, -1).map(l => l.split(" | "));
    if (!rows.length || rows.some(r => r.length !== rows[0].length)) return null;
    const table = el("table", {class: "sql"}, [el("thead", {}, el("tr", {}, rows[0].map(c => el("th", {}, c)))),
      el("tbody", {}, rows.slice(1).map(r => el("tr", {}, r.map(c => el("td", {}, c)))))]);
    return el("div", {}, [table, el("div", {class: "muted"}, lines[lines.length - 1])]);
  }
  function textBlock(s, opts) {
    if (typeof s !== "string" && typeof s !== "object") return el("span", {class: "value"}, String(s));
    s = text(s);
    if (!s.includes("\n") && s.length <= 100 && !(opts && opts.pre)) return el("span", {class: "value"}, s);
    const body = (opts && opts.sql && sqlTable(s)) || (looksLikeDiff(s) ? diffBlock(s) : el("pre", {}, s));
    const lines = s.split("\n").length;
    if (s.length <= LONG_CHARS && lines <= LONG_LINES) return body;
    const first = s.split("\n", 1)[0].slice(0, 90);
    return el("details", {}, [el("summary", {}, first + " … (" + lines + " lines, " + s.length + " chars)"), body]);
  }
  function callBox(call) {
    const args = call && typeof call.arguments === "object" && call.arguments !== null ? call.arguments : null;
    const rows = args ? Object.entries(args).map(([k, v]) => el("tr", {}, [el("td", {}, k),
      el("td", {}, (k === "patch" || k === "diff") && typeof v === "string" ? diffBlock(v) : textBlock(v))])) : [];
    const failed = call && call.error;
    return el("div", {class: "call" + (failed ? " failed" : "")}, [
      el("span", {class: "name"}, String(call && call.name !== undefined ? call.name : "?")),
      failed ? el("span", {class: "chip bad"}, "error") : null,
      args ? el("table", {class: "args"}, el("tbody", {}, rows)) : (call && call.arguments !== undefined ? textBlock(call.arguments) : null)]);
  }
  function spark(values, lower) {
    const w = 18, h = 26, n = values.length;
    const finite = values.filter(v => typeof v === "number" && isFinite(v));
    const max = Math.max(1e-9, ...finite.map(Math.abs));
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark"); svg.setAttribute("width", String(n * w)); svg.setAttribute("height", String(h));
    values.forEach((v, i) => {
      const rect = document.createElementNS(ns, "rect");
      const absent = !(typeof v === "number" && isFinite(v));
      const bh = absent ? 0 : Math.max(2, Math.abs(v) / max * (h - 2));
      rect.setAttribute("x", String(i * w + 2)); rect.setAttribute("width", String(w - 4));
      rect.setAttribute("y", String(h - (absent ? 1 : bh))); rect.setAttribute("height", String(absent ? 1 : bh));
      rect.setAttribute("fill", absent ? "#d8dde2" : lower ? "#b42318" : "#0969da");
      const title = document.createElementNS(ns, "title");
      title.textContent = "step " + (i + 1) + ": " + (absent ? "not reported" : num(v));
      rect.appendChild(title); svg.appendChild(rect);
    });
    return svg;
  }
  function componentChart(steps) {
    const keys = [...new Set(steps.flatMap(s => Object.keys(s.reward_components || {})))].sort();
    if (!keys.length) return el("p", {class: "muted"}, "No reward components were recorded.");
    return el("div", {class: "components"}, keys.map(k => {
      const vals = steps.map(s => (s.reward_components || {})[k]);
      const got = vals.filter(v => typeof v === "number");
      const sum = got.reduce((a, b) => a + b, 0);
      const odd = vals.map((v, i) => v !== undefined && !(typeof v === "number" && isFinite(v)) ? "step " + (i + 1) + ": " + v : null)
        .filter(v => v);
      return el("div", {class: "comp-row"}, [el("span", {}, k + (LOWER.has(k) ? " ↓" : "")), spark(vals, LOWER.has(k)),
        el("span", {class: odd.length ? "fail" : "muted"}, "sum " + num(sum) + (odd.length ? " · not finite: " + odd.join(", ") : ""))]);
    }));
  }
  function breakdown(steps, wrappers) {
    const parts = [...new Set(steps.flatMap(s => Object.keys(s.reward_breakdown || {})))].sort();
    const used = (wrappers || []).filter(w => !["TimeLimit", "OrderEnforcing", "PassiveEnvChecker"].includes(w));
    if (!parts.length) return el("p", {class: "muted"}, used.length ? "Wrappers " + used.join(", ") + " recorded no breakdown." :
      "No reward wrapper was used: the reward is the env's sparse outcome.");
    const head = el("tr", {}, [el("th", {}, "step"), ...parts.map(p => el("th", {}, p)), el("th", {}, "reward")]);
    const rows = steps.map((s, i) => el("tr", {}, [el("td", {}, String(i + 1)),
      ...parts.map(p => el("td", {}, num((s.reward_breakdown || {})[p]))), el("td", {}, num(s.reward))]));
    return el("div", {}, [el("p", {class: "muted"}, "Wrappers (outermost first): " + (used.join(", ") || "-")),
      el("table", {class: "grid"}, [el("thead", {}, head), el("tbody", {}, rows)])]);
  }
  function itemsTable(items, kind) {
    if (!Array.isArray(items) || !items.length) return el("p", {class: "muted"}, "No " + kind + " recorded.");
    const keys = [...new Set(items.flatMap(it => it && typeof it === "object" ? Object.keys(it) : []))]
      .filter(k => k !== "passed" && k !== "id" && k !== "criterion");
    const head = el("tr", {}, [el("th", {class: "ok"}, "ok"), el("th", {}, kind === "units" ? "unit" : "criterion"), ...keys.map(k => el("th", {}, k))]);
    const rows = items.map(it => {
      const o = it && typeof it === "object" ? it : {id: it};
      return el("tr", {}, [el("td", {class: o.passed ? "pass" : "fail"}, o.passed ? "✓" : "✗"),
        el("td", {}, text(o.id !== undefined ? o.id : o.criterion !== undefined ? o.criterion : "")),
        ...keys.map(k => el("td", {}, o[k] === undefined ? "" : textBlock(o[k])))]);
    });
    const table = el("table", {class: "grid " + kind}, [el("thead", {}, head), el("tbody", {}, rows)]);
    const passed = items.filter(it => it && it.passed).length;
    if (items.length <= 12) return table;
    // long lists (a SWE task's hundred tests): the failures first, the whole list one click away
    const failed = items.filter(it => !(it && it.passed)).map(it => text(it && it.id !== undefined ? it.id : it));
    return el("div", {}, [failed.length ? el("p", {class: "fail"}, "failed: " + failed.slice(0, 20).join(", ") +
      (failed.length > 20 ? " …" : "")) : null,
      el("details", {}, [el("summary", {}, items.length + " " + kind + ": " + passed + " passed, " + (items.length - passed) + " failed"), table])]);
  }
  function renders(ep) {
    const imgs = Array.isArray(ep.renders) ? ep.renders.filter(r => typeof r === "string" && r.startsWith("data:image/png;base64,")) : [];
    if (!imgs.length) return ep.env_id.includes("CAD") ? el("p", {class: "muted"}, "No render recorded: the trajectory holds the program and its measurements, not pictures.") : null;
    return el("div", {class: "plots"}, imgs.map(src => el("img", {src: src, alt: "render"})));
  }
  function transcript(ep) {
    const parts = [];
    if (ep.system_prompt) parts.push(el("div", {class: "turn system"}, [el("div", {class: "role"}, "system"), textBlock(ep.system_prompt)]));
    parts.push(el("div", {class: "turn user"}, [el("div", {class: "role"}, "task"), textBlock(ep.reset_observation, {pre: true})]));
    (ep.steps || []).forEach((s, i) => {
      const calls = Array.isArray(s.tool_calls) ? s.tool_calls : [];
      const action = s.action;
      const said = typeof action === "string" ? action : null;
      parts.push(el("div", {class: "turn assistant"}, [el("div", {class: "role"}, "assistant · turn " + (i + 1)),
        said !== null && said.trim() ? textBlock(said, {pre: true}) : null,
        said === null && !calls.length ? textBlock(action) : null,
        calls.length ? el("div", {class: "calls"}, calls.map(callBox)) : null]));
      const sql = calls.some(c => c && /sql/.test(String(c.name)));
      parts.push(el("div", {class: "turn tool"}, [el("div", {class: "role"}, "observation · reward " + num(s.reward) +
        (s.terminated ? " · terminated" : "") + (s.truncated ? " · truncated" : "")), textBlock(s.observation, {sql: sql, pre: true}),
        Array.isArray(s.reward_issues) && s.reward_issues.length ? el("p", {class: "fail"}, "reward issues: " + s.reward_issues.join("; ")) : null]));
    });
    return parts;
  }
  async function openEpisode(i) {
    openIndex = i;
    for (const tr of document.querySelectorAll("#episode-list tr.open")) tr.classList.remove("open");
    const tr = document.querySelector('#episode-list tr[data-index="' + i + '"]');
    if (tr) tr.classList.add("open");
    const pane = document.getElementById("episode");
    pane.replaceChildren(el("p", {class: "muted"}, "loading episode " + i + " …"));
    let ep;
    try { ep = await episode(i); } catch (e) {
      pane.replaceChildren(el("p", {class: "fail"}, "episode " + i + " could not be read: " + e)); return;
    }
    const r = INDEX[i];
    const tools = DATA.tools[ep.env_id] || [];
    pane.replaceChildren(...[
      el("h3", {id: "episode-title"}, "#" + i + " · " + r.env + " · " + r.agent + " · task " + r.task),
      el("p", {}, [el("span", {class: r.result}, r.result), " · outcome " + num(ep.outcome, 2) + " · return " + num(ep["return"]) +
        " · " + r.turns + " turn(s), " + r.calls + " tool call(s) · seed " + num(ep.seed) + " · " + num(ep.episode_time_s, 2) + " s · from " + ep.source]),
      ep.infra_error ? el("p", {class: "error"}, "infra error: " + text(ep.infra_error)) : null,
      ep.agent_error ? el("p", {class: "error"}, "agent error: " + text(ep.agent_error)) : null,
      Array.isArray(ep.hack_flags) && ep.hack_flags.length ? el("p", {class: "fail"}, "hack flags: " + ep.hack_flags.join(", ")) : null,
      el("h3", {}, "Reward components per step"), componentChart(ep.steps || []),
      el("h3", {}, "Transcript"), el("div", {id: "transcript"}, transcript(ep)),
      el("h3", {}, "Units"), itemsTable(ep.units, "units"),
      el("h3", {}, "Checklist"), itemsTable(ep.checklist, "checklist"),
      el("h3", {}, "Reward breakdown"), breakdown(ep.steps || [], ep.inner_wrappers),
      renders(ep) ? el("h3", {}, "Renders") : null, renders(ep),
      tools.length ? el("details", {}, [el("summary", {}, tools.length + " tool(s) offered"),
        el("ul", {}, tools.map(t => el("li", {}, [el("code", {}, String((t.function || t).name)), " ", String((t.function || t).description || "")])))]) : null].filter(n => n));
  }

  refilter();
  if (location.hash.startsWith("#episode-")) {
    const i = Number(location.hash.slice(9));
    if (Number.isInteger(i) && i >= 0 && i < INDEX.length) openEpisode(i);
  }
  document.body.setAttribute("data-ready", "1");
})();
