/* Flowwatch superadmin metrics page: live over the websocket, polling when it is down.
 *
 * States of the indicator (data-state on #live-indicator):
 *   connecting   first websocket attempt, or open but no snapshot received yet
 *   live         a snapshot arrived over the websocket; the controller pushes the rest
 *   reconnecting websocket down and no fresh data yet
 *   polling      websocket down, /api/metrics/ polled every few seconds;
 *                the websocket is retried with exponential backoff, which
 *                resets only when a snapshot arrives over it: a server that
 *                accepts and then closes (4503, channels Redis down) is
 *                retried less and less often, not every second
 *   refused      the server closed with 4403 (not a superadmin): no retries
 * No dependencies; charts are plain SVG.
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("metrics-config").textContent);
  var initial = JSON.parse(document.getElementById("metrics-snapshot").textContent);
  var SVG_NS = "http://www.w3.org/2000/svg";
  var CLOSE_FORBIDDEN = 4403;
  var BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  var RECENT_RESTART_MS = 3600 * 1000;  // a restart within the last hour is shown in the warning colour

  var state = {
    mode: "connecting", socket: null, attempts: 0, reconnectTimer: null, pollTimer: null,
    snapshot: null, history: null, minutes: 60, live: {queues: {}, redis: {}}, chart: {kind: "queues", subject: "messagelog_read", picked: false}
  };

  // --- formatting -----------------------------------------------------------
  function fmtInt(n) { return n === null || n === undefined ? "—" : Math.round(n).toLocaleString("en-US"); }
  function fmtNum(n, digits) {
    return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US", {maximumFractionDigits: digits});
  }
  function fmtBytes(n) {
    if (n === null || n === undefined) return "—";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
  }
  function fmtDuration(s) {
    if (s === null || s === undefined) return "—";
    if (s < 60) return fmtNum(s, s < 10 ? 1 : 0) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function fmtTime(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function fmtShort(iso) {  // "2026-11-24 01:24 UTC": short enough for the uptime column
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  // --- small DOM helpers ----------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function cell(row, field) { return row.querySelector('[data-field="' + field + '"]'); }
  function setText(row, field, text) { var c = cell(row, field); if (c) c.textContent = text; }
  function setBadge(row, status, reasons) {
    var c = cell(row, "status"), badge = c.querySelector(".badge"), list = c.querySelector(".reasons");
    badge.dataset.status = status || "unknown";
    badge.textContent = status || "unknown";
    list.replaceChildren.apply(list, (reasons || []).map(function (r) { return el("li", {}, r); }));
    row.dataset.status = status || "unknown";
  }

  // --- applying a snapshot --------------------------------------------------
  function applySnapshot(snap) {
    if (!snap) return;
    state.snapshot = snap;
    (snap.queues || []).forEach(applyQueue);
    (snap.redis || []).forEach(applyRedis);
    applyUnacked(snap.unacked);
    applyEvents(snap.events || []);
    applyWorkers(snap.workers || []);
    recordLive(snap);
    drawCharts();
    var t = document.getElementById("collected-at");
    t.dataset.collectedAt = snap.collected_at || "";
    t.textContent = fmtTime(snap.collected_at);
    tickAge();
  }

  function applyQueue(q) {
    var row = document.querySelector('tr[data-queue="' + CSS.escape(q.name) + '"]');
    if (!row) return;
    setText(row, "depth", fmtInt(q.depth));
    setText(row, "oldest", fmtDuration(q.oldest_age_seconds));
    setText(row, "consumers", fmtInt(q.consumers));
    setText(row, "processed", fmtNum(q.processed_per_minute, 1));
    setText(row, "thresholds", fmtInt(q.warn) + " / " + fmtInt(q.critical));
    cell(row, "consumers").classList.toggle("bad", q.consumers === 0);
    setBadge(row, q.status, q.reasons);
  }

  function applyRedis(r) {
    var row = document.querySelector('tr[data-role="' + CSS.escape(r.role) + '"]');
    if (!row) return;
    var server = cell(row, "server");
    server.replaceChildren(document.createTextNode(r.host + ":" + r.port + "/" + r.db + (r.tls ? " · TLS" : "")));
    if (r.shared_with && r.shared_with.length) {
      server.appendChild(el("div", {"class": "small muted"}, "shared with " + r.shared_with.join(", ")));
    }
    var reach = cell(row, "reachable");
    reach.textContent = r.reachable ? "yes" : (r.error || "unreachable");
    reach.className = r.reachable ? "ok-text" : "bad";
    var max = r.maxmemory ? fmtBytes(r.maxmemory) : "no maxmemory";
    setText(row, "memory", r.reachable ? fmtBytes(r.used_memory) + " / " + max : "—");
    setText(row, "memory_percent", r.memory_percent === null || r.memory_percent === undefined ? "—"
      : fmtNum(r.memory_percent, 1) + " %" + (r.no_maxmemory ? " of RAM" : ""));
    setText(row, "evicted", fmtInt(r.evicted_keys_delta));
    setText(row, "rejected", fmtInt(r.rejected_connections_delta));
    setText(row, "clients", r.reachable ? fmtInt(r.connected_clients) + " / " + fmtInt(r.maxclients) : "—");
    setText(row, "policy", r.maxmemory_policy || "—");
    setText(row, "persistence", persistenceText(r.persistence));
    cell(row, "persistence").classList.toggle("warn-text", !!(r.persistence && !r.persistence.persistent));
    setText(row, "uptime", fmtDuration(r.uptime_seconds));
    applyRestart(cell(row, "restart"), r.last_restart_at, state.snapshot.collected_at);
    setBadge(row, r.reachable ? r.status : "critical", r.reasons);
  }

  // last_restart_at is the last restart the controller saw (a changed run_id),
  // null when it saw none; "recent" is measured on the controller's clock.
  function applyRestart(target, restartedAt, collectedAt) {
    var at = Date.parse(restartedAt), now = Date.parse(collectedAt);
    if (isNaN(now)) now = Date.now();
    target.textContent = restartedAt ? "restarted " + fmtShort(restartedAt) : "no restart seen";
    target.title = restartedAt ? fmtTime(restartedAt) : "";
    target.classList.toggle("warn-text", !isNaN(at) && now - at < RECENT_RESTART_MS);
  }

  function persistenceText(p) {
    if (!p) return "—";
    if (!p.persistent) return "none — queues and caches are lost on restart";
    var parts = [];
    if (p.save) parts.push("RDB (save " + p.save + ")");
    if (p.appendonly) parts.push("AOF");
    return parts.join(" + ") || "persistent";
  }

  function applyUnacked(u) {
    var target = document.getElementById("unacked-summary");
    if (!u) { target.textContent = ""; return; }
    target.textContent = "unacked: " + fmtInt(u.count) + " message" + (u.count === 1 ? "" : "s") +
      (u.oldest_age_seconds !== null && u.oldest_age_seconds !== undefined ? ", oldest " + fmtDuration(u.oldest_age_seconds) : "");
  }

  function applyEvents(events) {
    var list = document.getElementById("event-list");
    if (!events.length) { list.replaceChildren(el("li", {"class": "muted"}, "No events yet.")); return; }
    list.replaceChildren.apply(list, events.map(function (e) {
      var li = el("li", {"data-status": e.new_status || e.kind});
      li.appendChild(el("time", {datetime: e.at}, fmtTime(e.at)));
      li.appendChild(el("span", {"class": "badge", "data-status": e.new_status || "info"}, e.kind));
      li.appendChild(el("code", {}, e.subject));
      li.appendChild(el("span", {}, e.message));
      return li;
    }));
  }

  function applyWorkers(workers) {
    var body = document.querySelector("#worker-table tbody");
    if (!workers.length) {
      var empty = el("tr", {"class": "muted"}); empty.appendChild(el("td", {colspan: "7"}, "No worker heartbeats."));
      body.replaceChildren(empty); return;
    }
    body.replaceChildren.apply(body, workers.map(function (w) {
      var tr = el("tr", {"data-worker": w.name});
      [w.group, w.host, w.name].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      tr.appendChild(el("td", {"class": "num"}, w.pid));
      tr.appendChild(el("td", {"class": "small"}, (w.queues || []).join(", ")));
      tr.appendChild(el("td", {}, fmtTime(w.last_heartbeat)));
      tr.appendChild(el("td", {"class": w.alive ? "ok-text" : "bad"}, w.alive ? "yes" : "no"));
      return tr;
    }));
  }

  function tickAge() {
    var iso = document.getElementById("collected-at").dataset.collectedAt, out = document.getElementById("collected-ago");
    if (!iso) { out.textContent = ""; return; }
    var age = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    out.textContent = "(" + fmtDuration(age) + " ago)";
    out.className = age > 30 ? "bad" : "";
  }

  // --- live: websocket first, polling as the fallback --------------------------
  function setMode(mode, text) {
    state.mode = mode;
    var ind = document.getElementById("live-indicator");
    ind.dataset.state = mode;
    ind.textContent = text || mode;
  }

  function banner(text, level) {
    var b = document.getElementById("banner");
    b.hidden = !text;
    b.textContent = text || "";
    b.className = "banner " + (level || "error");
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + config.ws_path);
    state.socket = socket;
    // An open socket proves little: with the channels Redis down the server
    // accepts, then closes with 4503.  Only a snapshot counts as "live".
    socket.onopen = function () {
      if (state.mode === "connecting") setMode("connecting", "connecting… (waiting for a snapshot)");
    };
    socket.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      if (frame.type === "snapshot") onLiveSnapshot(frame.snapshot);
      else if (frame.type === "error") banner(frame.detail || frame.error);
    };
    socket.onclose = function (event) {
      if (state.socket !== socket) return;
      state.socket = null;
      if (event.code === CLOSE_FORBIDDEN) {
        stopPolling();
        setMode("refused", "refused: superadmins only");
        return;
      }
      if (state.mode !== "polling") setMode("reconnecting");
      startPolling();
      scheduleReconnect();
    };
  }

  function onLiveSnapshot(snapshot) {
    state.attempts = 0;
    stopPolling();
    setMode("live");
    applySnapshot(snapshot);
    banner("");
  }

  function scheduleReconnect() {
    var delay = BACKOFF_MS[Math.min(state.attempts, BACKOFF_MS.length - 1)];
    delay = delay * (0.8 + Math.random() * 0.4);  // jitter: many pages do not retry in step
    state.attempts += 1;
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function startPolling() {
    if (state.pollTimer) return;
    poll();
    state.pollTimer = setInterval(poll, config.poll_seconds * 1000);
  }

  function stopPolling() {
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  function poll() {
    fetch(config.api_url, {credentials: "same-origin", headers: {Accept: "application/json"}, cache: "no-store"})
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (!state.pollTimer) return;  // the websocket came back meanwhile
          if (response.ok) {
            applySnapshot(body);
            banner("");
            setMode("polling", "polling (websocket down)");
          } else {
            // 503 cache_unavailable (cache down, or no snapshot cached) and the
            // older no_snapshot alike: the detail says which.
            setMode("reconnecting");
            banner("Polling /api/metrics/ failed: " + (body.detail || body.error || response.status), "error");
          }
        });
      })
      .catch(function () {
        if (state.pollTimer) { setMode("reconnecting"); banner("The server does not answer.", "error"); }
      });
  }

  // --- charts ---------------------------------------------------------------
  function loadHistory() {
    fetch(config.history_url + "?minutes=" + state.minutes, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (history) { state.history = history; drawCharts(); })
      .catch(function (err) {
        document.getElementById("chart-note").textContent = "History unavailable (" + err.message + ").";
      });
  }

  var LIVE_MAX_POINTS = 1500;

  function recordLive(snap) {
    var at = Date.parse(snap.collected_at);
    if (isNaN(at)) return;
    (snap.queues || []).forEach(function (q) { addLive("queues", q.name, at, q.depth); });
    (snap.redis || []).forEach(function (r) { addLive("redis", r.role, at, r.memory_percent); });
  }

  function addLive(kind, subject, at, value) {
    var series = state.live[kind][subject] = state.live[kind][subject] || [];
    if (value === null || value === undefined) return;
    if (series.length && series[series.length - 1][0] >= at) return;  // the same snapshot twice
    series.push([at, value]);
    var since = Date.now() - state.minutes * 60000;
    while (series.length > LIVE_MAX_POINTS || (series.length && series[0][0] < since)) series.shift();
  }

  function seriesFor(kind, subject) {
    var group = state.history && state.history[kind];
    // Minutes where a server was unreachable carry null: no point, not zero.
    var points = ((group && group[subject]) || []).filter(function (p) { return p[1] !== null && p[1] !== undefined; });
    var last = points.length ? points[points.length - 1][0] : 0;
    // Snapshots received live fill in after the newest per-minute sample.
    return points.concat((state.live[kind][subject] || []).filter(function (p) { return p[0] > last; }));
  }

  function drawCharts() {
    document.querySelectorAll("tr[data-queue]").forEach(function (row) {
      sparkline(row.querySelector("svg.spark"), seriesFor("queues", row.dataset.queue), null);
    });
    document.querySelectorAll("tr[data-role]").forEach(function (row) {
      sparkline(row.querySelector("svg.spark"), seriesFor("redis", row.dataset.role), 100);
    });
    drawMainChart();
  }

  function sparkline(svg, points, fixedMax) {
    svg.replaceChildren();
    if (points.length < 2) return;
    var max = fixedMax || Math.max(1, Math.max.apply(null, points.map(function (p) { return p[1]; })));
    svg.appendChild(path(points, 120, 24, 1, max, "spark-line"));
  }

  function path(points, width, height, pad, max, cls) {
    var t0 = points[0][0], t1 = points[points.length - 1][0], span = Math.max(1, t1 - t0);
    var d = points.map(function (p, i) {
      var x = pad + (p[0] - t0) / span * (width - 2 * pad);
      var y = height - pad - (p[1] / max) * (height - 2 * pad);
      return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
    }).join(" ");
    var node = document.createElementNS(SVG_NS, "path");
    node.setAttribute("d", d);
    node.setAttribute("class", cls);
    return node;
  }

  function svgText(x, y, text, anchor) {
    var node = document.createElementNS(SVG_NS, "text");
    node.setAttribute("x", x); node.setAttribute("y", y);
    node.setAttribute("text-anchor", anchor || "start");
    node.textContent = text;
    return node;
  }

  function hline(svg, y, cls, label) {
    var line = document.createElementNS(SVG_NS, "line");
    line.setAttribute("x1", 60); line.setAttribute("x2", 790);
    line.setAttribute("y1", y); line.setAttribute("y2", y);
    line.setAttribute("class", cls);
    svg.appendChild(line);
    if (label) svg.appendChild(svgText(788, y - 3, label, "end"));
  }

  function mainThresholds() {
    var snap = state.snapshot, c = state.chart;
    if (!snap) return [];
    if (c.kind === "queues") {
      var q = (snap.queues || []).filter(function (x) { return x.name === c.subject; })[0];
      return q ? [["warn", q.warn], ["critical", q.critical]] : [];
    }
    var t = snap.thresholds || {};
    return [["warn", t.memory_warn_percent], ["critical", t.memory_critical_percent]];
  }

  function deepestQueue() {
    var queues = (state.snapshot && state.snapshot.queues) || [];
    return queues.reduce(function (best, q) { return !best || q.depth > best.depth ? q : best; }, null);
  }

  function drawMainChart() {
    if (!state.chart.picked && deepestQueue()) {
      // Until the operator picks one, show the queue with the largest backlog.
      state.chart = {kind: "queues", subject: deepestQueue().name, picked: false};
    }
    var svg = document.getElementById("chart"), c = state.chart, note = document.getElementById("chart-note");
    var points = seriesFor(c.kind, c.subject), unit = c.kind === "queues" ? "messages" : "% memory";
    document.getElementById("chart-subject").textContent = (c.kind === "redis" ? "Redis " : "queue ") + c.subject;
    svg.replaceChildren();
    var W = 800, H = 220, left = 60, bottom = 24, top = 10;
    if (points.length < 2) { note.textContent = "Not enough history yet for " + c.subject + "."; return; }
    var dataMax = Math.max.apply(null, points.map(function (p) { return p[1]; }));
    var max = c.kind === "redis" ? 100 : Math.max(1, dataMax * 1.1);
    var g = document.createElementNS(SVG_NS, "g");
    g.setAttribute("transform", "translate(" + left + "," + top + ")");
    g.appendChild(path(points, W - left - 10, H - top - bottom, 0, max, "chart-line"));
    svg.appendChild(g);
    var yOf = function (v) { return top + (H - top - bottom) * (1 - v / max); };
    mainThresholds().forEach(function (t) {
      if (t[1] !== undefined && t[1] !== null && t[1] <= max) hline(svg, yOf(t[1]), "threshold " + t[0], t[0] + " " + fmtInt(t[1]));
    });
    hline(svg, yOf(0), "axis");
    svg.appendChild(svgText(left - 6, yOf(max) + 10, fmtNum(max, 0), "end"));
    svg.appendChild(svgText(left - 6, yOf(0), "0", "end"));
    svg.appendChild(svgText(left, H - 6, fmtTime(new Date(points[0][0]).toISOString())));
    svg.appendChild(svgText(W - 10, H - 6, fmtTime(new Date(points[points.length - 1][0]).toISOString()), "end"));
    note.textContent = "Unit: " + unit + ". Latest " + fmtNum(points[points.length - 1][1], 1) + ", peak " + fmtNum(dataMax, 1) + ".";
  }

  function bindCharts() {
    document.querySelectorAll(".chart-pick").forEach(function (button) {
      button.addEventListener("click", function () {
        state.chart = {kind: button.dataset.kind, subject: button.dataset.subject, picked: true};
        drawMainChart();
        document.getElementById("charts").scrollIntoView({behavior: "smooth"});
      });
    });
    document.querySelectorAll(".range-btn").forEach(function (button) {
      button.addEventListener("click", function () {
        state.minutes = Number(button.dataset.minutes);
        document.querySelectorAll(".range-btn").forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
        document.querySelectorAll(".range-label").forEach(function (s) { s.textContent = button.textContent; });
        loadHistory();
      });
    });
  }

  // --- occupancy --------------------------------------------------------------
  function loadOccupancy(refresh) {
    var target = document.getElementById("occupancy-body");
    fetch(config.occupancy_url + (refresh ? "?refresh=1" : ""), {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (report) { renderOccupancy(target, report); })
      .catch(function (err) { target.replaceChildren(el("p", {"class": "bad"}, "Occupancy unavailable (" + err.message + ").")); });
  }

  function renderOccupancy(target, report) {
    var nodes = [el("p", {"class": "muted small"}, "Sampled " + fmtTime(report.generated_at) + " in " +
      fmtNum(report.duration_ms, 0) + " ms (budget " + fmtInt(report.budget.keys_per_db) + " keys per database, " +
      report.budget.seconds + " s).")];
    report.servers.forEach(function (server) {
      nodes.push(el("h3", {}, server.address + " — " + server.roles.join(", ") +
        (server.reachable ? " · used " + fmtBytes(server.used_memory) : "")));
      if (!server.reachable) { nodes.push(el("p", {"class": "bad"}, server.error)); return; }
      var box = el("div", {"class": "occupancy-dbs"});
      server.databases.forEach(function (db) { box.appendChild(occupancyTable(db)); });
      nodes.push(box);
    });
    target.replaceChildren.apply(target, nodes);
  }

  function occupancyTable(db) {
    var table = el("table", {"class": "grid occupancy", "data-db": db.db});
    var caption = "db " + db.db + " (" + db.roles.join(", ") + "): " + fmtInt(db.dbsize) + " keys, " +
      fmtInt(db.sampled) + " sampled" + (db.complete ? "" : ", stopped at the " + db.stopped);
    table.appendChild(el("caption", {}, caption));
    var head = el("tr");
    ["What", "Keys", "Memory"].forEach(function (h, i) { head.appendChild(el("th", i ? {"class": "num"} : {}, h)); });
    table.appendChild(head);
    db.categories.forEach(function (c) { table.appendChild(occupancyRow(c.name, c)); });
    if (db.no_ttl.length) {
      var sub = el("tr"); sub.appendChild(el("th", {colspan: "3"}, "Keys without a TTL, by prefix")); table.appendChild(sub);
      db.no_ttl.forEach(function (p) {
        table.appendChild(occupancyRow(p.prefix + (p.expected ? " (expected)" : " (no expiry!)"), p));
      });
    }
    return table;
  }

  function occupancyRow(label, t) {
    var tr = el("tr"), approx = t.estimated ? "≈ " : "";
    tr.appendChild(el("td", {}, label));
    tr.appendChild(el("td", {"class": "num"}, approx + fmtInt(t.keys)));
    tr.appendChild(el("td", {"class": "num"}, approx + fmtBytes(t.bytes)));
    return tr;
  }

  // --- start ----------------------------------------------------------------
  applySnapshot(initial);
  bindCharts();
  loadHistory();
  loadOccupancy(false);
  document.getElementById("occupancy-refresh").addEventListener("click", function () { loadOccupancy(true); });
  setInterval(tickAge, 1000);
  setInterval(loadHistory, 60000);
  setInterval(function () { loadOccupancy(false); }, 60000);
  connect();
})();
