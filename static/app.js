// The page's behaviour on top of the plain form: ask POST /generate with fetch, show progress,
// the result and errors in place. Without this script the form still posts and the server
// renders the same page. Text from the server or the user only ever goes in as textContent.

const form = document.getElementById("generate-form");
const titleInput = document.getElementById("text");
const button = document.getElementById("generate-button");
const progress = document.getElementById("progress");
const elapsed = document.getElementById("elapsed");
const errorBox = document.getElementById("error");
const result = document.getElementById("result");
const copyButton = document.getElementById("copy-button");
const texts = JSON.parse(document.getElementById("page-text").textContent);

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
  setModelState(info.loaded);
}

function setModelState(loaded) {
  setText("model-state", loaded ? "준비됨" : "첫 요청 때 불러옵니다");
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

function setBusy(busy) {
  button.disabled = busy;
  form.setAttribute("aria-busy", String(busy));
  progress.hidden = !busy;
  clearInterval(timer);
  if (busy) {
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
  byId("time-note").hidden = details.finish_reason !== "time";
  setText("time-note", texts.time_note);
  copyButton.dataset.text = text;
  copyButton.hidden = !navigator.clipboard;
  result.hidden = false;
  setModelState(true);
  result.scrollIntoView({ block: "nearest" });
}

async function generate() {
  const title = titleInput.value.trim();
  errorBox.hidden = true;
  setBusy(true);
  let response;
  let body = null;
  try {
    response = await fetch(form.dataset.generateUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(requestBody()),
    });
    body = await response.json().catch(() => null);
  } catch {
    showError(texts.errors.network, "");
    return;
  } finally {
    setBusy(false);
  }
  if (response.ok && body && typeof body.generated_text === "string") {
    showResult(body, title);
  } else if (body && typeof body.error === "string") {
    showError(texts.errors[body.error_type] || texts.errors.other, body.error);
  } else {
    // Not this service's answer: e.g. API Gateway's own timeout, {"message": ...}.
    const said = body && typeof body.message === "string" ? `: ${body.message}` : "";
    showError(texts.errors.bad_response, `HTTP ${response.status}${said}`);
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
