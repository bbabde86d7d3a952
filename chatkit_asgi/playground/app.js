// ChatKit playground: talks to the ChatKit endpoint this page is served from.
// Plain ES module, no dependencies, no build step.

const ENDPOINT = new URL(".", location.href).href; // the page lives at {mount}/
const UPLOAD_URL = new URL("upload", ENDPOINT).href; // direct upload strategy
const HEADERS_KEY = "chatkit-playground.headers";
const MAX_LOG = 2000;

const $ = (id) => document.getElementById(id);

const state = {
  thread: null, // the open thread's metadata, null for a new one
  items: [], // its items, in order
  threadsAfter: null,
  controller: null, // AbortController of the running stream
  streaming: false,
  pendingAttachments: [], // uploaded, waiting for the next message
  uploads: 0,
};

// -- small helpers -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function extraHeaders() {
  try {
    const parsed = JSON.parse(localStorage.getItem(HEADERS_KEY) || "{}");
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

function setStatus(text) {
  $("status").textContent = text;
}

function showBanner(text, kind = "error") {
  const banner = $("banner");
  banner.textContent = text;
  banner.className = kind === "error" ? "" : kind;
  banner.hidden = !text;
}

function describeError(status, body) {
  const error = body && body.error;
  if (error && error.code) return `HTTP ${status} ${error.code}: ${error.message || ""}`.trim();
  return `HTTP ${status}`;
}

class HTTPError extends Error {
  constructor(status, body) {
    super(describeError(status, body));
    this.status = status;
    this.body = body;
  }
}

// -- the event log -------------------------------------------------------------------

function logEntry(className, time, label, detail) {
  const log = $("event-log");
  const summary = el("summary", {}, el("span", { className: "t" }, time), el("span", { className: "type" }, label));
  const entry = el("li", { className, dataset: { type: label } }, detail === undefined
    ? summary
    : el("details", {}, summary, el("pre", {}, detail)));
  log.append(entry);
  while (log.childElementCount > MAX_LOG) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
  return entry;
}

function clock() {
  return new Date().toLocaleTimeString(undefined, { hour12: false });
}

function elapsed(started) {
  return `+${Math.round(performance.now() - started)} ms`;
}

// -- HTTP ----------------------------------------------------------------------------

async function call(type, params) {
  const body = JSON.stringify({ type, params });
  logEntry("request", clock(), `→ ${type}`, body);
  const started = performance.now();
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: { ...extraHeaders(), "content-type": "application/json", accept: "application/json" },
    body,
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: reported below
  }
  logEntry(response.ok ? "response" : "error", elapsed(started), `← ${response.status} ${type}`, text);
  if (!response.ok) throw new HTTPError(response.status, json);
  return json;
}

/** Sends a streaming request and applies every SSE event as it arrives. */
async function stream(type, params) {
  if (state.streaming) return;
  const controller = new AbortController();
  state.controller = controller;
  setStreaming(true);
  showBanner("");
  setStatus("Waiting for the reply…");
  const body = JSON.stringify({ type, params });
  logEntry("request", clock(), `→ ${type}`, body);
  const started = performance.now();
  try {
    const response = await fetch(ENDPOINT, {
      method: "POST",
      headers: { ...extraHeaders(), "content-type": "application/json", accept: "text/event-stream" },
      body,
      signal: controller.signal,
    });
    if (!response.ok) {
      const text = await response.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        // shown raw
      }
      logEntry("error", elapsed(started), `← ${response.status} ${type}`, text);
      showBanner(describeError(response.status, json));
      setStatus("");
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        // Heartbeats are comment lines with no blank line after them: log each on arrival.
        const comment = /^:[^\r\n]*\r?\n/.exec(buffer);
        if (comment !== null) {
          logEntry("ping", elapsed(started), comment[0].slice(1).trim() || "comment");
          buffer = buffer.slice(comment[0].length);
          continue;
        }
        const match = /\r?\n\r?\n/.exec(buffer);
        if (match === null) break;
        const frame = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        handleFrame(frame, started);
      }
    }
    if (buffer.trim()) handleFrame(buffer, started);
    logEntry("end", elapsed(started), "stream ended");
    setStatus("");
  } catch (error) {
    if (error.name === "AbortError") {
      logEntry("end", elapsed(started), "stream aborted (Stop)");
      setStatus("Stopped");
    } else {
      logEntry("error", elapsed(started), `stream failed: ${error.message}`);
      showBanner(`The stream failed: ${error.message}`);
      setStatus("");
    }
  } finally {
    state.controller = null;
    setStreaming(false);
    for (const item of state.items) markStreaming(item.id, false);
    refreshThreads();
  }
}

function handleFrame(frame, started) {
  const data = [];
  for (const line of frame.split(/\r?\n/)) {
    if (line.startsWith(":")) {
      logEntry("ping", elapsed(started), line.slice(1).trim() || "comment");
    } else if (line.startsWith("data:")) {
      data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
    }
  }
  if (!data.length) return;
  const raw = data.join("\n");
  let event;
  try {
    event = JSON.parse(raw);
  } catch {
    logEntry("error", elapsed(started), "unparsable event", raw);
    return;
  }
  logEntry(event.type === "error" ? "error" : "event", elapsed(started), event.type, raw);
  applyEvent(event);
}

// -- applying events -------------------------------------------------------------------

function applyEvent(event) {
  switch (event.type) {
    case "stream_options":
      $("stop").disabled = !event.stream_options.allow_cancel;
      break;
    case "thread.created":
      setThread(event.thread);
      refreshThreads();
      break;
    case "thread.updated":
      setThread(event.thread);
      renameThreadInList(event.thread);
      break;
    case "thread.item.added":
      upsertItem(event.item, true);
      setStatus("Streaming…");
      break;
    case "thread.item.done":
    case "thread.item.replaced":
      upsertItem(event.item, false);
      break;
    case "thread.item.removed":
      removeItem(event.item_id);
      break;
    case "thread.item.updated":
      updateItem(event.item_id, event.update);
      break;
    case "progress_update":
      setStatus(event.text);
      break;
    case "notice":
      showBanner(`${event.title ? `${event.title}: ` : ""}${event.message}`, event.level === "danger" ? "error" : "info");
      break;
    case "error":
      showBanner(`error ${event.code}${event.message ? `: ${event.message}` : ""}${event.allow_retry ? " (retry allowed)" : ""}`);
      break;
    default:
      break; // client_effect and anything newer: in the log only
  }
}

function setThread(thread) {
  state.thread = thread;
  $("thread-title").textContent = thread ? thread.title || "Untitled thread" : "New thread";
  $("thread-id").textContent = thread ? thread.id : "";
  const wanted = thread ? `#thread=${thread.id}` : "";
  if (location.hash !== wanted) history.replaceState(null, "", wanted || location.pathname + location.search);
  for (const button of document.querySelectorAll("#thread-list button")) {
    button.classList.toggle("current", !!thread && button.dataset.threadId === thread.id);
  }
}

function renameThreadInList(thread) {
  for (const button of document.querySelectorAll("#thread-list button")) {
    if (button.dataset.threadId === thread.id) {
      button.querySelector(".title").textContent = thread.title || "Untitled thread";
    }
  }
}

function findItem(id) {
  return state.items.find((item) => item.id === id);
}

function upsertItem(item, streaming) {
  const index = state.items.findIndex((known) => known.id === item.id);
  if (index >= 0) state.items[index] = item;
  else state.items.push(item);
  renderItem(item, streaming);
}

function removeItem(id) {
  state.items = state.items.filter((item) => item.id !== id);
  const node = itemNode(id);
  if (node) node.remove();
}

function updateItem(id, update) {
  const item = findItem(id);
  if (!item) return;
  switch (update.type) {
    case "assistant_message.content_part.added":
    case "assistant_message.content_part.done":
      item.content[update.content_index] = update.content;
      break;
    case "assistant_message.content_part.text_delta": {
      const part = item.content[update.content_index] || { type: "output_text", text: "", annotations: [] };
      part.text += update.delta;
      item.content[update.content_index] = part;
      break;
    }
    case "assistant_message.content_part.annotation_added": {
      const part = item.content[update.content_index];
      if (part) (part.annotations ||= [])[update.annotation_index] = update.annotation;
      break;
    }
    case "widget.root.updated":
      item.widget = update.widget;
      break;
    case "widget.component.updated":
      replaceComponent(item.widget, update.component_id, () => update.component);
      break;
    case "widget.streaming_text.value_delta":
      replaceComponent(item.widget, update.component_id, (component) => ({
        ...component,
        value: (component.value || "") + update.delta,
      }));
      break;
    case "workflow.task.added":
    case "workflow.task.updated":
      if (item.workflow) item.workflow.tasks[update.task_index] = update.task;
      break;
    case "generated_image.updated":
      item.image = update.image;
      break;
    default:
      break;
  }
  renderItem(item, true);
}

function replaceComponent(node, id, replace) {
  if (!node || typeof node !== "object") return false;
  for (const [key, value] of Object.entries(node)) {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        if (value[i] && value[i].id === id) {
          value[i] = replace(value[i]);
          return true;
        }
        if (replaceComponent(value[i], id, replace)) return true;
      }
    } else if (value && typeof value === "object") {
      if (value.id === id && key === "children") {
        node[key] = replace(value);
        return true;
      }
      if (replaceComponent(value, id, replace)) return true;
    }
  }
  return false;
}

// -- rendering items -------------------------------------------------------------------

function itemNode(id) {
  return document.querySelector(`#items [data-item-id="${CSS.escape(id)}"]`);
}

function markStreaming(id, streaming) {
  const node = itemNode(id);
  if (node) node.classList.toggle("streaming", streaming);
}

function renderItem(item, streaming) {
  const node = el("article", {
    className: `item ${item.type}${streaming ? " streaming" : ""}`,
    dataset: { itemId: item.id, itemType: item.type },
  });
  node.append(el("div", { className: "kind" }, item.type.replace(/_/g, " ")));
  node.append(...renderBody(item).filter((child) => child !== null && child !== undefined));
  const existing = itemNode(item.id);
  if (existing) existing.replaceWith(node);
  else $("items").append(node);
  const items = $("items");
  items.scrollTop = items.scrollHeight;
}

function textOf(parts) {
  return (parts || []).map((part) => part.text || "").join("");
}

function renderBody(item) {
  switch (item.type) {
    case "user_message":
      return [
        item.quoted_text ? el("blockquote", {}, item.quoted_text) : null,
        el("div", { className: "text" }, textOf(item.content)),
        renderAttachments(item.attachments || []),
      ];
    case "assistant_message":
      return [el("div", { className: "text" }, textOf(item.content))];
    case "widget":
      return [el("div", { className: "tree" }, renderComponent(item.widget, item, true))];
    case "client_tool_call":
      return [
        el("div", { className: "text" }, `${item.name} (${item.status})`),
        el("div", { className: "tree" }, renderValue("arguments", item.arguments, item)),
        item.output === undefined ? null : el("div", { className: "tree" }, renderValue("output", item.output, item)),
      ];
    case "generated_image":
      return [item.image && item.image.url ? el("img", { src: item.image.url, alt: "generated image" }) : "…"];
    case "end_of_turn":
      return [];
    default:
      return [el("div", { className: "tree" }, renderValue(item.type, item, item))];
  }
}

function renderAttachments(attachments) {
  if (!attachments.length) return null;
  return el(
    "div",
    { className: "attachments" },
    attachments.map((attachment) =>
      attachment.preview_url
        ? el("img", { src: attachment.preview_url, alt: attachment.name, title: attachment.name })
        : el("span", { className: "chip" }, attachment.name),
    ),
  );
}

// Widgets: a readable JSON tree; every action config in it is a button.

function isComponent(value) {
  return value && typeof value === "object" && !Array.isArray(value) && typeof value.type === "string" && /^[A-Z]/.test(value.type);
}

function isActionConfig(key, value) {
  return (
    value && typeof value === "object" && !Array.isArray(value) && typeof value.type === "string" &&
    (/Action$/.test(key) || key === "action")
  );
}

function renderComponent(component, item, open) {
  const label = [el("span", { className: "component" }, component.type)];
  if (component.id) label.push(` #${component.id}`);
  if (component.key) label.push(` key=${component.key}`);
  const details = el("details", { open: open || undefined }, el("summary", {}, label));
  for (const [key, value] of Object.entries(component)) {
    if (key === "type" || key === "id" || key === "key" || key === "children") continue;
    details.append(renderValue(key, value, item, component));
  }
  const children = component.children === undefined ? [] : [].concat(component.children);
  for (const child of children) {
    details.append(isComponent(child) ? renderComponent(child, item, true) : renderValue("child", child, item));
  }
  return details;
}

function renderValue(key, value, item, owner) {
  if (isActionConfig(key, value)) return renderAction(key, value, item, owner);
  if (isComponent(value)) {
    const wrap = el("div", { className: "prop" }, el("span", { className: "key" }, `${key}: `));
    wrap.append(renderComponent(value, item, true));
    return wrap;
  }
  if (value && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    const details = el(
      "details",
      { open: entries.length <= 6 || undefined },
      el("summary", {}, el("span", { className: "key" }, key), Array.isArray(value) ? ` [${entries.length}]` : ` {${entries.length}}`),
    );
    for (const [k, v] of entries) details.append(renderValue(k, v, item, value));
    return details;
  }
  const kind = value === null ? "null" : typeof value;
  return el(
    "div",
    { className: "prop" },
    el("span", { className: "key" }, `${key}: `),
    el("span", { className: kind }, kind === "string" ? JSON.stringify(value) : String(value)),
  );
}

function renderAction(key, action, item, owner) {
  const handler = action.handler || "server";
  const text = owner && typeof owner.label === "string" && owner.label ? owner.label : `${key}: ${action.type}`;
  const button = el(
    "button",
    {
      type: "button",
      className: "action",
      title: `${handler} action ${action.type} ${JSON.stringify(action.payload ?? null)}`,
      dataset: { actionType: action.type, actionHandler: handler },
      disabled: state.streaming || undefined,
      onclick: () => sendAction(action, item),
    },
    `▶ ${text}`,
  );
  return el(
    "div",
    { className: "prop" },
    el("span", { className: "key" }, `${key}: `),
    button,
    el("span", { className: "string" }, ` ${action.type}`),
  );
}

function sendAction(action, item) {
  const payload = { type: action.type, payload: action.payload ?? null };
  if ((action.handler || "server") === "client") {
    logEntry("event", clock(), `client action ${action.type} (handled by the page, not sent)`, JSON.stringify(payload));
    return;
  }
  if (!state.thread) return;
  stream("threads.custom_action", { thread_id: state.thread.id, item_id: item.id, action: payload });
}

// -- threads -------------------------------------------------------------------------

async function refreshThreads(append = false) {
  try {
    const params = { limit: 20, order: "desc" };
    if (append && state.threadsAfter) params.after = state.threadsAfter;
    const page = await call("threads.list", params);
    const list = $("thread-list");
    if (!append) list.replaceChildren();
    for (const thread of page.data) {
      list.append(
        el(
          "li",
          {},
          el(
            "button",
            {
              type: "button",
              className: state.thread && state.thread.id === thread.id ? "current" : undefined,
              dataset: { threadId: thread.id },
              onclick: () => openThread(thread.id),
            },
            el("span", { className: "title" }, thread.title || "Untitled thread"),
            el("span", { className: "meta" }, `${thread.id} · ${new Date(thread.created_at).toLocaleString()}`),
          ),
        ),
      );
    }
    state.threadsAfter = page.after || null;
    $("more-threads").hidden = !page.has_more;
  } catch (error) {
    showBanner(`Could not list threads: ${error.message}`);
  }
}

async function openThread(id) {
  if (state.streaming) return;
  try {
    const thread = await call("threads.get_by_id", { thread_id: id });
    const items = [...thread.items.data];
    let page = thread.items;
    while (page.has_more && page.after) {
      page = await call("items.list", { thread_id: id, after: page.after, order: "asc", limit: 50 });
      items.push(...page.data);
    }
    delete thread.items;
    showBanner("");
    setStatus("");
    setThread(thread);
    state.items = [];
    $("items").replaceChildren();
    for (const item of items) upsertItem(item, false);
  } catch (error) {
    showBanner(`Could not open ${id}: ${error.message}`);
  }
}

function newThread() {
  if (state.streaming) return;
  setThread(null);
  state.items = [];
  $("items").replaceChildren();
  showBanner("");
  $("message").focus();
}

// -- composing -----------------------------------------------------------------------

function setStreaming(streaming) {
  state.streaming = streaming;
  $("send").disabled = streaming;
  if (!streaming) $("stop").disabled = true;
  for (const button of document.querySelectorAll("button.action")) button.disabled = streaming;
}

async function send(event) {
  event.preventDefault();
  if (state.streaming || state.uploads > 0) return;
  const text = $("message").value.trim();
  if (!text && !state.pendingAttachments.length) return;
  const input = {
    content: [{ type: "input_text", text }],
    attachments: state.pendingAttachments.map((attachment) => attachment.id),
    inference_options: {},
  };
  $("message").value = "";
  state.pendingAttachments = [];
  renderPendingAttachments();
  if (state.thread) await stream("threads.add_user_message", { thread_id: state.thread.id, input });
  else await stream("threads.create", { input });
}

async function upload(files) {
  for (const file of files) {
    state.uploads += 1;
    setStatus(`Uploading ${file.name}…`);
    const started = performance.now();
    logEntry("request", clock(), `→ upload ${file.name}`, `POST ${UPLOAD_URL} (${file.size} bytes, ${file.type || "no type"})`);
    try {
      const form = new FormData();
      form.append("file", file, file.name);
      const response = await fetch(UPLOAD_URL, { method: "POST", headers: extraHeaders(), body: form });
      const text = await response.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        // shown raw
      }
      logEntry(response.ok ? "response" : "error", elapsed(started), `← ${response.status} upload`, text);
      if (response.status === 404 && json && json.error && json.error.code === "not_found") {
        throw new Error("this app takes no uploads (give ChatKitApp an attachment_store)");
      }
      if (!response.ok) throw new HTTPError(response.status, json);
      state.pendingAttachments.push(json);
      renderPendingAttachments();
      setStatus("");
    } catch (error) {
      showBanner(`Upload of ${file.name} failed: ${error.message}`);
      setStatus("");
    } finally {
      state.uploads -= 1;
    }
  }
}

function renderPendingAttachments() {
  $("pending-attachments").replaceChildren(
    ...state.pendingAttachments.map((attachment) =>
      el(
        "span",
        { className: "chip", dataset: { attachmentId: attachment.id } },
        attachment.preview_url ? el("img", { src: attachment.preview_url, alt: "", height: 20 }) : null,
        attachment.name,
        el("button", { type: "button", title: "Remove", onclick: () => dropAttachment(attachment.id) }, "×"),
      ),
    ),
  );
}

async function dropAttachment(id) {
  state.pendingAttachments = state.pendingAttachments.filter((attachment) => attachment.id !== id);
  renderPendingAttachments();
  try {
    await call("attachments.delete", { attachment_id: id });
  } catch (error) {
    showBanner(`Could not delete the attachment: ${error.message}`);
  }
}

// -- wiring --------------------------------------------------------------------------

function openFromHash() {
  const match = /^#thread=(.+)$/.exec(location.hash);
  if (match) openThread(decodeURIComponent(match[1]));
}

function init() {
  $("endpoint").textContent = ENDPOINT;
  $("extra-headers").value = localStorage.getItem(HEADERS_KEY) || "";
  $("save-settings").addEventListener("click", () => {
    const value = $("extra-headers").value.trim();
    try {
      if (value) JSON.parse(value);
      localStorage.setItem(HEADERS_KEY, value);
      $("settings-status").textContent = "Saved";
      refreshThreads();
    } catch {
      $("settings-status").textContent = "Not valid JSON";
    }
  });
  $("composer").addEventListener("submit", send);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("new-thread").addEventListener("click", newThread);
  $("more-threads").addEventListener("click", () => refreshThreads(true));
  $("clear-events").addEventListener("click", () => $("event-log").replaceChildren());
  $("file-input").addEventListener("change", async (event) => {
    const files = [...event.target.files];
    event.target.value = "";
    await upload(files);
  });
  window.addEventListener("hashchange", openFromHash);
  refreshThreads();
  openFromHash();
  document.body.dataset.ready = "true";
}

init();
