// Chat page: conversation, guardrail flags, thumbs, correction box, explain heatmap.
const conversation = [];

async function loadModels() {
  const select = document.getElementById("model");
  select.innerHTML = "";
  try {
    const data = await api("/v1/models");
    for (const m of data.data) select.appendChild(el("option", { value: m.id }, m.id));
    showError("");
  } catch (e) { showError("Could not list models: " + e.message); }
}

function flagBadges(guardrails) {
  const box = el("div", { class: "flags" });
  const add = (text, cls) => box.appendChild(el("span", { class: "flag " + cls }, text));
  const inj = guardrails.injection || {};
  if (inj.enabled && inj.available !== false) {
    const action = inj.action || "none";
    add("injection: " + action + " (max " + (inj.max_score ?? 0).toFixed(2) + ")", action === "none" ? "ok" : "warn");
  } else if (inj.available === false) add("injection: unavailable", "warn");
  for (const key of ["pii_input", "pii_output"]) {
    const p = guardrails[key] || {};
    if (p.enabled) {
      const n = Object.values(p.redacted || {}).reduce((a, b) => a + b, 0);
      add(key.replace("_", " ") + ": " + n + " redacted", n ? "warn" : "ok");
    }
  }
  const tox = guardrails.toxicity || {};
  if (tox.enabled && tox.available) add("toxicity " + tox.score.toFixed(2) + (tox.action === "refuse" ? " (refused)" : ""), tox.action === "refuse" ? "bad" : "ok");
  else if (tox.enabled) add("toxicity: unavailable", "warn");
  if (guardrails.blocked) add("blocked: " + guardrails.blocked.reason, "bad");
  return box;
}

function feedbackBox(completionId) {
  const box = el("div", { class: "feedback" });
  const status = el("span", { class: "feedback-status" });
  const send = async (body, label) => {
    try { await api("/v1/feedback", Object.assign({ completion_id: completionId }, body)); status.textContent = label + " saved"; }
    catch (e) { status.textContent = ""; showError("Feedback failed: " + e.message); }
  };
  const up = el("button", { class: "thumb-up", title: "good answer" }, "\u25B2 Good");
  const down = el("button", { class: "thumb-down", title: "bad answer" }, "\u25BC Bad");
  up.addEventListener("click", () => send({ rating: "up" }, "thumbs up"));
  down.addEventListener("click", () => send({ rating: "down" }, "thumbs down"));
  const correction = el("textarea", { class: "correction", placeholder: "Better answer (correction)" });
  const submit = el("button", { class: "send-correction" }, "Send correction");
  submit.addEventListener("click", () => {
    if (correction.value.trim()) send({ correction: correction.value.trim() }, "correction");
  });
  for (const n of [up, down, correction, submit, status]) box.appendChild(n);
  return box;
}

async function sendPrompt() {
  const prompt = document.getElementById("prompt");
  const text = prompt.value.trim();
  if (!text) return;
  conversation.push({ role: "user", content: text });
  document.getElementById("log").appendChild(el("div", { class: "msg user-msg" }, text));
  prompt.value = "";
  const button = document.getElementById("send");
  button.disabled = true;
  try {
    const data = await api("/v1/chat/completions", {
      model: document.getElementById("model").value, messages: conversation, max_tokens: 48,
      explain: document.getElementById("explain").checked,
    });
    const answer = data.choices[0].message.content;
    // A blocked turn is not kept: resending it would block every later turn too.
    if (data.tunelens.guardrails.blocked) conversation.pop();
    else conversation.push({ role: "assistant", content: answer });
    const card = el("div", { class: "msg assistant-msg", "data-completion-id": data.id });
    card.appendChild(el("div", { class: "answer" }, answer));
    card.appendChild(flagBadges(data.tunelens.guardrails));
    const ex = data.tunelens.explanation;
    if (ex) {
      if (ex.available) {
        const frame = el("iframe", { class: "explain-frame", sandbox: "" });
        frame.srcdoc = ex.html;
        card.appendChild(frame);
      } else card.appendChild(el("div", { class: "flags" }, "explain unavailable: " + ex.reason));
    }
    card.appendChild(feedbackBox(data.id));
    document.getElementById("log").appendChild(card);
    showError("");
  } catch (e) {
    conversation.pop();
    showError("Chat failed: " + e.message);
  } finally { button.disabled = false; }
}

setupKeyBox();
document.addEventListener("keysaved", loadModels);
document.getElementById("send").addEventListener("click", sendPrompt);
if (apiKey()) loadModels();
