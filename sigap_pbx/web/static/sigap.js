// Shared page code: the session, JSON API calls with the CSRF token, the live
// event stream and small DOM helpers. Text from the server is always set with
// textContent, never as HTML.
"use strict";

const Sigap = (() => {
  const sessionNode = document.getElementById("sigap-session");
  const session = sessionNode ? JSON.parse(sessionNode.textContent) : null;

  async function api(method, path, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (session) options.headers["X-CSRF-Token"] = session.csrf_token;
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : response.statusText;
      const failure = new Error(message);
      failure.status = response.status;
      failure.code = data && data.error ? data.error.code : "http_error";
      throw failure;
    }
    return data;
  }

  // Open the event stream; `handlers` maps event kinds to functions of the data.
  // EventSource reconnects by itself; `onOpen` runs after every (re)connect so the
  // page can reload its state.
  function events(handlers, onOpen) {
    const status = document.getElementById("live-status");
    const source = new EventSource("/api/events");
    const show = (connected) => {
      if (!status) return;
      status.hidden = false;
      status.textContent = connected ? status.dataset.connected : status.dataset.disconnected;
      status.classList.toggle("down", !connected);
    };
    source.addEventListener("hello", () => { show(true); if (onOpen) onOpen(); });
    source.addEventListener("resync", () => { if (onOpen) onOpen(); });
    source.onerror = () => show(false);
    for (const [kind, handler] of Object.entries(handlers)) {
      source.addEventListener(kind, (message) => handler(JSON.parse(message.data)));
    }
    return source;
  }

  // Build an element; `children` are nodes or strings (added as text).
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function duration(seconds) {
    const total = Math.max(0, Math.floor(seconds));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
  }

  // A short two-tone alert made with Web Audio, so no sound file is loaded.
  function beep() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return false;
    const context = new Context();
    const gain = context.createGain();
    gain.gain.value = 0.2;
    gain.connect(context.destination);
    [880, 660, 880].forEach((frequency, index) => {
      const tone = context.createOscillator();
      tone.frequency.value = frequency;
      tone.connect(gain);
      tone.start(context.currentTime + index * 0.25);
      tone.stop(context.currentTime + index * 0.25 + 0.2);
    });
    return true;
  }

  function messages(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : {};
  }

  return { session, api, events, el, duration, beep, messages };
})();
