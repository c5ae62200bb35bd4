// Supervisor wallboard: redraws queues, operators, shift figures and alarms from
// each "wallboard" snapshot, and sends the supervisor's actions to the API.
// The server renders the first view with the same elements (wallboard.html), so
// keep the data attributes here and there in step. Caller numbers and names are
// untrusted and only ever set as text through Sigap.el.
"use strict";

(() => {
  const el = Sigap.el;
  const text = Sigap.messages("wallboard-messages");
  const context = Sigap.messages("wallboard-context");
  const FIGURES = ["offered", "answered", "abandoned", "within_10", "within_15", "within_20"];
  const SPY_MODES = { "spy-listen": "listen", "spy-whisper": "whisper", "spy-barge": "barge" };
  let latest = Sigap.messages("wallboard-data");
  // Snapshots can arrive out of order around a reconnect (event vs. reload).
  let latestAt = latest.generated_at || "";

  const duration = (seconds) => (seconds === null || seconds === undefined ? "—" : Sigap.duration(seconds));
  const clock = (iso) => (iso ? iso.slice(11, 16) : "");

  // The replacements are functions, so a "$" in an alarm's subject stays as it is.
  const fill = (template, values) =>
    template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));

  const pauseLabel = (reason) => text[`pause_reason.${reason}`] || reason;

  // The server picks the label's message key and its values (Wallboard alarm_label).
  function alarmLabel(alarm) {
    const { key, values } = alarm.label;
    return fill(text[`alarm.${key}`] || text["alarm.other"], values);
  }

  function figuresErrorLabel(error) {
    return text[`figures_error.${error.code}`] || text["figures_error.other"];
  }

  function showMessage(message, failed) {
    const node = document.getElementById("wallboard-message");
    node.hidden = false;
    node.textContent = message;
    node.classList.toggle("error", Boolean(failed));
    node.classList.remove("no-phone");
  }

  // Parts of the page ------------------------------------------------------------

  function renderShift(snapshot) {
    const node = document.querySelector('[data-field="shift"]');
    const shift = snapshot.shift;
    if (!shift) {
      node.replaceChildren(el("span", { class: "muted" }, text.no_shift));
      return;
    }
    node.replaceChildren(
      el("b", {}, shift.name),
      shift.crew ? ` · ${text.crew} ${shift.crew} ` : " ",
      el("span", { class: "muted" }, `${clock(shift.start_local)}–${clock(shift.end_local)}`),
    );
  }

  function renderFigures(snapshot) {
    for (const name of FIGURES) {
      const node = document.querySelector(`[data-figure="${name}"]`);
      const figure = snapshot.figures ? snapshot.figures[name] : null;
      node.dataset.value = figure ? String(figure.value) : "";
      const children = [figure ? String(figure.value) : "—"];
      if (name.startsWith("within_")) {
        const percent = figure && figure.percent !== null ? `${figure.percent.toFixed(1)}%` : "";
        children.push(" ", el("span", { class: "percent" }, percent));
      }
      node.replaceChildren(...children);
    }
    const error = document.getElementById("figures-error");
    error.hidden = !snapshot.figures_error;
    error.textContent = snapshot.figures_error ? figuresErrorLabel(snapshot.figures_error) : "";
    // The controller's own English message, with the fix, stays in the tooltip.
    error.title = snapshot.figures_error ? snapshot.figures_error.message : "";
  }

  function queueSection(queue) {
    const rows = queue.callers.map((caller) =>
      el("tr", { "data-caller": caller.uniqueid },
        el("td", { class: "caller-number", title: caller.caller_number }, caller.caller_number),
        el("td", { class: "caller-name", title: caller.caller_name }, caller.caller_name),
        el("td", { "data-field": "wait", "data-value": caller.wait_seconds }, duration(caller.wait_seconds))));
    if (!rows.length) rows.push(el("tr", { class: "empty" }, el("td", { class: "muted" }, text.no_callers)));
    const figure = (field, value, label, shown) =>
      el("div", {}, el("div", { class: "figure", "data-field": field, "data-value": value }, shown), label);
    return el("section", { class: "card wb-queue", "data-queue": queue.name },
      el("h2", {}, `${text.queue} ${queue.name}`,
        queue.primary ? [" ", el("span", { class: "muted" }, `(${text.primary})`)] : null),
      el("div", { class: "figures" },
        figure("waiting", queue.waiting, text.waiting, String(queue.waiting)),
        figure("longest_wait", queue.longest_wait, text.longest_wait, duration(queue.longest_wait)),
        el("div", {}, el("div", { class: "figure", "data-field": "available" },
          `${queue.available}/${queue.members}`), text.available_members)),
      el("table", { class: "callers" }, el("tbody", {}, rows)));
  }

  function renderQueues(snapshot) {
    const sections = snapshot.queues.map(queueSection);
    if (!sections.length) sections.push(el("p", { class: "card muted" }, text.no_queues));
    document.getElementById("queues").replaceChildren(...sections);
  }

  // The states in which each operator action makes sense, as on the console.
  const ACTION_STATES = {
    "op-pause": ["available", "wrapup"],
    "op-unpause": ["paused", "wrapup"],
    "op-logout": ["available", "ringing", "on_call", "wrapup", "paused", "unreachable"],
  };

  function operatorRow(operator) {
    const button = (cls, label) =>
      el("button", {
        type: "button",
        class: cls,
        "data-endpoint": operator.endpoint,
        disabled: !ACTION_STATES[cls].includes(operator.state),
      }, label);
    // Spying rings the supervisor's own phone, so an account without one cannot spy.
    const spyButton = (cls, label) =>
      el("button", {
        type: "button",
        class: cls,
        "data-endpoint": operator.endpoint,
        disabled: !context.own_endpoint,
        title: context.own_endpoint ? null : text.no_phone,
      }, label);
    return el("tr", { "data-operator": operator.endpoint, "data-state": operator.state },
      el("td", { class: "operator" }, el("div", { class: "operator-cell" },
        el("b", { class: "operator-name", title: operator.name }, operator.name), " ",
        el("span", { class: "muted" }, operator.endpoint))),
      el("td", {}, el("span", { class: `badge state-${operator.state}`, "data-field": "state" },
        text[`state.${operator.state}`] || operator.state)),
      el("td", { "data-field": "duration" }, duration(operator.seconds)),
      el("td", { "data-field": "pause_reason" },
        operator.state === "paused" ? pauseLabel(operator.pause_reason) : ""),
      el("td", { "data-field": "queues", class: "muted" }, operator.queues.map((q) => q.queue).join(", ")),
      el("td", { class: "actions" },
        spyButton("spy-listen", text.listen), " ",
        spyButton("spy-whisper", text.whisper), " ",
        spyButton("spy-barge", text.barge), " ",
        button("op-pause", text.pause), " ",
        button("op-unpause", text.unpause), " ",
        button("op-logout", text.logout)));
  }

  function renderOperators(snapshot) {
    document.getElementById("operators").replaceChildren(
      ...snapshot.operators.map(operatorRow));
  }

  function alarmItem(alarm) {
    const classes = ["alarm", `severity-${alarm.severity}`];
    if (!alarm.acknowledged_at) classes.push("unacknowledged");
    let tail = null;
    if (alarm.acknowledged_at) {
      tail = el("span", { class: "muted" }, `${text.acked_by} ${alarm.acknowledged_by}`);
    } else if (alarm.id !== null) {
      tail = el("button", { type: "button", class: "ack-alarm", "data-alarm-id": alarm.id }, text.ack);
    }
    return el("li", { class: classes.join(" "), "data-alarm-id": alarm.id },
      el("span", { class: "alarm-time" }, clock(alarm.raised_local)), " ",
      el("span", { class: "alarm-message", "data-kind": alarm.kind, title: alarm.message_local },
        alarmLabel(alarm)), " ", tail);
  }

  function renderAlarms(snapshot) {
    const items = snapshot.alarms.map(alarmItem);
    if (!items.length) items.push(el("li", { class: "muted empty" }, text.no_alarms));
    document.getElementById("alarms").replaceChildren(...items);
    fitAlarms();
  }

  // In TV mode the alarm card ends at the bottom of the screen. Show only the
  // alarms that fit whole, and count the others next to the card's title. Critical
  // alarms get the room first, then the rest, and the newest come first within each
  // group. The list keeps its newest-first order, because this only hides items.
  function fitAlarms() {
    const list = document.getElementById("alarms");
    const more = document.getElementById("alarms-more");
    const items = [...list.querySelectorAll("li.alarm")];
    for (const item of items) item.hidden = false;
    let hidden = 0;
    if (document.body.classList.contains("wall") && items.length) {
      const card = list.closest(".card");
      const style = getComputedStyle(card);
      const bottom = card.getBoundingClientRect().bottom - parseFloat(style.paddingBottom)
        - parseFloat(style.borderBottomWidth);
      if (items[items.length - 1].getBoundingClientRect().bottom > bottom) {
        let room = bottom - list.getBoundingClientRect().top;
        const heights = new Map(items.map((item) => [item, item.getBoundingClientRect().height]));
        const critical = items.filter((item) => item.classList.contains("severity-critical"));
        const others = items.filter((item) => !item.classList.contains("severity-critical"));
        const visible = new Set();
        for (const group of [critical, others]) {
          for (const item of group) {
            if (heights.get(item) > room) break;
            room -= heights.get(item);
            visible.add(item);
          }
        }
        for (const item of items) item.hidden = !visible.has(item);
        hidden = items.length - visible.size;
      }
    }
    more.hidden = hidden === 0;
    more.textContent = hidden ? fill(text.alarms_more, { count: hidden }) : "";
  }

  function render(snapshot) {
    if (!snapshot || (snapshot.generated_at || "") < latestAt) return;
    latest = snapshot;
    latestAt = snapshot.generated_at || "";
    document.getElementById("sync-banner").hidden = Boolean(snapshot.synced);
    renderShift(snapshot);
    renderFigures(snapshot);
    renderQueues(snapshot);
    renderOperators(snapshot);
    renderAlarms(snapshot);
  }

  async function reload() {
    try {
      render(await Sigap.api("GET", "/api/wallboard"));
    } catch (error) {
      showMessage(`${text.failed}: ${error.message}`, true);
    }
  }

  // Actions --------------------------------------------------------------------------

  async function act(call) {
    try {
      const result = await call();
      showMessage(result || text.done, false);
    } catch (error) {
      showMessage(`${text.failed}: ${error.message}`, true);
    }
    reload();
  }

  function onClick(event) {
    const button = event.target.closest("button");
    if (!button) return;
    const endpoint = button.dataset.endpoint;
    const path = endpoint ? `/api/operators/${encodeURIComponent(endpoint)}` : "";
    for (const [cls, mode] of Object.entries(SPY_MODES)) {
      if (button.classList.contains(cls)) {
        act(async () => {
          const result = await Sigap.api("POST", "/api/wallboard/spy", { endpoint, mode });
          return text.spy_started.replace("{phone}", result.supervisor_endpoint);
        });
        return;
      }
    }
    if (button.classList.contains("op-pause")) {
      const reason = document.getElementById("pause-reason").value;
      act(() => Sigap.api("POST", `${path}/pause`, { reason }).then(() => null));
    } else if (button.classList.contains("op-unpause")) {
      act(() => Sigap.api("POST", `${path}/unpause`).then(() => null));
    } else if (button.classList.contains("op-logout")) {
      if (!window.confirm(text.confirm_logout.replace("{endpoint}", endpoint))) return;
      act(() => Sigap.api("POST", `${path}/logout`).then(() => null));
    } else if (button.classList.contains("ack-alarm")) {
      const id = encodeURIComponent(button.dataset.alarmId);
      act(() => Sigap.api("POST", `/api/alarms/${id}/ack`).then(() => null));
    } else if (button.id === "tv-toggle") {
      toggleWall();
    }
  }

  function toggleWall() {
    const wall = document.body.classList.toggle("wall");
    const button = document.getElementById("tv-toggle");
    button.textContent = wall ? button.dataset.off : button.dataset.on;
    const url = new URL(window.location.href);
    if (wall) url.searchParams.set("tv", "1");
    else url.searchParams.delete("tv");
    window.history.replaceState(null, "", url);
    fitAlarms();
  }

  document.addEventListener("click", onClick);
  window.addEventListener("resize", fitAlarms);
  // Fit the server's first view now, and again once the page's fonts have loaded.
  fitAlarms();
  document.fonts.ready.then(fitAlarms);
  if (!context.own_endpoint) {
    showMessage(text.no_phone, false);
    // TV mode hides this notice, because the spy buttons are hidden there too.
    document.getElementById("wallboard-message").classList.add("no-phone");
  }
  // A (re)connected stream may have missed snapshots, so the page reloads one.
  // Show whether the supervisor's phone answered a listen, whisper or barge call.
  function spyResult(result) {
    const message = result.answered ? text.spy_answered : text.spy_unanswered;
    showMessage(message.replace("{endpoint}", result.endpoint), !result.answered);
  }

  Sigap.events({ wallboard: render, "spy.result": spyResult }, reload);
})();
