/**
 * The dashboard page served at `GET /`: HTML, CSS and a script, hand-written, no framework and
 * nothing from a CDN, kept as strings so `npm run build` ships them inside dist.
 *
 * The script reads `GET /api/live` (Server-Sent Events, one snapshot a second) and renders it with
 * `textContent` and `setAttribute` only: names, reasons and errors from Redis or Postgres can never
 * become markup. The admin token for a replay is asked when needed and kept in `sessionStorage`.
 */

export const pageHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>outbox-relay</title>
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>outbox-relay</h1>
  <span class="muted" id="prefix"></span>
  <span id="feed" class="pill warn">connecting</span>
  <span class="muted" id="updated"></span>
</header>
<main>
  <section class="cards" aria-label="Health and outbox">
    <div class="card" data-health="ready"><h2>Ready</h2><p class="value">–</p><p class="detail"></p></div>
    <div class="card" data-health="postgres"><h2>Postgres</h2><p class="value">–</p><p class="detail"></p></div>
    <div class="card" data-health="redis"><h2>Redis</h2><p class="value">–</p><p class="detail"></p></div>
    <div class="card" data-health="listen"><h2>LISTEN</h2><p class="value">–</p><p class="detail"></p></div>
    <div class="card">
      <h2>Backlog</h2><p class="value" data-field="backlog">–</p><p class="detail">pending rows</p>
    </div>
    <div class="card">
      <h2>Oldest pending</h2><p class="value" data-field="oldest">–</p><p class="detail">age</p>
    </div>
    <div class="card"><h2>Dead rows</h2><p class="value" data-field="dead">–</p><p class="detail">in Postgres</p></div>
  </section>
  <section class="charts" aria-label="Rates">
    <div class="card">
      <h2>Relayed / s</h2><p class="value" data-field="relayed">–</p>
      <p class="detail" data-field="relayed-peak"></p>
      <svg class="chart" data-chart="relayed" viewBox="0 0 240 48" preserveAspectRatio="none" aria-hidden="true"></svg>
    </div>
    <div class="card">
      <h2>Latency <span class="legend"><i class="p50"></i>p50 <i class="p99"></i>p99</span></h2>
      <p class="value" data-field="latency">–</p>
      <p class="detail" data-field="latency-mean">created_at to stream</p>
      <svg class="chart" data-chart="latency" viewBox="0 0 240 48" preserveAspectRatio="none" aria-hidden="true"></svg>
    </div>
  </section>
  <p class="error" id="outbox-error" hidden></p>
  <h2 class="section">Relays and lanes</h2>
  <table>
    <thead><tr><th>Relay</th><th>Host</th><th>Slots</th><th>Lanes</th></tr></thead>
    <tbody id="relays"></tbody>
  </table>
  <h2 class="section">Streams</h2>
  <p class="error" id="streams-error" hidden></p>
  <p id="notice" class="notice" role="status" hidden></p>
  <table>
    <thead><tr><th>Stream</th><th class="num">Length</th><th>Groups (lag / pending / consumers)</th>
      <th class="num">Dead letters</th><th></th></tr></thead>
    <tbody id="streams"></tbody>
  </table>
  <p class="muted" id="streams-more" hidden></p>
</main>
</body>
</html>
`

export const pageCss = `:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --fg: #1d2330; --muted: #6b7385; --card: #fff; --line: #e1e4ea;
  --ok: #1f8a4c; --bad: #c62e2e; --warn: #b7791f; --accent: #2f6fdb; --accent2: #d9480f;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #14171d; --fg: #e4e7ee; --muted: #9199aa; --card: #1c2028; --line: #2c3240; }
}
* { box-sizing: border-box; }
body {
  margin: 0;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  background: var(--bg);
  color: var(--fg);
}
header { display: flex; gap: 12px; align-items: baseline; padding: 14px 20px; border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
main { padding: 16px 20px 32px; max-width: 1200px; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 12px; margin-bottom: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; min-width: 0; }
.card h2 {
  font-size: 12px;
  font-weight: 600;
  color: var(--muted);
  margin: 0;
  text-transform: uppercase;
  letter-spacing: .04em;
}
.card .value { font-size: 24px; font-weight: 600; margin: 4px 0 0; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); margin: 2px 0 0; font-size: 12px; overflow-wrap: anywhere; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 12px; margin-bottom: 12px; }
.chart { width: 100%; height: 64px; display: block; margin-top: 6px; }
.chart .line { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.chart .area { fill: var(--accent); opacity: .12; }
.chart .p99 { stroke: var(--accent2); }
.legend { text-transform: none; font-weight: 400; margin-left: 6px; }
.legend i {
  display: inline-block;
  width: 10px;
  height: 2px;
  vertical-align: middle;
  margin: 0 3px 0 6px;
  background: var(--accent);
}
.legend i.p99 { background: var(--accent2); }
.ok { color: var(--ok); } .bad { color: var(--bad); }
.pill { font-size: 12px; padding: 1px 8px; border-radius: 10px; border: 1px solid currentColor; }
.pill.ok { color: var(--ok); } .pill.warn { color: var(--warn); } .pill.bad { color: var(--bad); }
h2.section { font-size: 14px; margin: 20px 0 6px; }
table {
  width: 100%;
  border-collapse: collapse;
  background: var(--card);
  border: 1px solid var(--line);
  border-radius: 8px;
}
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.key { font-family: ui-monospace, Menlo, monospace; overflow-wrap: anywhere; }
.group { display: block; font-variant-numeric: tabular-nums; }
.group b { font-weight: 600; }
.error {
  color: var(--bad);
  background: color-mix(in srgb, var(--bad) 10%, transparent);
  border-radius: 6px;
  padding: 6px 10px;
}
.notice { background: color-mix(in srgb, var(--accent) 10%, transparent); border-radius: 6px; padding: 6px 10px; }
.notice.error { color: var(--bad); background: color-mix(in srgb, var(--bad) 10%, transparent); }
button {
  font: inherit;
  padding: 2px 10px;
  border-radius: 6px;
  border: 1px solid var(--line);
  background: var(--bg);
  color: var(--fg);
  cursor: pointer;
}
button:disabled { opacity: .5; cursor: default; }
`

export const pageScript = String.raw`"use strict";
(function () {
  var $ = function (selector) { return document.querySelector(selector); };
  var tokenKey = "outbox-relay-admin-token";
  var number = new Intl.NumberFormat("en-US");

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 0.001) return (value * 1e6).toFixed(0) + " µs";
    if (value < 1) return (value * 1000).toFixed(value < 0.01 ? 2 : 1) + " ms";
    if (value < 120) return value.toFixed(1) + " s";
    if (value < 7200) return (value / 60).toFixed(1) + " min";
    return (value / 3600).toFixed(1) + " h";
  }

  function setHealth(name, ok, detail) {
    var card = document.querySelector("[data-health='" + name + "']");
    var value = card.querySelector(".value");
    value.textContent = ok ? "ok" : "down";
    value.className = "value " + (ok ? "ok" : "bad");
    card.querySelector(".detail").textContent = detail || "";
  }

  function field(name, text) { document.querySelector("[data-field='" + name + "']").textContent = text; }

  function showError(id, part) {
    var node = document.getElementById(id);
    node.hidden = part.ok;
    node.textContent = part.ok ? "" : part.error;
  }

  // A sparkline: one polyline per series, all on the scale of the largest value.
  function chart(name, series) {
    var svg = document.querySelector("[data-chart='" + name + "']");
    var ns = "http://www.w3.org/2000/svg";
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var length = 0, max = 0;
    series.forEach(function (s) {
      length = Math.max(length, s.values.length);
      s.values.forEach(function (v) { if (v !== null && v > max) max = v; });
    });
    if (length === 0) return;
    var top = max > 0 ? max * 1.1 : 1;
    // Two minutes wide (the feed keeps 120 one-second points), newest at the right edge.
    var span = Math.max(length, 120);
    var x = function (i) { return (240 * (span - length + i)) / (span - 1); };
    var y = function (v) { return 47 - (v / top) * 45; };
    series.forEach(function (s, index) {
      // Runs of known values; a second without a value (nothing relayed) breaks the line.
      var runs = [], run = [];
      s.values.forEach(function (v, i) {
        if (v === null) { if (run.length) runs.push(run); run = []; return; }
        run.push([x(i), y(v)]);
      });
      if (run.length) runs.push(run);
      runs.forEach(function (points) {
        // A lone point is drawn as a short dash so it stays visible.
        if (points.length === 1) points = [[points[0][0] - 1, points[0][1]], [points[0][0] + 1, points[0][1]]];
        var text = points.map(function (p) { return p[0].toFixed(1) + "," + p[1].toFixed(1); }).join(" ");
        if (index === 0 && s.area) {
          var area = document.createElementNS(ns, "polygon");
          area.setAttribute("class", "area");
          area.setAttribute("points", points[0][0].toFixed(1) + ",48 " + text + " " +
            points[points.length - 1][0].toFixed(1) + ",48");
          svg.appendChild(area);
        }
        var line = document.createElementNS(ns, "polyline");
        line.setAttribute("class", "line " + (s.className || ""));
        line.setAttribute("points", text);
        svg.appendChild(line);
      });
    });
  }

  function renderRates(rates) {
    var last = rates[rates.length - 1];
    var peak = rates.reduce(function (max, r) { return Math.max(max, r.relayedPerSecond); }, 0);
    field("relayed", last ? number.format(Math.round(last.relayedPerSecond)) : "–");
    field("relayed-peak", "peak " + number.format(Math.round(peak)) + "/s in the chart");
    // Latency of the latest second that relayed anything: an idle relay keeps showing its last figures.
    var measured = null;
    for (var i = rates.length - 1; i >= 0 && measured === null; i--) {
      if (rates[i].latencyP50 !== null) measured = rates[i];
    }
    field("latency", measured ? seconds(measured.latencyP50) + " / " + seconds(measured.latencyP99) : "–");
    field("latency-mean", measured
      ? "mean " + seconds(measured.latencyMean) + (measured === last ? "" : ", " +
        seconds((last.at - measured.at) / 1000) + " ago")
      : "created_at to stream; nothing relayed lately");
    chart("relayed", [{ values: rates.map(function (r) { return r.relayedPerSecond; }), area: true }]);
    chart("latency", [
      { values: rates.map(function (r) { return r.latencyP50; }) },
      { values: rates.map(function (r) { return r.latencyP99; }), className: "p99" }
    ]);
  }

  function renderRelays(outbox) {
    var body = $("#relays");
    body.textContent = "";
    if (!outbox.ok) return;
    outbox.value.relays.forEach(function (relay) {
      var row = el("tr");
      row.appendChild(el("td", "key", relay.id));
      row.appendChild(el("td", "", relay.host + " (pid " + relay.pid + ")"));
      row.appendChild(el("td", "num", relay.slots.length + " of 64"));
      var lanes = el("td");
      relay.lanes.forEach(function (lane) {
        var state = !lane.connected ? "disconnected" : lane.awake ? "draining" : "idle";
        var line = el("span", "group " + (lane.connected ? "" : "bad"),
          lane.laneId + ": " + state + ", heartbeat " + seconds(lane.heartbeatAgeSeconds) + " ago");
        lanes.appendChild(line);
      });
      row.appendChild(lanes);
      body.appendChild(row);
    });
    if (outbox.value.relays.length === 0) {
      var empty = el("tr");
      var cell = el("td", "muted", "no live relay registered");
      cell.colSpan = 4;
      empty.appendChild(cell);
      body.appendChild(empty);
    }
  }

  // Stream rows are kept by key so a replay button stays the same element from one second to the next.
  var rows = new Map();

  function streamRow(stream) {
    var row = rows.get(stream.key);
    if (row) return row;
    row = el("tr");
    row.setAttribute("data-stream", stream.key);
    row.appendChild(el("td", "key", stream.key));
    row.appendChild(el("td", "num length"));
    row.appendChild(el("td", "groups"));
    row.appendChild(el("td", "num dead"));
    var action = el("td");
    var button = el("button", "replay", "Replay");
    button.type = "button";
    button.title = "Replay every consumer dead letter of this stream (needs the admin token)";
    button.addEventListener("click", function () { replay(stream.key, button); });
    action.appendChild(button);
    row.appendChild(action);
    rows.set(stream.key, row);
    return row;
  }

  function renderStreams(part) {
    showError("streams-error", part);
    if (!part.ok) return;
    var body = $("#streams");
    var seen = new Set();
    part.value.streams.forEach(function (stream) {
      seen.add(stream.key);
      var row = streamRow(stream);
      row.querySelector(".length").textContent = number.format(stream.length);
      row.querySelector(".dead").textContent = number.format(stream.deadLetters);
      row.querySelector(".replay").disabled = stream.deadLetters === 0;
      var groups = row.querySelector(".groups");
      groups.textContent = "";
      if (stream.groups.length === 0) groups.appendChild(el("span", "muted", "no groups"));
      stream.groups.forEach(function (group) {
        var line = el("span", "group");
        line.setAttribute("data-group", group.name);
        line.appendChild(el("b", "", group.name));
        line.appendChild(document.createTextNode(": lag "));
        line.appendChild(el("span", "lag", group.lag === null ? "?" : number.format(group.lag)));
        line.appendChild(document.createTextNode(", pending "));
        line.appendChild(el("span", "pending", number.format(group.pending)));
        var consumers = group.consumers + " consumer" + (group.consumers === 1 ? "" : "s");
        line.appendChild(document.createTextNode(", " + consumers));
        groups.appendChild(line);
      });
      body.appendChild(row);
    });
    rows.forEach(function (row, key) {
      if (!seen.has(key)) { row.remove(); rows.delete(key); }
    });
    var more = $("#streams-more");
    more.hidden = part.value.more === 0;
    more.textContent = part.value.more + " more streams not shown";
  }

  function render(snapshot) {
    $("#prefix").textContent = "prefix " + snapshot.prefix;
    $("#updated").textContent = "updated " + new Date(snapshot.at).toLocaleTimeString();
    var health = snapshot.health;
    setHealth("ready", health.ready, health.ready ? "Postgres and Redis reachable" : "not ready");
    setHealth("postgres", health.postgres.ok, health.postgres.error);
    setHealth("redis", health.redis.ok, health.redis.error);
    setHealth("listen", health.listen.ok, health.listen.error);
    showError("outbox-error", snapshot.outbox);
    if (snapshot.outbox.ok) {
      field("backlog", number.format(snapshot.outbox.value.backlog));
      var outbox = snapshot.outbox.value;
      field("oldest", outbox.backlog === 0 ? "–" : seconds(outbox.oldestPendingSeconds));
      field("dead", number.format(snapshot.outbox.value.dead));
    }
    renderRates(snapshot.rates);
    renderRelays(snapshot.outbox);
    renderStreams(snapshot.streams);
  }

  function notice(text, isError) {
    var node = $("#notice");
    node.hidden = false;
    node.className = "notice" + (isError ? " error" : "");
    node.textContent = text;
  }

  function replay(stream, button) {
    var token = sessionStorage.getItem(tokenKey);
    if (!token) {
      token = window.prompt("Admin token (RELAY_ADMIN_TOKEN) to replay the dead letters of " + stream);
      if (!token) return;
    }
    button.disabled = true;
    fetch("/api/streams/" + encodeURIComponent(stream) + "/dlq/replay", {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify({ all: true })
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.status === 401 || response.status === 403) {
          sessionStorage.removeItem(tokenKey);
          notice("Replay refused (" + response.status + "): " + (body.error || "token not accepted"), true);
          return;
        }
        if (!response.ok) {
          notice("Replay failed (" + response.status + "): " + (body.error || response.statusText), true);
          return;
        }
        sessionStorage.setItem(tokenKey, token);
        var reasons = Array.from(new Set(body.skipped.map(function (s) { return s.reason; })));
        var skipped = body.skipped.length === 0
          ? ""
          : ", skipped " + body.skipped.length + " (" + reasons.join("; ") + ")";
        notice("Replayed " + body.replayed.length + " dead letter" + (body.replayed.length === 1 ? "" : "s") +
          " of " + stream + skipped, false);
      });
    }).catch(function (error) {
      notice("Replay failed: " + error.message, true);
    }).finally(function () { button.disabled = false; });
  }

  function connect() {
    var feed = $("#feed");
    var source = new EventSource("/api/live");
    source.onopen = function () { feed.textContent = "live"; feed.className = "pill ok"; };
    source.onmessage = function (event) {
      feed.textContent = "live"; feed.className = "pill ok";
      render(JSON.parse(event.data));
    };
    // EventSource reconnects by itself (after the server's retry hint); the pill says so meanwhile.
    source.onerror = function () { feed.textContent = "reconnecting"; feed.className = "pill bad"; };
  }

  connect();
})();
`
