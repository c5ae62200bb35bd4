// The operator console: the call card from "call.card" events, the caller's
// earlier calls and diversion flags, the incident report form, dispatch and
// forward buttons, the callback list and the operator's own queue state.
// Caller-supplied text is set only as text (Sigap.el), and cut to the card's limit.
"use strict";

(() => {
  const data = Sigap.messages("console-data");
  const text = data.messages || {};
  const labels = data.labels || {};
  const myEndpoint = data.endpoint || null;
  const supervisor = data.role === "supervisor" || data.role === "admin";
  const card = document.getElementById("call-card");
  const numberField = card.querySelector('[data-field="caller_number"]');
  const limit = Number(numberField.dataset.limit) || 64;
  const form = document.getElementById("report-form");
  const message = document.getElementById("console-message");
  let formDirty = false;
  // Consults in progress by caller uniqueid: the caller is on hold, so the call
  // cannot be forwarded again until the consult ends.
  const consults = new Map();

  const format = (template, values) =>
    String(template || "").replace(/\{(\w+)\}/g, (_, key) => (key in values ? values[key] : ""));
  const cap = (value) => String(value || "").slice(0, limit);
  const localTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

  function show(note, failed) {
    message.hidden = false;
    message.textContent = note;
    message.classList.toggle("error", Boolean(failed));
  }

  function failure(error) {
    const message = text[`error.${error.code}`] || error.message;
    show(format(text.failed, { message }), true);
  }

  // Call card ---------------------------------------------------------------------

  function setCard(info) {
    const state = info && info.state !== "ended" ? info.state : "idle";
    card.dataset.state = state;
    card.dataset.uniqueid = state === "idle" ? "" : info.uniqueid;
    card.querySelector('[data-field="card_state"]').textContent = text[state] || state;
    if (state === "idle") {
      updateForwardButtons();
      return;
    }
    numberField.textContent = cap(info.caller_number) || "—";
    card.querySelector('[data-field="caller_name"]').textContent = cap(info.caller_name) || "—";
    updateForwardButtons();
    if (form.dataset.callUniqueid !== info.uniqueid) {
      if (!formDirty) {
        resetForm();
        form.dataset.callUniqueid = info.uniqueid;
      } else {
        // Never drop what the operator typed: the form stays with its own call
        // until it is saved.
        show(text.unsaved_report, true);
      }
    }
    const numberInput = document.querySelector('#diversion-form [name="number"]');
    if (numberInput) numberInput.value = cap(info.caller_number);
    loadCaller(info.caller_number, info.uniqueid);
  }

  async function loadCaller(number, uniqueid) {
    const history = document.getElementById("caller-history");
    const flags = document.getElementById("diversions");
    if (!number) {
      history.replaceChildren(Sigap.el("li", { class: "muted" }, text.no_history));
      flags.replaceChildren(Sigap.el("li", { class: "muted" }, text.no_diversions));
      return;
    }
    const query = new URLSearchParams({ number: cap(number), uniqueid: uniqueid || "" });
    try {
      const info = await Sigap.api("GET", `/api/console/caller?${query}`);
      if (card.dataset.uniqueid && card.dataset.uniqueid !== uniqueid) return;
      renderHistory(info.calls);
      renderDiversions(info.diversions);
    } catch (error) {
      failure(error);
    }
  }

  function label(field, value) {
    return (labels[field] && labels[field][value]) || value;
  }

  function renderHistory(calls) {
    const list = document.getElementById("caller-history");
    if (!calls.length) {
      list.replaceChildren(Sigap.el("li", { class: "muted" }, text.no_history));
      return;
    }
    list.replaceChildren(...calls.map((call) => Sigap.el(
      "li", { dataset: { callId: call.id } },
      Sigap.el("span", { class: "muted" }, localTime(call.arrived_at)), " ",
      call.call_type ? Sigap.el("b", {}, label("call_type", call.call_type)) : null, " ",
      call.reports.length
        ? call.reports.map((report) => Sigap.el(
          "span", { class: "report-ref", dataset: { reportId: report.id } },
          `${text.report} #${report.id} · ${label("category", report.category)} · P${report.priority}`))
        : Sigap.el("span", { class: "muted" }, text.no_report),
    )));
  }

  function renderDiversions(flags) {
    const list = document.getElementById("diversions");
    const active = flags.filter((flag) => flag.in_force);
    if (!active.length) {
      list.replaceChildren(Sigap.el("li", { class: "muted" }, text.no_diversions));
      return;
    }
    list.replaceChildren(...active.map((flag) => Sigap.el(
      "li", { class: "diversion", dataset: { diversionId: flag.id } },
      Sigap.el("b", {}, text[`diversion.${flag.action}`] || flag.action), " ",
      cap(flag.reason), " ",
      Sigap.el("span", { class: "muted" },
        `${text.until} ${localTime(flag.until)} ${text.set_by} ${flag.set_by}`),
      supervisor
        ? Sigap.el("button", { type: "button", class: "lift-diversion", onclick: () => lift(flag.id) },
          text.lift)
        : null,
    )));
  }

  async function lift(id) {
    try {
      await Sigap.api("POST", `/api/diversions/${id}/lift`, {});
      reloadCaller();
    } catch (error) {
      failure(error);
    }
  }

  function reloadCaller() {
    const number = numberField.textContent === "—" ? "" : numberField.textContent;
    loadCaller(number, card.dataset.uniqueid);
  }

  const diversionForm = document.getElementById("diversion-form");
  if (diversionForm) {
    diversionForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = new FormData(diversionForm);
      const until = new Date(fields.get("until"));
      try {
        await Sigap.api("POST", "/api/diversions", {
          number: fields.get("number"),
          action: fields.get("action"),
          reason: fields.get("reason"),
          until: Number.isNaN(until.getTime()) ? String(fields.get("until")) : until.toISOString(),
        });
        diversionForm.querySelector('[name="reason"]').value = "";
        loadCaller(fields.get("number"), card.dataset.uniqueid);
      } catch (error) {
        failure(error);
      }
    });
  }

  // Report form, dispatch and forward ------------------------------------------------

  function resetForm() {
    form.reset();
    delete form.dataset.reportId;
    delete form.dataset.version;
    form.dataset.callUniqueid = "";
    formDirty = false;
    document.querySelectorAll("[data-dispatch-agency]").forEach((button) => { button.disabled = true; });
  }

  function parsePeople(raw) {
    return String(raw || "").split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
      const [name, role, age] = line.split(",").map((part) => part.trim());
      const person = { name: name || "" };
      if (role) person.role = role;
      if (age && /^\d{1,3}$/.test(age)) person.age = Number(age);
      return person;
    });
  }

  function reportFields() {
    const fields = new FormData(form);
    return {
      category: fields.get("category"),
      call_type: fields.get("call_type"),
      priority: Number(fields.get("priority")),
      location_text: fields.get("location") || "",
      description: fields.get("description") || "",
      people: parsePeople(fields.get("people")),
    };
  }

  form.addEventListener("input", () => { formDirty = true; });
  // A blank form for the call on the card (or for no call), after the operator
  // agrees to drop unsaved changes.
  document.getElementById("report-new").addEventListener("click", () => {
    if (formDirty && !window.confirm(text.discard_report)) return;
    resetForm();
    form.dataset.callUniqueid = card.dataset.uniqueid || "";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = reportFields();
    try {
      let report;
      if (form.dataset.reportId) {
        body.version = Number(form.dataset.version);
        const outcome = await Sigap.api("PATCH", `/api/reports/${form.dataset.reportId}`, body);
        report = outcome.report || outcome;
      } else {
        if (form.dataset.callUniqueid) body.call_uniqueid = form.dataset.callUniqueid;
        report = await Sigap.api("POST", "/api/reports", body);
      }
      form.dataset.reportId = String(report.id);
      form.dataset.version = String(report.version);
      formDirty = false;
      document.querySelectorAll("[data-dispatch-agency]").forEach((button) => { button.disabled = false; });
      show(format(text.saved, { id: report.id }), false);
    } catch (error) {
      failure(error);
    }
  });

  document.querySelectorAll("[data-dispatch-agency]").forEach((button) => {
    button.addEventListener("click", async () => {
      if (!form.dataset.reportId) return;
      try {
        await Sigap.api("POST", `/api/reports/${form.dataset.reportId}/dispatch`,
          { agencies: [button.dataset.dispatchAgency] });
        show(format(text.dispatched, { agency: button.textContent }), false);
      } catch (error) {
        failure(error);
      }
    });
  });

  // Forwarding needs a connected call whose caller is not on hold for a consult.
  function updateForwardButtons() {
    const enabled = card.dataset.state === "connected" && !consults.has(card.dataset.uniqueid);
    document.querySelectorAll("[data-forward-agency]").forEach((button) => { button.disabled = !enabled; });
  }

  document.querySelectorAll("[data-forward-agency]").forEach((button) => {
    button.addEventListener("click", async () => {
      const uniqueid = card.dataset.uniqueid;
      if (!uniqueid) return;
      const body = { agency: button.dataset.forwardAgency, mode: button.dataset.forwardMode };
      if (form.dataset.reportId) body.report_id = Number(form.dataset.reportId);
      try {
        await Sigap.api("POST", `/api/calls/${encodeURIComponent(uniqueid)}/forward`, body);
        const agency = button.closest("tr").querySelector("th").textContent;
        if (body.mode === "consult") {
          show(format(text.consult_started, { agency }), false);
          loadConsults();
        } else {
          show(format(text.forwarded, { agency }), false);
        }
      } catch (error) {
        failure(error);
      }
    });
  });

  // Consults: the caller on hold while the operator's phone rings the agency ---------

  const consultPanel = document.getElementById("consult-panel");
  const consultList = document.getElementById("consults");

  function renderConsults() {
    consultPanel.hidden = consults.size === 0;
    updateForwardButtons();
    consultList.replaceChildren(...[...consults.values()].map((consult) => {
      const finish = (how) => Sigap.el("button", {
        type: "button",
        class: how === "join" ? "primary" : "",
        "data-consult-call": consult.call,
        "data-consult-how": how,
        onclick: () => completeConsult(consult, how),
      }, how === "join" ? text.consult_join : text.consult_transfer);
      return Sigap.el("li", { "data-consult": consult.call },
        Sigap.el("span", {}, format(text.consult_with, {
          agency: consult.agency_name || consult.agency,
          number: cap(consult.caller_number) || consult.call,
        })),
        Sigap.el("span", { class: "consult-buttons" }, finish("join"), finish("transfer")));
    }));
  }

  async function completeConsult(consult, how) {
    try {
      await Sigap.api("POST",
        `/api/calls/${encodeURIComponent(consult.call)}/consult/${how}`, {});
      consults.delete(consult.call);
      renderConsults();
      show(format(how === "join" ? text.consult_joined : text.consult_transferred,
        { agency: consult.agency_name || consult.agency }), false);
    } catch (error) {
      failure(error);
    }
  }

  async function loadConsults() {
    try {
      const result = await Sigap.api("GET", "/api/consults");
      consults.clear();
      result.consults.forEach((consult) => consults.set(consult.call, consult));
      renderConsults();
    } catch (error) {
      failure(error);
    }
  }

  function onConsult(info) {
    if (!supervisor && info.operator !== myEndpoint) return;
    if (info.state === "started") {
      consults.set(info.call, info);
    } else {
      const agency = info.agency_name || info.agency;
      if (info.state === "ended" && consults.has(info.call)) {
        // The caller went back to the queue: the operator must know. A caller who
        // hung up, or a consult not found after a reconnect, just leaves the list.
        if (info.reason === "operator_gone" || info.reason === "requeued") {
          show(format(text.consult_ended, { agency }), true);
        } else if (info.reason === "caller_gone") {
          show(format(text.consult_caller_gone, { agency }), false);
        }
      }
      consults.delete(info.call);
    }
    renderConsults();
  }

  // Callbacks -----------------------------------------------------------------------

  async function loadCallbacks() {
    const list = document.getElementById("callbacks");
    try {
      const result = await Sigap.api("GET", "/api/callbacks");
      if (!result.callbacks.length) {
        list.replaceChildren(Sigap.el("li", { class: "muted" }, text.no_callbacks));
        return;
      }
      list.replaceChildren(...result.callbacks.map(callbackRow));
    } catch (error) {
      failure(error);
    }
  }

  function callbackRow(call) {
    const number = cap(call.caller_number_raw || call.caller_number);
    const last = call.attempts.length ? call.attempts[call.attempts.length - 1] : null;
    const calling = last && last.outcome === "calling";
    return Sigap.el(
      "li", { class: "callback-row", dataset: { callbackCallId: call.call_id } },
      Sigap.el("b", { class: "caller-number" }, number), " ",
      Sigap.el("span", { class: "muted" }, localTime(call.arrived_at)), " ",
      last
        ? Sigap.el("span", { class: "muted", dataset: { field: "last_outcome" } },
          `${call.attempts.length} ${text.attempts}: ${text[`outcome.${last.outcome}`] || last.outcome}`)
        : null,
      Sigap.el("button", {
        type: "button", class: "callback-button", disabled: !myEndpoint || calling,
        onclick: (event) => callBack(call.call_id, number, event.target),
      }, text.call_back),
    );
  }

  async function callBack(callId, number, button) {
    button.disabled = true;
    try {
      await Sigap.api("POST", `/api/callbacks/${callId}`, {});
      show(format(text.calling_back, { number }), false);
    } catch (error) {
      button.disabled = false;
      failure(error);
    }
  }

  // Own state -----------------------------------------------------------------------

  // The states in which each state control applies. Any state but logged_off is
  // in a queue, so it can log out; an unknown state enables none of them.
  const CONTROL_STATES = {
    login: ["logged_off"],
    logout: ["available", "ringing", "on_call", "wrapup", "paused", "unreachable"],
    pause: ["available", "wrapup"],
    unpause: ["paused", "wrapup"],
  };

  function setState(state) {
    const badge = document.querySelector('[data-field="my_state"]');
    const name = state ? state.state : "unknown";
    badge.dataset.state = name;
    badge.className = `badge state-${name}`;
    badge.textContent = text[`state.${name}`] || name;
    if (state && state.paused_reason) {
      // Show the reason as the pause menu names it; codes without a menu entry
      // (wrapup, unreachable, missed_calls) as they are.
      const option = [...document.querySelectorAll('#state-controls select[name="pause_reason"] option')]
        .find((item) => item.value === state.paused_reason);
      badge.textContent += ` (${option ? option.textContent : cap(state.paused_reason)})`;
    }
    for (const [id, states] of Object.entries(CONTROL_STATES)) {
      document.getElementById(id).disabled = !myEndpoint || !states.includes(name);
    }
  }

  async function operatorAction(action, body) {
    if (!myEndpoint) return;
    try {
      await Sigap.api("POST", `/api/operators/${encodeURIComponent(myEndpoint)}/${action}`, body);
      setTimeout(() => loadState(false), 500);
    } catch (error) {
      failure(error);
    }
  }

  document.getElementById("pause").addEventListener("click", () => operatorAction(
    "pause", { reason: document.querySelector('#state-controls select[name="pause_reason"]').value }));
  document.getElementById("unpause").addEventListener("click", () => operatorAction("unpause", {}));
  document.getElementById("login").addEventListener("click", () => operatorAction("login", {}));
  document.getElementById("logout").addEventListener("click", () => operatorAction("logout", {}));
  setState(null);

  async function loadState(withCard = true) {
    try {
      const result = await Sigap.api("GET", "/api/console/state");
      setState(result.state);
      if (!withCard) return;
      if (result.card) setCard(result.card);
      else if (card.dataset.state !== "idle") setCard(null);
    } catch (error) {
      failure(error);
    }
  }

  // Live events ---------------------------------------------------------------------

  Sigap.events({
    "call.card": (info) => {
      if (info.endpoint !== myEndpoint) return;
      if (info.state === "ended" && card.dataset.uniqueid !== info.uniqueid) return;
      setCard(info);
      if (info.state === "ringing") Sigap.beep();
      loadState(false);
    },
    "callback.updated": () => loadCallbacks(),
    "forward.consult": onConsult,
    "operator.state": (info) => {
      if (info.endpoint === myEndpoint) setState(info);
    },
  }, () => { loadState(); loadCallbacks(); loadConsults(); });
})();
