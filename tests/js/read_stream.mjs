// Reads one streaming ChatKit request the way the <openai-chatkit> web component does:
// with @microsoft/fetch-event-source 2.x (the version its loader bundles), a request
// that must answer `ok` with text/event-stream, 4xx final, anything else sent again up
// to `retries` times with exponential backoff.
//
//   node read_stream.mjs '{"url": "...", "body": {...}, "headers": {...}, "retries": 5,
//                          "backoffMs": 1000, "timeoutMs": 30000}'
//
// Prints one JSON object: `messages` (every message the library dispatched, as it
// dispatched it), `attempts` (status, content type and the raw bytes of each response,
// base64, as they came off the socket), `closed` and `error`.
// Used by tests/streaming/test_fetch_event_source.py.

import { fetchEventSource } from "@microsoft/fetch-event-source";

// The library is written for browsers: it reads `window.fetch`/`setTimeout` and
// listens to `document` visibility (`openWhenHidden: true` keeps it from reacting).
globalThis.window = globalThis;
globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };

const config = JSON.parse(process.argv[2]);
const retries = config.retries ?? 5;
const backoffMs = config.backoffMs ?? 1000;
const result = { messages: [], attempts: [], closed: false, error: null };

class FatalError extends Error {}

// fetch, with every response body recorded as it passes to the library.
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  const attempt = {
    status: response.status,
    contentType: response.headers.get("content-type"),
    chunks: [],
  };
  result.attempts.push(attempt);
  if (response.body === null) return response;
  const tap = new TransformStream({
    transform(chunk, controller) {
      attempt.chunks.push(Buffer.from(chunk).toString("base64"));
      controller.enqueue(chunk);
    },
  });
  return new Response(response.body.pipeThrough(tap), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

const controller = new AbortController();
const timer = setTimeout(() => {
  result.error = `timed out after ${config.timeoutMs} ms`;
  controller.abort();
}, config.timeoutMs ?? 30000);

let retried = 0;
try {
  await fetchEventSource(config.url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(config.headers ?? {}) },
    body: JSON.stringify(config.body),
    signal: controller.signal,
    openWhenHidden: true,
    fetch: recordingFetch,
    async onopen(response) {
      const type = response.headers.get("content-type") ?? "";
      if (response.ok && type.startsWith("text/event-stream")) return;
      const error = new Error(`Streaming failed: ${response.statusText}`);
      if (response.status >= 400 && response.status < 500) throw new FatalError(error.message);
      throw error;
    },
    onmessage(message) {
      result.messages.push({ data: message.data, event: message.event, id: message.id });
    },
    onclose() {
      result.closed = true;
    },
    onerror(error) {
      if (error instanceof FatalError || retried >= retries) throw error;
      retried += 1;
      return Math.min(10 * backoffMs, backoffMs * 2 ** retried) * (0.5 + Math.random() / 2);
    },
  });
} catch (error) {
  result.error = String(error?.message ?? error);
} finally {
  clearTimeout(timer);
}
process.stdout.write(JSON.stringify(result));
