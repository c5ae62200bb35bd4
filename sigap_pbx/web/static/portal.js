// Agency portal: the agency's dispatches with their reports, acknowledgement and
// status updates, and an alert with sound when a new report arrives. The list
// comes from GET /api/dispatches (unacknowledged first, then newest first) and
// the report fields from GET /api/reports. The page reloads it after every
// (re)connect of the event stream, on each dispatch event and every
// reload_seconds, because a dispatch made outside the web server sends no event.
// The new-report banner counts the new dispatches still unacknowledged, and hides
// once each of them is acknowledged.
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("portal-data").textContent);
  const text = data.messages;
  const labels = data.labels;
  const list = document.getElementById("dispatches");
  const alertBanner = document.getElementById("new-report-alert");
  const message = document.getElementById("portal-message");
  const agencySelect = document.getElementById("agency-filter");
  const includeFinal = document.getElementById("include-final");
  const FINAL = new Set(["resolved", "false_alarm"]);
  // The page requests at most this many dispatches from GET /api/dispatches.
  const LIST_LIMIT = 200;
  // Ids of dispatches already shown or already alerted, so each alerts once.
  const known = new Set();
  // Ids of the alerted dispatches not yet seen acknowledged: the banner's count.
  const pending = new Set();
  let firstLoad = true;
  let loading = null;
  let reloadTimer = null;

  const format = (template, values) =>
    template.replace(/\{(\w+)\}/g, (_, name) => String(values[name]));

  function agency() {
    if (data.agency) return data.agency;
    return agencySelect ? agencySelect.value : "";
  }

  function showError(error) {
    message.classList.add("error");
    message.textContent = format(text.failed, { message: error.message });
  }

  function showAlert() {
    alertBanner.dataset.count = String(pending.size);
    alertBanner.textContent = format(text.new_report, { count: pending.size });
    alertBanner.hidden = pending.size === 0;
  }

  function alertNew(ids) {
    if (!ids.length) return;
    for (const id of ids) pending.add(id);
    showAlert();
    Sigap.beep();
  }

  // Drop from the banner the alerted dispatches that a new list shows acknowledged
  // or leaves out (a final status, or another agency after a change of the agency
  // filter). `requested` contains the ids pending when the list was requested, so
  // an id alerted by an event during the request waits for the next list.
  function settleAlert(dispatches, requested) {
    const waiting = new Set(dispatches.filter((d) => d.status === "sent").map((d) => d.id));
    const listed = new Set(dispatches.map((d) => d.id));
    // Unacknowledged dispatches come first, so the list contains all of them
    // unless it is full and still ends with one.
    const last = dispatches[dispatches.length - 1];
    const containsAllWaiting = dispatches.length < LIST_LIMIT || last.status !== "sent";
    for (const id of requested) {
      if (waiting.has(id)) continue;
      if (listed.has(id) || containsAllWaiting) pending.delete(id);
    }
    showAlert();
  }

  function dismissAlert() {
    pending.clear();
    showAlert();
  }

  function localTime(iso) {
    const date = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(date.getDate())}/${pad(date.getMonth() + 1)} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  function sinceSent(iso) {
    return Sigap.duration((Date.now() - new Date(iso).getTime()) / 1000);
  }

  function placeText(dispatch, report) {
    const source = report || dispatch;
    const parts = [source.location_text, source.kelurahan, source.kecamatan].filter(Boolean);
    let textValue = parts.join(", ");
    if (report && report.latitude !== null && report.longitude !== null) {
      textValue += ` (${report.latitude}, ${report.longitude})`;
    }
    return textValue || "—";
  }

  function person(entry) {
    const parts = [];
    for (const key of ["name", "role", "gender", "condition", "note"]) {
      if (entry[key]) parts.push(key === "name" ? entry[key] : `${labels.person[key]}: ${entry[key]}`);
    }
    if (entry.age !== null && entry.age !== undefined) parts.push(format(text.age, { age: entry.age }));
    return parts.join(", ");
  }

  function field(label, ...content) {
    return Sigap.el("div", null, Sigap.el("span", { class: "label" }, label), ...content);
  }

  async function act(button, path, body) {
    button.disabled = true;
    try {
      await Sigap.api("POST", path, body);
      message.classList.remove("error");
      message.textContent = "";
    } catch (error) {
      showError(error);
    }
    await load();
  }

  function actions(dispatch) {
    const box = Sigap.el("div", { class: "dispatch-actions" });
    if (dispatch.status === "sent") {
      const ack = Sigap.el("button", { type: "button", class: "ack-button" }, text.acknowledge);
      ack.addEventListener("click", () => act(ack, `/api/dispatches/${dispatch.id}/ack`, {}));
      box.append(ack);
    }
    if (FINAL.has(dispatch.status)) return box;
    const current = data.status_order[dispatch.status];
    const select = Sigap.el("select", { class: "status-select", name: "status" });
    for (const status of data.statuses) {
      if (status === "acknowledged" || data.status_order[status] <= current) continue;
      select.append(Sigap.el("option", { value: status }, labels.status[status] || status));
    }
    if (!select.options.length) return box;
    const note = Sigap.el("input", { name: "note", maxlength: 2000, placeholder: text.note });
    const save = Sigap.el("button", { type: "button", class: "status-save" }, text.save_status);
    save.addEventListener("click", () => act(save, `/api/dispatches/${dispatch.id}/status`, {
      status: select.value, note: note.value,
    }));
    box.append(select, note, save);
    return box;
  }

  function card(dispatch, report) {
    const acknowledged = dispatch.status !== "sent";
    const people = report && report.people && report.people.length
      ? Sigap.el("ul", null, report.people.map((entry) => Sigap.el("li", null, person(entry))))
      : "—";
    return Sigap.el("li", {
      class: "card dispatch",
      dataset: {
        dispatchId: dispatch.id,
        reportId: dispatch.report_id,
        acknowledged: String(acknowledged),
        status: dispatch.status,
      },
    },
      Sigap.el("div", { class: "dispatch-head" },
        Sigap.el("span", { class: `priority priority-${dispatch.priority}`, title: text.priority },
          `P${dispatch.priority}`),
        Sigap.el("span", { class: "category" }, labels.category[dispatch.category] || dispatch.category),
        Sigap.el("span", null, `${text.report} #${dispatch.report_id}`),
        data.agency ? null : Sigap.el("span", null, `${dispatch.agency_name} (${dispatch.agency_code})`),
        Sigap.el("span", { class: `badge status-${dispatch.status}`, "data-field": "status" },
          labels.status[dispatch.status] || dispatch.status),
        Sigap.el("span", { title: text.sent_at }, localTime(dispatch.sent_at)),
        Sigap.el("span", { class: "since-sent", title: text.since_sent, "data-sent-at": dispatch.sent_at },
          sinceSent(dispatch.sent_at)),
        dispatch.acknowledged_by
          ? Sigap.el("span", { class: "muted" }, format(text.acknowledged_by, { name: dispatch.acknowledged_by }))
          : Sigap.el("span", { class: "error" }, text.unacknowledged)),
      Sigap.el("div", { class: "dispatch-body" },
        field(text.location, placeText(dispatch, report)),
        field(text.people, people),
        field(text.description, Sigap.el("span", { class: "description" },
          (report && report.description) || "—"))),
      actions(dispatch));
  }

  // Return the reports by id: one list request, then one request per report that
  // the list missed, because it contains only the newest 500.
  async function reportsFor(dispatches) {
    const query = new URLSearchParams({ limit: "500" });
    if (agency()) query.set("agency", agency());
    const body = await Sigap.api("GET", `/api/reports?${query}`);
    const reports = new Map(body.reports.map((report) => [report.id, report]));
    const missing = [...new Set(dispatches.map((d) => d.report_id))].filter((id) => !reports.has(id));
    await Promise.all(missing.map(async (id) => {
      try {
        const detail = await Sigap.api("GET", `/api/reports/${id}`);
        reports.set(id, detail.report);
      } catch (error) {
        // The card still shows the dispatch's own report fields.
      }
    }));
    return reports;
  }

  async function loadOnce() {
    const query = new URLSearchParams({ limit: String(LIST_LIMIT) });
    if (agency()) query.set("agency", agency());
    if (includeFinal.checked) query.set("all", "1");
    const requested = [...pending];
    const body = await Sigap.api("GET", `/api/dispatches?${query}`);
    const reports = await reportsFor(body.dispatches);
    const fresh = [];
    for (const dispatch of body.dispatches) {
      if (!known.has(dispatch.id) && dispatch.status === "sent" && !firstLoad) fresh.push(dispatch.id);
      known.add(dispatch.id);
    }
    firstLoad = false;
    list.replaceChildren(...body.dispatches.map((d) => card(d, reports.get(d.report_id))));
    message.classList.remove("error");
    message.textContent = body.dispatches.length ? "" : text.empty;
    settleAlert(body.dispatches, requested);
    alertNew(fresh);
  }

  // Run one load at a time. A load requested during another runs once after it.
  async function load() {
    if (loading) {
      loading.again = true;
      return loading.promise;
    }
    loading = { again: false, promise: null };
    loading.promise = (async () => {
      try {
        do {
          loading.again = false;
          await loadOnce();
        } while (loading.again);
      } catch (error) {
        showError(error);
      } finally {
        loading = null;
      }
    })();
    return loading.promise;
  }

  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 200);
  }

  function concerns(event) {
    return !agency() || event.agency_code === agency();
  }

  alertBanner.addEventListener("click", dismissAlert);
  alertBanner.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") dismissAlert();
  });
  includeFinal.addEventListener("change", load);
  if (agencySelect) {
    const start = new URLSearchParams(window.location.search).get("agency");
    if (start) agencySelect.value = start;
    agencySelect.addEventListener("change", () => {
      const url = agencySelect.value ? `/portal?agency=${encodeURIComponent(agencySelect.value)}` : "/portal";
      history.replaceState(null, "", url);
      firstLoad = true;
      load();
    });
  }

  Sigap.events({
    "dispatch.new": (event) => {
      if (!concerns(event)) return;
      if (!known.has(event.id)) {
        known.add(event.id);
        alertNew([event.id]);
      }
      reloadSoon();
    },
    "dispatch.updated": (event) => { if (concerns(event)) reloadSoon(); },
  }, load);

  setInterval(() => {
    for (const node of list.querySelectorAll(".since-sent")) {
      node.textContent = sinceSent(node.dataset.sentAt);
    }
  }, 1000);
  setInterval(load, data.reload_seconds * 1000);
  load();
})();
