// Shared by the chat and A/B pages: the API key lives in localStorage, never in the page.
const KEY_STORAGE = "tunelens_api_key";
function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }
function setupKeyBox() {
  const box = document.getElementById("api-key");
  box.value = apiKey();
  document.getElementById("save-key").addEventListener("click", () => {
    localStorage.setItem(KEY_STORAGE, box.value.trim());
    document.dispatchEvent(new Event("keysaved"));
  });
}
async function api(path, body) {
  const opts = { method: body === undefined ? "GET" : "POST",
                 headers: { "Authorization": "Bearer " + apiKey(), "Content-Type": "application/json" } };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const res = await fetch(path, opts);
  let data;
  try { data = await res.json(); } catch (e) { data = { error: { message: "non-JSON response (" + res.status + ")" } }; }
  if (!res.ok) throw new Error((data.error && data.error.message) || ("HTTP " + res.status));
  return data;
}
function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function showError(msg) { const box = document.getElementById("error"); box.textContent = msg || ""; }
