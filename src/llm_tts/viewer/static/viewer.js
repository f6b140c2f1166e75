// The llm-tts trace viewer. Plain JavaScript, no library, no network but this page's own server.
// Everything a model wrote is hostile input: it reaches the page only as text nodes
// (textContent / createTextNode), never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const MODE = document.body.dataset.mode; // "service" (the llm-tts service) or "files" (llm-tts view)
  let apiKey = ""; // the service's key, typed by the user: kept in memory only, never in a URL
  let current = null; // the trace drawn now

  // -- small DOM helpers ------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function clear(node) { node.replaceChildren(); return node; }
  function num(x, digits) { return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–"; }
  function preview(text, n) {
    const flat = String(text || "").replace(/\s+/g, " ").trim();
    return flat.length > n ? flat.slice(0, n - 1) + "…" : flat;
  }
  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  // -- the trace ---------------------------------------------------------------------------------
  function selectedPath(trace) {
    const byId = new Map(trace.nodes.map((n) => [n.id, n]));
    const path = new Set();
    let id = trace.run && trace.run.selected;
    while (id && byId.has(id) && !path.has(id)) { path.add(id); id = byId.get(id).parent; }
    return path;
  }

  function drawTrace(trace, title) {
    if (!trace || !Array.isArray(trace.nodes) || typeof trace.run !== "object") {
      showError("not an llm_tts.trace: it needs 'run' and 'nodes'");
      return;
    }
    showError("");
    current = trace;
    $("empty").hidden = true;
    $("trace-body").hidden = false;
    $("trace-title").textContent = title || "Trace";
    drawSummary(trace);
    drawVote(trace);
    drawTree(trace);
    drawEvents(trace);
    const start = trace.run.selected || (trace.nodes[0] && trace.nodes[0].id);
    if (start) showNode(start, false);
    performance.mark("llm-tts:trace-drawn"); // bench/bench_viewer.py reads the load time from it
  }

  function drawSummary(trace) {
    const run = trace.run;
    const usage = run.usage || {};
    const labels = trace.labels || {};
    const rows = [
      ["Strategy", [run.strategy, run.scorer].filter(Boolean).join(" / ")],
      ["Model", run.model],
      ["Answer", run.answer],
      ["Selected node", run.selected],
      ["Expected", [labels.gold, labels.expected, labels.reference].find((x) => x !== undefined && x !== null)],
      ["Correct", labels.correct === undefined ? null : labels.correct ? "yes" : "no"],
      ["Stopped by", run.stopped_by],
      ["Elapsed", typeof run.elapsed_s === "number" ? num(run.elapsed_s, 2) + " s" : null],
      ["Tokens", usage.prompt_tokens !== undefined ? `${usage.prompt_tokens} prompt, ${usage.completion_tokens} generated` : null],
      ["Request id", run.request_id],
      ["Started", run.started_at],
    ];
    const dl = clear($("summary"));
    for (const [name, value] of rows) {
      if (value === null || value === undefined || value === "") continue;
      dl.append(el("dt", {}, name), el("dd", { "data-field": name.toLowerCase() }, value));
    }
    // The TTS fields in force: many, so folded.
    const config = run.config && typeof run.config === "object" ? Object.entries(run.config) : [];
    $("config-section").hidden = !config.length;
    $("config-count").textContent = `(${config.length} fields)`;
    const fields = clear($("config"));
    for (const [name, value] of config) fields.append(el("dt", {}, name), el("dd", {}, JSON.stringify(value)));
  }

  function drawVote(trace) {
    const vote = trace.run.vote;
    $("vote-section").hidden = !(Array.isArray(vote) && vote.length);
    const body = clear($("vote").tBodies[0]);
    if (!Array.isArray(vote)) return;
    const total = vote.reduce((s, g) => s + (typeof g.weight === "number" ? g.weight : g.count || 0), 0) || 1;
    vote.forEach((group, i) => {
      const share = (typeof group.weight === "number" ? group.weight : group.count || 0) / total;
      const winner = group.answer === trace.run.answer || (i === 0 && trace.run.answer === undefined);
      const row = el("tr", { className: winner ? "winner" : null, "data-answer": group.answer },
        el("td", {}, group.answer === "" ? "(no answer)" : group.answer),
        el("td", {}, group.count),
        el("td", {}, num(group.weight, 3)),
        el("td", {}, el("meter", { min: 0, max: 1, value: share.toFixed(4), "aria-label": `share ${Math.round(share * 100)}%` }), ` ${Math.round(share * 100)}%`));
      body.append(row);
    });
  }

  // The tree is WAI-ARIA's tree pattern: one tab stop (roving tabindex), arrows move, Right and
  // Left open and close, Home and End jump, Enter or Space show the node.
  function drawTree(trace) {
    const children = new Map();
    const roots = [];
    const ids = new Set(trace.nodes.map((n) => n.id));
    for (const node of trace.nodes) {
      if (node.parent && ids.has(node.parent)) {
        if (!children.has(node.parent)) children.set(node.parent, []);
        children.get(node.parent).push(node);
      } else roots.push(node);
    }
    const path = selectedPath(trace);
    const tree = clear($("tree"));
    $("tree-count").textContent = `(${trace.nodes.length} nodes)`;
    const build = (node, level) => {
      const kids = children.get(node.id) || [];
      const status = node.kind === "prompt" ? "prompt" : node.status || "";
      const item = el("li", {
        role: "treeitem", tabindex: -1, "aria-level": level, "aria-selected": "false",
        "aria-expanded": kids.length ? String(path.has(node.id) || level < 3 || kids.length < 5) : null,
        "data-node-id": node.id, "data-status": status,
        className: [path.has(node.id) ? "on-path" : "", status ? "status-" + status : ""].join(" ").trim(),
      });
      const label = node.kind === "prompt" ? null : node.kind === "step" ? `step ${node.step ?? "?"}` : node.kind;
      const row = el("span", { className: "row" },
        el("span", { className: "twisty", "aria-hidden": "true" }, kids.length ? "▸" : "·"),
        el("span", { className: "badge " + status }, status || "?"),
        label ? el("span", { className: "kind" }, label) : null,
        node.score !== undefined && node.score !== null ? el("span", { className: "score", title: "aggregated score" }, num(node.score, 3)) : null,
        node.answer ? el("span", { className: "answer" }, "→ " + preview(node.answer, 24)) : null,
        (node.code_executions || []).length ? el("span", { className: "muted", title: "code executions" }, `⌘${node.code_executions.length}`) : null,
        el("span", { className: "preview" }, preview(node.text, 60)));
      item.append(row);
      if (kids.length) {
        const group = el("ul", { role: "group" });
        for (const kid of kids) group.append(build(kid, level + 1));
        item.append(group);
      }
      updateTwisty(item);
      return item;
    };
    for (const root of roots) tree.append(build(root, 1));
    const first = tree.querySelector('[role="treeitem"]');
    if (first) first.tabIndex = 0;
  }

  function updateTwisty(item) {
    const twisty = item.querySelector(":scope > .row > .twisty");
    if (item.hasAttribute("aria-expanded")) twisty.textContent = item.getAttribute("aria-expanded") === "true" ? "▾" : "▸";
  }
  function visibleItems() {
    return [...$("tree").querySelectorAll('[role="treeitem"]')].filter((item) => {
      for (let p = item.parentElement.closest('[role="treeitem"]'); p; p = p.parentElement.closest('[role="treeitem"]')) {
        if (p.getAttribute("aria-expanded") === "false") return false;
      }
      return true;
    });
  }
  function focusItem(item) {
    for (const other of $("tree").querySelectorAll('[role="treeitem"][tabindex="0"]')) other.tabIndex = -1;
    item.tabIndex = 0;
    item.focus();
  }
  function setExpanded(item, open) {
    if (!item.hasAttribute("aria-expanded")) return false;
    item.setAttribute("aria-expanded", String(open));
    updateTwisty(item);
    return true;
  }

  $("tree").addEventListener("click", (event) => {
    const item = event.target.closest('[role="treeitem"]');
    if (!item) return;
    if (event.target.closest(".twisty")) setExpanded(item, item.getAttribute("aria-expanded") !== "true");
    focusItem(item);
    showNode(item.dataset.nodeId, false);
  });
  $("tree").addEventListener("keydown", (event) => {
    const item = event.target.closest('[role="treeitem"]');
    if (!item) return;
    const items = visibleItems();
    const at = items.indexOf(item);
    let handled = true;
    switch (event.key) {
      case "ArrowDown": if (at + 1 < items.length) focusItem(items[at + 1]); break;
      case "ArrowUp": if (at > 0) focusItem(items[at - 1]); break;
      case "Home": focusItem(items[0]); break;
      case "End": focusItem(items[items.length - 1]); break;
      case "ArrowRight":
        if (item.getAttribute("aria-expanded") === "false") setExpanded(item, true);
        else if (item.getAttribute("aria-expanded") === "true") focusItem(item.querySelector('[role="treeitem"]'));
        break;
      case "ArrowLeft": {
        if (item.getAttribute("aria-expanded") === "true") setExpanded(item, false);
        else {
          const parent = item.parentElement.closest('[role="treeitem"]');
          if (parent) focusItem(parent);
        }
        break;
      }
      case "Enter": case " ": showNode(item.dataset.nodeId, false); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  // A node's details: its scores and status, its text (thinking folded), its code and outputs.
  function showNode(id, focus) {
    if (!current) return;
    const node = current.nodes.find((n) => n.id === id);
    if (!node) return;
    for (const item of $("tree").querySelectorAll('[aria-selected="true"]')) item.setAttribute("aria-selected", "false");
    const item = $("tree").querySelector(`[data-node-id="${CSS.escape(id)}"]`);
    if (item) item.setAttribute("aria-selected", "true");
    if (focus && item) focusItem(item);
    const box = clear($("node"));
    const facts = [
      ["Node", `${node.id} (${node.kind}${node.step !== undefined && node.step !== null ? ", step " + node.step : ""})`],
      ["Status", node.status],
      ["Why", node.reason],
      ["Step score", node.step_score !== undefined && node.step_score !== null ? num(node.step_score, 4) : null],
      ["Path score", node.score !== undefined && node.score !== null ? num(node.score, 4) : null],
      ["Answer", node.answer],
      ["Part", node.part],
      ["Tokens", Array.isArray(node.tokens) ? `${node.tokens[0]}–${node.tokens[1]} (${node.tokens[1] - node.tokens[0]})` : null],
      ["Finish", node.finish_reason],
      ["Time", typeof node.elapsed_s === "number" ? num(node.elapsed_s, 3) + " s" : null],
    ];
    const dl = el("dl", { className: "summary" });
    for (const [name, value] of facts) {
      if (value === null || value === undefined || value === "") continue;
      dl.append(el("dt", {}, name), el("dd", {}, value));
    }
    box.append(dl);
    appendText(box, node);
    // A step's text is one piece of its path's completion: the whole completion is one click away.
    const path = [];
    for (let at = node; at && at.kind === "step" && !path.includes(at); at = current.nodes.find((n) => n.id === at.parent)) path.unshift(at);
    if (path.length > 1) {
      const whole = el("details", { className: "whole-path" }, el("summary", {}, `The path's whole text (${path.length} steps)`));
      for (const step of path) appendText(whole, step);
      box.append(whole);
    }
    (node.code_executions || []).forEach((run, i) => {
      const head = `Code ${i + 1}: ${run.status || "?"}${typeof run.elapsed_s === "number" ? ", " + num(run.elapsed_s, 3) + " s" : ""}`;
      const size = typeof run.output_bytes === "number" ? `output as the model saw it (${run.output_bytes} bytes in all${run.output_sha256 ? ", sha256 " + String(run.output_sha256).slice(0, 12) + "…" : ""})` : "output";
      box.append(el("details", { className: "code-run", open: "" },
        el("summary", {}, head),
        el("pre", { className: "code" }, run.code || ""),
        el("div", { className: "out-label" }, size),
        el("pre", { className: "output" }, run.output || "")));
    });
  }

  // Thinking is folded: a node whose part is "thinking", and any <think>...</think> inside a text.
  function appendText(box, node) {
    const text = String(node.text || "");
    if (node.part === "thinking") {
      box.append(el("details", { className: "thinking" }, el("summary", {}, `Thinking (${text.length} characters)`), el("pre", { className: "text" }, text)));
      return;
    }
    const pieces = text.split(/(<think>[\s\S]*?(?:<\/think>|$))/);
    for (const piece of pieces) {
      if (!piece) continue;
      if (piece.startsWith("<think>")) {
        const inner = piece.replace(/^<think>/, "").replace(/<\/think>$/, "");
        box.append(el("details", { className: "thinking" }, el("summary", {}, `Thinking (${inner.length} characters)`), el("pre", { className: "text" }, inner)));
      } else box.append(el("pre", { className: "text" }, piece));
    }
  }

  function drawEvents(trace) {
    const events = Array.isArray(trace.events) ? trace.events : [];
    $("events-count").textContent = `(${events.length})`;
    const body = clear($("events").tBodies[0]);
    for (const event of events) {
      const detail = event.detail && Object.keys(event.detail).length ? JSON.stringify(event.detail) : "";
      body.append(el("tr", {},
        el("td", {}, num(event.t, 3)), el("td", {}, event.type), el("td", {}, event.step ?? ""),
        el("td", {}, (event.nodes || []).join(" ")), el("td", {}, preview(detail, 160))));
    }
  }

  // -- the runs of a file or folder (llm-tts view) -----------------------------------------------
  let runs = [];
  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }
  function runLabel(run, i) {
    return run.label || `run ${i + 1}`;
  }
  async function loadRuns() {
    const data = await getJSON("api/runs");
    runs = data.runs || [];
    $("source").textContent = data.source || "";
    $("runs-section").hidden = runs.length < 2;
    const list = clear($("runs"));
    const judged = runs.filter((r) => r.correct === true || r.correct === false);
    $("runs-score").textContent = judged.length ? `(${judged.filter((r) => r.correct).length}/${judged.length} correct)` : `(${runs.length})`;
    runs.forEach((run, i) => {
      const verdict = run.correct === true ? "correct" : run.correct === false ? "wrong" : "";
      list.append(el("li", { role: "option", id: `run-${i}`, "aria-selected": "false", "data-index": i, className: verdict },
        el("span", { className: "mark", "aria-label": verdict || "not judged" }, verdict === "correct" ? "✓" : verdict === "wrong" ? "✗" : "·"),
        el("span", { className: "label", title: [run.label, run.detail].filter(Boolean).join("\n") }, runLabel(run, i),
          run.detail ? el("span", { className: "muted detail" }, run.detail) : null)));
    });
    if (runs.length) await openRun(0);
  }
  async function openRun(i) {
    for (const item of $("runs").querySelectorAll('[aria-selected="true"]')) item.setAttribute("aria-selected", "false");
    const item = $(`run-${i}`);
    if (item) {
      item.setAttribute("aria-selected", "true");
      $("runs").setAttribute("aria-activedescendant", item.id);
      item.scrollIntoView({ block: "nearest" });
    }
    try {
      drawTrace(await getJSON(`api/runs/${i}`), runLabel(runs[i], i));
    } catch (err) {
      showError(String(err.message || err));
    }
  }
  $("runs").addEventListener("click", (event) => {
    const item = event.target.closest("[role=option]");
    if (item) openRun(Number(item.dataset.index));
  });
  $("runs").addEventListener("keydown", (event) => {
    const active = $("runs").querySelector('[aria-selected="true"]');
    const at = active ? Number(active.dataset.index) : -1;
    let next = null;
    if (event.key === "ArrowDown") next = Math.min(at + 1, runs.length - 1);
    else if (event.key === "ArrowUp") next = Math.max(at - 1, 0);
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = runs.length - 1;
    if (next !== null && next >= 0) { event.preventDefault(); if (next !== at) openRun(next); }
  });

  // A trace file opened from disk is parsed here, in the page; nothing is sent anywhere.
  $("file-input").addEventListener("change", async () => {
    const file = $("file-input").files[0];
    if (!file) return;
    try {
      const text = await file.text();
      let data;
      try { data = JSON.parse(text); } catch (_) { data = JSON.parse(text.split("\n").find((line) => line.trim()) || ""); } // JSONL: its first row
      if (data && Array.isArray(data.choices) && data.choices[0]) data = data.choices[0]; // a saved chat completion
      if (data && data.tts_metadata && data.tts_metadata.trace) data = data.tts_metadata.trace;
      if (data && data.trace && data.nodes === undefined) data = data.trace;
      drawTrace(data, file.name);
    } catch (err) {
      showError(`${file.name}: ${err.message || err}`);
    }
  });

  // -- live runs against the service -------------------------------------------------------------
  function authHeaders() {
    return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  }
  async function loadModels() {
    const response = await fetch("/v1/models", { headers: authHeaders() });
    if (response.status === 401) {
      $("key-row").hidden = false;
      $("live-status").textContent = "This server needs its API key: type it above, then Run.";
      return false;
    }
    if (!response.ok) throw new Error(`/v1/models: HTTP ${response.status}`);
    const select = clear($("live-model"));
    for (const model of (await response.json()).data || []) select.append(el("option", { value: model.id }, model.id));
    return true;
  }
  function progressRow(event) {
    const total = (event.live_beams || 0) + (event.finished || 0);
    return el("li", { "data-step": event.step },
      el("span", {}, `step ${event.step}`),
      el("span", {},
        el("meter", { min: 0, max: Math.max(total, 1), value: event.finished || 0, "aria-label": `${event.finished} finished of ${total}` }),
        ` ${event.live_beams} live, ${event.finished} finished, best ${num(event.best_score, 3)}`,
        event.message ? el("span", { className: "muted" }, " " + event.message) : null));
  }
  // Reads the SSE stream of a chat completion: progress chunks, the answer, the last chunk's trace.
  async function runLive(body) {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try { message = (await response.json()).error.message || message; } catch (_) { /* not JSON */ }
      if (response.status === 401) $("key-row").hidden = false;
      throw new Error(message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let answer = "";
    let trace = null;
    const progress = clear($("progress"));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const payload = line.slice(6);
          if (payload === "[DONE]") continue;
          const chunk = JSON.parse(payload);
          if (chunk.error) throw new Error(chunk.error.message || "the run failed");
          const choice = (chunk.choices || [])[0] || {};
          if (choice.tts_progress) {
            progress.append(progressRow(choice.tts_progress));
            $("live-status").textContent = `step ${choice.tts_progress.step}: ${choice.tts_progress.live_beams} live, ${choice.tts_progress.finished} finished`;
            if (choice.tts_progress.trace) drawTrace(choice.tts_progress.trace, "Live run (in progress)");
          }
          if (choice.delta && typeof choice.delta.content === "string") answer += choice.delta.content;
          if (choice.tts_metadata && choice.tts_metadata.trace) trace = choice.tts_metadata.trace;
        }
      }
    }
    $("live-status").textContent = `done: ${preview(answer, 80)}`;
    if (trace) drawTrace(trace, "Live run");
    else showError("the server sent no trace (tts_trace is not supported by this server)");
  }
  $("live-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    apiKey = $("api-key").value.trim();
    const button = $("live-run");
    button.disabled = true;
    try {
      if (!$("live-model").options.length && !(await loadModels())) return;
      let extra = {};
      const fields = $("live-fields").value.trim();
      if (fields) {
        try { extra = JSON.parse(fields); } catch (err) { throw new Error(`More fields: not JSON (${err.message})`); }
      }
      $("live-status").textContent = "running…";
      await runLive({
        ...extra,
        model: $("live-model").value,
        messages: [{ role: "user", content: $("live-prompt").value }],
        tts_strategy: $("live-strategy").value,
        stream: true,
        tts_trace: true,
      });
    } catch (err) {
      $("live-status").textContent = "";
      showError(String(err.message || err));
    } finally {
      button.disabled = false;
    }
  });

  // -- start -------------------------------------------------------------------------------------
  async function start() {
    if (MODE === "service") {
      $("live").hidden = false;
      $("source").textContent = "live runs on this server";
      const select = $("live-strategy");
      for (const name of (document.body.dataset.strategies || "").split(",").filter(Boolean)) {
        select.append(el("option", { value: name, selected: name === "beam_search" ? "" : null }, name));
      }
      try { await loadModels(); } catch (err) { showError(String(err.message || err)); }
    } else if (MODE === "files") {
      try { await loadRuns(); } catch (err) { showError(String(err.message || err)); }
    }
  }
  start();
})();
