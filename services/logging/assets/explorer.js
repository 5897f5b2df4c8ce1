// The log explorer: reads the filters from the page address, asks the query API for
// the histogram and the newest records, and follows new ones over SSE when live tail
// is on. Plain DOM code, no framework, nothing loaded from elsewhere.
"use strict";

const FIELDS = ["service", "min_severity", "since", "until", "q", "request_id", "trace_id", "attr"];
const form = document.getElementById("filters");
const tbody = document.querySelector("#records tbody");
const status = document.getElementById("status");
const more = document.getElementById("more");
const live = document.getElementById("live");
const tokenInput = document.getElementById("token");
let cursor = null;
let tail = null;

tokenInput.value = sessionStorage.getItem("tessera-token") || "";
tokenInput.addEventListener("change", () => {
  sessionStorage.setItem("tessera-token", tokenInput.value);
  refresh();
});

function headers() {
  const token = tokenInput.value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

function filters() {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function loadFiltersFromAddress() {
  const params = new URLSearchParams(location.search);
  for (const name of FIELDS) form.elements[name].value = params.get(name) || "";
  live.checked = params.get("live") === "1";
}

function saveFiltersToAddress() {
  const params = filters();
  if (live.checked) params.set("live", "1");
  const query = params.toString();
  history.replaceState(null, "", query ? "?" + query : location.pathname);
}

async function getJson(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(response.status + ": " + detail);
  }
  return response.json();
}

function severityName(n) {
  if (n >= 21) return "fatal";
  if (n >= 17) return "error";
  if (n >= 13) return "warn";
  if (n >= 9) return "info";
  if (n >= 5) return "debug";
  if (n >= 1) return "trace";
  return "unset";
}

function formatTime(nanos) {
  const date = new Date(Number(BigInt(nanos) / 1000000n));
  return date.toISOString().replace("T", " ").replace("Z", "");
}

function idLink(field, value) {
  const link = document.createElement("a");
  link.href = "?" + new URLSearchParams({ [field]: value }).toString();
  link.className = "id";
  link.dataset.field = field;
  link.textContent = value.length > 16 ? value.slice(0, 16) + "…" : value;
  link.title = "Show every record with this " + field.replace("_", " ");
  link.addEventListener("click", (event) => {
    event.preventDefault();
    event.stopPropagation();
    for (const name of FIELDS) form.elements[name].value = "";
    form.elements[field].value = value;
    refresh();
  });
  return link;
}

function cell(row, className, content) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  row.appendChild(td);
  return td;
}

function recordRow(record, isLive) {
  const row = document.createElement("tr");
  row.className = "record" + (isLive ? " live" : "");
  row.dataset.id = record.id;
  row.dataset.service = record.service;
  cell(row, "time", formatTime(record.time_unix_nano));
  cell(row, "service", record.service);
  const level = severityName(record.severity_number);
  cell(row, "sev sev-" + level, record.severity_text || level);
  cell(row, "body", record.body);
  const ids = cell(row, "ids", "");
  if (record.request_id) ids.appendChild(idLink("request_id", record.request_id));
  if (record.trace_id) {
    if (record.request_id) ids.appendChild(document.createElement("br"));
    ids.appendChild(idLink("trace_id", record.trace_id));
  }
  row.addEventListener("click", () => toggleDetails(row, record));
  return row;
}

function toggleDetails(row, record) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains("details")) { next.remove(); return; }
  const details = document.createElement("tr");
  details.className = "details";
  const td = document.createElement("td");
  td.colSpan = 5;
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify({
    time_unix_nano: record.time_unix_nano,
    observed_time_unix_nano: record.observed_time_unix_nano,
    trace_id: record.trace_id, span_id: record.span_id, request_id: record.request_id,
    attributes: record.attributes, resource: record.resource,
  }, null, 2);
  td.appendChild(pre);
  details.appendChild(td);
  row.after(details);
}

function drawHistogram(histogram) {
  const svg = document.getElementById("histogram");
  while (svg.firstChild) svg.firstChild.remove();
  const span = histogram.until_unix_nano - histogram.since_unix_nano;
  const max = Math.max(1, ...histogram.buckets.map((b) => b.count));
  const width = Math.max(1, (1000 * histogram.bucket_nanos) / span);
  for (const bucket of histogram.buckets) {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const x = (1000 * (bucket.start_unix_nano - histogram.since_unix_nano)) / span;
    const height = (110 * bucket.count) / max;
    rect.setAttribute("x", String(Math.max(0, x)));
    rect.setAttribute("y", String(120 - height));
    rect.setAttribute("width", String(Math.max(1, width - 1)));
    rect.setAttribute("height", String(height));
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = bucket.count + " from " + formatTime(bucket.start_unix_nano);
    rect.appendChild(title);
    svg.appendChild(rect);
  }
  const range = document.getElementById("chart-range");
  range.textContent = "";
  for (const t of [histogram.since_unix_nano, histogram.until_unix_nano]) {
    const span = document.createElement("span");
    span.textContent = formatTime(t);
    range.appendChild(span);
  }
}

async function loadPage(append) {
  const params = filters();
  params.set("limit", "100");
  if (append && cursor) params.set("cursor", cursor);
  const page = await getJson("/v1/records?" + params.toString());
  if (!append) tbody.textContent = "";
  for (const record of page.records) tbody.appendChild(recordRow(record, false));
  cursor = page.next_cursor || null;
  more.hidden = !cursor;
  const shown = tbody.querySelectorAll("tr.record").length;
  status.textContent = shown + (shown === 1 ? " record" : " records") + (cursor ? " (more below)" : "");
}

async function refresh() {
  saveFiltersToAddress();
  status.textContent = "Loading…";
  try {
    const histogram = getJson("/v1/records/histogram?" + filters().toString());
    await loadPage(false);
    drawHistogram(await histogram);
  } catch (error) {
    status.textContent = "Could not load records: " + error.message;
  }
  restartTail();
}

// Live tail over SSE, read with fetch so the Authorization header can be sent.
function restartTail() {
  if (tail) { tail.abort(); tail = null; }
  if (!live.checked) return;
  tail = new AbortController();
  const signal = tail.signal;
  fetch("/v1/records/tail?" + filters().toString(), { headers: headers(), signal })
    .then(async (response) => {
      if (!response.ok) throw new Error("live tail refused: " + response.status);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handleEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    })
    .catch((error) => { if (!signal.aborted) status.textContent = error.message; });
}

function handleEvent(text) {
  let type = "message";
  const data = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (type === "record") {
    tbody.prepend(recordRow(JSON.parse(data.join("\n")), true));
  } else if (type === "lagged") {
    status.textContent = "Live tail skipped " + data.join("") + " records (too many to show)";
  }
}

form.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
document.getElementById("clear").addEventListener("click", () => {
  for (const name of FIELDS) form.elements[name].value = "";
  refresh();
});
live.addEventListener("change", () => { saveFiltersToAddress(); restartTail(); });
more.addEventListener("click", () => loadPage(true).catch((e) => { status.textContent = e.message; }));

loadFiltersFromAddress();
refresh();
