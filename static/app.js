// The page's behaviour on top of the plain form: ask POST /generate for a stream with fetch,
// show the text as it comes (정지 stops it), the result and errors in place, and wait out a
// model that is still being prepared. Without this script the form still posts and the server
// renders the same page. Text from the server or the user only ever goes in as textContent.

const form = document.getElementById("generate-form");
const titleInput = document.getElementById("text");
const button = document.getElementById("generate-button");
const progress = document.getElementById("progress");
const elapsed = document.getElementById("elapsed");
const errorBox = document.getElementById("error");
const result = document.getElementById("result");
const copyButton = document.getElementById("copy-button");
const stopButton = document.getElementById("stop-button");
const texts = JSON.parse(document.getElementById("page-text").textContent);

// The steps of a model's preparation (/info's progress.step) in Korean; the API's own stage
// text stays English, and shows only for a step this page doesn't know.
const PREPARATION_STEPS = {
  starting: "준비를 시작하는 중",
  downloading: "모델을 내려받는 중",
  waiting: "다른 작업자가 같은 모델을 준비하고 있어 기다리는 중",
  converting: "빠른 엔진에 맞게 모델을 변환하는 중",
  loading: "모델을 불러오는 중",
};

const byId = (id) => document.getElementById(id);
const setText = (id, value) => { byId(id).textContent = String(value); };

// Bounds as /info states them: JSON-schema properties of the parameters, plus server limits.
function numberSchema(schema) {
  return (schema.anyOf || [schema]).find((option) => option.type !== "null");
}

function applyInfo(info) {
  for (const input of form.querySelectorAll("input[type=number]")) {
    const schema = info.parameters[input.name];
    if (!schema) continue;
    const number = numberSchema(schema);
    let low = number.minimum;
    if (low === undefined) low = number.exclusiveMinimum + Number(input.step);
    let high = number.maximum;
    if (input.name === "max_new_tokens") high = Math.min(high, info.limits.max_new_tokens);
    input.min = String(low);
    input.max = String(high);
  }
  setText("time-budget", info.limits.time_budget_s);
  setModelState(info.state);
}

function setModelState(state) {
  setText("model-state", texts.model_states[state] || state);
}

async function loadInfo() {
  try {
    const response = await fetch(form.dataset.infoUrl, { headers: { Accept: "application/json" } });
    if (response.ok) applyInfo(await response.json());
  } catch {
    // The bounds the server rendered into the page stay in force.
  }
}

function requestBody() {
  const body = { text: titleInput.value, do_sample: form.elements.do_sample.checked };
  for (const input of form.querySelectorAll("input[type=number]")) {
    if (input.value.trim() !== "") body[input.name] = Number(input.value);
  }
  return body;
}

let timer = null;
let controller = null; // the generation in flight: 정지 aborts it

function setBusy(busy) {
  button.disabled = busy;
  stopButton.hidden = !busy;
  form.setAttribute("aria-busy", String(busy));
  showProgress(busy);
}

// "글을 쓰는 중… N초": counts from each request, as the server's time budget does.
function showProgress(shown) {
  progress.hidden = !shown;
  byId("stream-stats").hidden = true;
  clearInterval(timer);
  if (shown) {
    const started = performance.now();
    elapsed.textContent = "0.0";
    timer = setInterval(() => {
      elapsed.textContent = ((performance.now() - started) / 1000).toFixed(1);
    }, 100);
  }
}

function showError(headline, message) {
  setText("error-headline", headline);
  setText("error-message", message);
  errorBox.hidden = false;
}

function showAnswerError(body) {
  showError(texts.errors[body.error_type] || texts.errors.other, body.error);
}

function showCopy(text) {
  copyButton.dataset.text = text;
  copyButton.hidden = !navigator.clipboard;
}

function showResult(body, title) {
  const text = body.generated_text;
  const details = body.details;
  const head = text.startsWith(title) ? title : "";
  setText("result-title", head);
  setText("result-continuation", text.slice(head.length));
  setText("detail-tokens", details.generated_tokens);
  setText("detail-prompt-tokens", details.prompt_tokens);
  setText("detail-seconds", (details.time_ms / 1000).toFixed(1));
  setText("detail-finish", texts.finish_reasons[details.finish_reason] || details.finish_reason);
  byId("detail-seed-row").hidden = details.seed === null;
  setText("detail-seed", details.seed ?? "");
  byId("details").hidden = false;
  byId("time-note").hidden = details.finish_reason !== "time";
  setText("time-note", texts.time_note);
  showCopy(text);
  result.hidden = false;
  setModelState("ready");
  result.scrollIntoView({ block: "nearest" });
}

// The text so far of a stream; the last event replaces it with the whole answer.
class StreamView {
  constructor(title) {
    this.title = title;
    this.text = "";
    this.tokens = 0;
    this.started = performance.now();
    setText("result-title", title);
    setText("result-continuation", "");
    byId("details").hidden = true;
    byId("time-note").hidden = true;
    copyButton.hidden = true;
    result.hidden = false;
    result.scrollIntoView({ block: "nearest" });
  }

  add(token) {
    this.text += token.text;
    this.tokens += 1;
    setText("result-continuation", this.text);
    const seconds = (performance.now() - this.started) / 1000;
    setText("stream-tokens", this.tokens);
    setText("tokens-per-second", (this.tokens / Math.max(seconds, 0.001)).toFixed(1));
    byId("stream-stats").hidden = false;
  }

  // Stopped or cut off before the last event: keep what came, say why it is short.
  end(note) {
    if (note) {
      setText("time-note", note);
      byId("time-note").hidden = false;
    }
    showCopy(this.title + this.text);
  }
}

// Server-sent events from a fetch body: calls onEvent with each `data:` line's JSON, whether
// the events trickle in or (behind a buffering proxy) arrive all at once.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart()).join("\n");
      if (data && onEvent(JSON.parse(data))) return;
    }
  }
}

async function readStream(response, title) {
  const view = new StreamView(title);
  let finished = false;
  try {
    await readEvents(response, (event) => {
      if (event.token) {
        view.add(event.token);
        return false;
      }
      finished = true;
      if (typeof event.generated_text === "string") showResult(event, title);
      else if (typeof event.error === "string") {
        showAnswerError(event); // says why it is short
        view.end(null);
      }
      return true;
    });
  } catch (error) {
    if (error.name === "AbortError") {
      view.end(texts.stream_notes.stopped);
      return;
    }
    view.end(texts.stream_notes.cut);
    if (!(error instanceof SyntaxError)) throw error; // the network: generate() says so
    showError(texts.errors.bad_response, "");
    return;
  }
  if (!finished) {
    view.end(texts.stream_notes.cut);
    showError(texts.errors.bad_response, texts.stream_notes.cut);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timeout = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timeout);
      reject(new DOMException("stopped", "AbortError"));
    }, { once: true });
  });
}

function showLoading(progressInfo) {
  showProgress(false); // nothing is being written yet
  byId("loading").hidden = false;
  if (!progressInfo) return;
  byId("loading-bar").value = progressInfo.percent;
  setText("loading-stage", PREPARATION_STEPS[progressInfo.step] || progressInfo.stage);
  setText("loading-percent", progressInfo.percent);
}

// The model is being prepared (503 model_loading): show how far it is from /info until the
// answer's Retry-After has passed, or sooner if it is ready.
async function waitForModel(response, signal) {
  const seconds = Number(response.headers.get("Retry-After")) || 5;
  const until = performance.now() + seconds * 1000;
  showLoading(null);
  for (;;) {
    const info = await fetch(form.dataset.infoUrl, { signal }).then((r) => r.json())
      .catch((error) => { if (error.name === "AbortError") throw error; return null; });
    if (info && info.state !== "loading") return; // ready, or failed: the retry says which
    if (info) showLoading(info.progress);
    const left = until - performance.now();
    if (left <= 0) return;
    await sleep(Math.min(1000, left), signal);
  }
}

async function generate() {
  const title = titleInput.value.trim();
  errorBox.hidden = true;
  controller = new AbortController();
  const { signal } = controller;
  setBusy(true);
  try {
    for (;;) {
      const response = await fetch(form.dataset.generateUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ ...requestBody(), stream: true }),
        signal,
      });
      if ((response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
        byId("loading").hidden = true;
        await readStream(response, title);
        return;
      }
      const body = await response.json().catch(() => null);
      if (response.status === 503 && body && body.error_type === "model_loading") {
        await waitForModel(response, signal);
        showProgress(true);
        continue;
      }
      byId("loading").hidden = true;
      if (body && typeof body.error === "string") {
        showAnswerError(body);
      } else {
        // Not this service's answer: e.g. API Gateway's own timeout, {"message": ...}.
        const said = body && typeof body.message === "string" ? `: ${body.message}` : "";
        showError(texts.errors.bad_response, `HTTP ${response.status}${said}`);
      }
      return;
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(texts.errors.network, "");
  } finally {
    byId("loading").hidden = true;
    controller = null;
    setBusy(false);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  generate();
});

for (const link of document.querySelectorAll("a.example")) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    titleInput.value = link.dataset.title;
    titleInput.focus();
  });
}

stopButton.addEventListener("click", () => {
  if (controller) controller.abort();
});

copyButton.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(copyButton.dataset.text);
    copyButton.textContent = "복사됨";
  } catch {
    copyButton.textContent = "복사 못 함";
  }
  setTimeout(() => { copyButton.textContent = "복사"; }, 2000);
});

// A result the server rendered (the form posted before this script had loaded) can be copied.
if (!result.hidden) {
  copyButton.dataset.text = byId("result-text").textContent;
  copyButton.hidden = !navigator.clipboard;
}

loadInfo();
