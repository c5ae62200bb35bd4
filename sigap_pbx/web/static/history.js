// Call history: searches GET /api/calls with the form's filters, one page at a
// time, and points the CSV link at GET /api/calls.csv with the same filters.
// The filters are kept in the address bar, so a search can be bookmarked.
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("history-data").textContent);
  const text = data.messages;
  const labels = data.labels;
  const form = document.getElementById("history-form");
  const results = document.getElementById("history-results");
  const message = document.getElementById("history-message");
  const csvLink = document.getElementById("history-csv");
  const previous = document.getElementById("history-previous");
  const next = document.getElementById("history-next");
  const range = document.getElementById("history-range");
  const FIELDS = ["number", "since", "until", "operator", "outcome", "category", "call_type"];
  const TIME_FIELDS = new Set(["since", "until"]);
  let offset = 0;
  let request = 0;

  const pad = (n) => String(n).padStart(2, "0");

  // A Date as the local "YYYY-MM-DDTHH:MM:SS" that a datetime-local input shows.
  function localInputValue(date) {
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
      `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  function localTime(iso) {
    if (!iso) return "—";
    return localInputValue(new Date(iso)).replace("T", " ");
  }

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name]));
  }

  // Return the filters as query parameters. A datetime-local value is read as local
  // time and sent as ISO 8601 in UTC, because the API requires an offset.
  function filters() {
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      const value = form.elements[name].value.trim();
      if (!value) continue;
      if (TIME_FIELDS.has(name)) {
        const date = new Date(value);
        params.set(name, Number.isNaN(date.getTime()) ? value : date.toISOString());
      } else {
        params.set(name, value);
      }
    }
    return params;
  }

  function fillForm(params) {
    for (const name of FIELDS) {
      const value = params.get(name);
      if (value === null) continue;
      if (TIME_FIELDS.has(name)) {
        const date = new Date(value);
        form.elements[name].value = Number.isNaN(date.getTime()) ? "" : localInputValue(date);
      } else {
        form.elements[name].value = value;
      }
    }
    const start = Number(params.get("offset"));
    offset = Number.isInteger(start) && start > 0 ? start : 0;
  }

  function reportText(reports) {
    return reports.map((report) => {
      const category = labels.category[report.category] || report.category;
      const type = labels.call_type[report.call_type] || report.call_type;
      return `#${report.id} ${category} · ${type}`;
    }).join("; ");
  }

  function row(call) {
    const seconds = (value) => (value === null || value === undefined ? "—" : Sigap.duration(value));
    return Sigap.el("tr", { dataset: { callId: call.id, outcome: call.outcome } },
      Sigap.el("td", null, localTime(call.arrived_at)),
      Sigap.el("td", { class: "number", title: call.caller_number_raw || "" },
        call.caller_number || call.caller_number_raw || "—"),
      Sigap.el("td", null, call.queue || "—"),
      Sigap.el("td", null, call.answering_endpoint || "—"),
      Sigap.el("td", null, labels.outcome[call.outcome] || call.outcome),
      Sigap.el("td", null, seconds(call.wait_seconds)),
      Sigap.el("td", null, seconds(call.talk_seconds)),
      Sigap.el("td", { class: "reports" }, reportText(call.reports || [])));
  }

  async function search() {
    const params = filters();
    const shown = new URLSearchParams(params);
    if (offset) shown.set("offset", String(offset));
    history.replaceState(null, "", `/history${shown.toString() ? "?" + shown : ""}`);
    csvLink.href = `/api/calls.csv${params.toString() ? "?" + params : ""}`;
    params.set("limit", String(data.page_size));
    params.set("offset", String(offset));
    const mine = ++request;
    message.classList.remove("error");
    message.textContent = text.loading;
    let body;
    try {
      body = await Sigap.api("GET", `/api/calls?${params}`);
    } catch (error) {
      if (mine !== request) return;
      message.classList.add("error");
      message.textContent = format(text.failed, { message: error.message });
      return;
    }
    if (mine !== request) return;
    results.replaceChildren(...body.calls.map(row));
    message.textContent = body.total ? "" : text.empty;
    const last = Math.min(body.offset + body.calls.length, body.total);
    range.textContent = body.total
      ? format(text.range, { first: body.offset + 1, last, total: body.total })
      : "";
    previous.disabled = body.offset === 0;
    next.disabled = last >= body.total;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    search();
  });
  form.addEventListener("reset", () => {
    // The reset clears the inputs after this handler returns.
    setTimeout(() => { offset = 0; search(); }, 0);
  });
  previous.addEventListener("click", () => {
    offset = Math.max(0, offset - data.page_size);
    search();
  });
  next.addEventListener("click", () => {
    offset += data.page_size;
    search();
  });

  fillForm(new URLSearchParams(location.search));
  search();
})();
