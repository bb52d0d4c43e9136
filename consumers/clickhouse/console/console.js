// The SQL console: sends the query to the endpoint's ClickHouse HTTP interface (same origin,
// POST /), shows JSONCompact results as a table, anything else as text, and errors as ClickHouse
// wrote them. Served with a Content-Security-Policy that allows only same-origin scripts and
// requests, so this file must not load anything from elsewhere.
"use strict";

const MAX_ROWS_SHOWN = 1000;
const endpoint = new URL("/", window.location.href);
const $ = (id) => document.getElementById(id);

function queryUrl(format) {
  const url = new URL(endpoint);
  url.searchParams.set("default_format", format);
  url.searchParams.set("query_id", crypto.randomUUID());
  return url;
}

// The user and password stay in the page (never stored) and go with each query as ClickHouse's
// own headers, as its /play page sends them.
function credentialHeaders() {
  const headers = {};
  const user = $("user").value.trim();
  const password = $("password").value;
  if (user || password) {
    headers["X-ClickHouse-User"] = user || "default";
    headers["X-ClickHouse-Key"] = password;
  }
  return headers;
}

async function post(sql, format) {
  return fetch(queryUrl(format), {
    method: "POST",
    body: sql,
    credentials: "same-origin",
    headers: { "Content-Type": "text/plain; charset=utf-8", ...credentialHeaders() },
  });
}

function setBusy(busy, message) {
  $("run").disabled = busy;
  $("download").disabled = busy;
  $("status").textContent = message;
}

function showError(message) {
  $("error").textContent = message.trim();
  $("error").hidden = false;
}

function clearOutput() {
  $("error").hidden = true;
  $("error").textContent = "";
  $("summary").textContent = "";
  $("result").replaceChildren();
  $("text").hidden = true;
  $("text").textContent = "";
}

function cell(tag, value) {
  const el = document.createElement(tag);
  if (value === null) {
    el.textContent = "NULL";
    el.className = "null";
  } else if (typeof value === "object") {
    el.textContent = JSON.stringify(value);
  } else {
    el.textContent = String(value);
  }
  return el;
}

function renderTable(result) {
  const head = document.createElement("tr");
  for (const column of result.meta) {
    const th = document.createElement("th");
    th.textContent = column.name;
    const type = document.createElement("small");
    type.textContent = column.type;
    th.append(type);
    head.append(th);
  }
  const rows = [head];
  for (const row of result.data.slice(0, MAX_ROWS_SHOWN)) {
    const tr = document.createElement("tr");
    for (const value of row) tr.append(cell("td", value));
    rows.push(tr);
  }
  $("result").replaceChildren(...rows);
  const total = result.rows ?? result.data.length;
  const elapsed = result.statistics ? ` in ${result.statistics.elapsed.toFixed(3)} s` : "";
  const shown = total > MAX_ROWS_SHOWN ? `, first ${MAX_ROWS_SHOWN} shown (Download CSV has all)` : "";
  $("summary").textContent = `${total} row${total === 1 ? "" : "s"}${elapsed}${shown}`;
}

async function run() {
  const sql = $("query").value.trim();
  clearOutput();
  if (!sql) {
    showError("Type a query first, or pick one of the examples.");
    return;
  }
  setBusy(true, "running…");
  try {
    const response = await post(sql, "JSONCompact");
    const body = await response.text();
    if (!response.ok || response.headers.has("X-ClickHouse-Exception-Code")) {
      showError(body || `HTTP ${response.status} ${response.statusText}`);
      return;
    }
    const format = response.headers.get("X-ClickHouse-Format") || "";
    if (format === "JSONCompact") {
      renderTable(JSON.parse(body));
    } else {
      $("text").textContent = body;
      $("text").hidden = false;
      $("summary").textContent = format ? `${format} output` : "";
    }
  } catch (error) {
    showError(`The SQL endpoint did not answer: ${error.message}. Is the loader running?`);
  } finally {
    setBusy(false, "");
  }
}

async function downloadCsv() {
  const sql = $("query").value.trim();
  clearOutput();
  if (!sql) {
    showError("Type a query first, or pick one of the examples.");
    return;
  }
  setBusy(true, "preparing CSV…");
  try {
    const response = await post(sql, "CSVWithNames");
    if (!response.ok) {
      showError(await response.text());
      return;
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = "logorhythms-query.csv";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  } catch (error) {
    showError(`The SQL endpoint did not answer: ${error.message}. Is the loader running?`);
  } finally {
    setBusy(false, "");
  }
}

async function loadExamples() {
  const list = $("examples");
  try {
    const response = await fetch(new URL("/play/examples.json", window.location.href));
    const examples = await response.json();
    for (const example of examples) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = example.title;
      button.addEventListener("click", () => {
        $("query").value = example.sql;
        run();
      });
      const item = document.createElement("li");
      item.value = example.number;
      item.append(button);
      list.append(item);
    }
  } catch (error) {
    list.replaceChildren(cell("li", `Examples could not be loaded: ${error.message}`));
  }
}

$("run").addEventListener("click", run);
$("download").addEventListener("click", downloadCsv);
$("query").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    run();
  }
});
loadExamples();
