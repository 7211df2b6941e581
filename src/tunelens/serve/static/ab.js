// Blind A/B: model names are revealed only after the person has picked.
let pairId = null;
const pickButtons = ["pick-left", "pick-tie", "pick-right"].map((id) => document.getElementById(id));

async function ask() {
  const prompt = document.getElementById("prompt").value.trim();
  if (!prompt) return;
  document.getElementById("ask").disabled = true;
  document.getElementById("reveal").textContent = "";
  try {
    const pair = await api("/v1/ab/pair", { prompt: prompt, max_tokens: 48 });
    pairId = pair.pair_id;
    document.getElementById("left").textContent = pair.left;
    document.getElementById("right").textContent = pair.right;
    pickButtons.forEach((b) => (b.disabled = false));
    showError("");
  } catch (e) { showError("A/B failed: " + e.message); }
  finally { document.getElementById("ask").disabled = false; }
}

async function pick(choice) {
  if (!pairId) return;
  pickButtons.forEach((b) => (b.disabled = true));
  try {
    const res = await api("/v1/ab/judge", { pair_id: pairId, choice: choice });
    document.getElementById("reveal").textContent =
      "Recorded '" + choice + "'. Left was " + res.left_model + ", right was " + res.right_model + ".";
    pairId = null;
    await loadResults();
  } catch (e) { showError("Judging failed: " + e.message); }
}

async function loadResults() {
  const box = document.getElementById("results");
  try {
    const r = await api("/v1/ab/results");
    const table = el("table", { id: "results-table" });
    const head = el("tr");
    for (const h of ["model", "wins", "win rate", "95% CI"]) head.appendChild(el("th", {}, h));
    table.appendChild(head);
    for (const [name, s] of Object.entries(r.per_model)) {
      const row = el("tr");
      row.appendChild(el("td", {}, name));
      row.appendChild(el("td", {}, String(s.wins)));
      row.appendChild(el("td", {}, s.win_rate === null ? "-" : s.win_rate.toFixed(2)));
      row.appendChild(el("td", {}, s.ci95[0].toFixed(2) + " - " + s.ci95[1].toFixed(2)));
      table.appendChild(row);
    }
    box.innerHTML = "";
    box.appendChild(table);
    const k = r.agreement.kappa;
    box.appendChild(el("p", { id: "agreement" }, "judged " + r.judged + ", ties " + r.ties.count +
      "; Cohen's kappa vs " + r.agreement.metric + ": " + (k === null ? "n/a (" + (r.agreement.reason || "") + ")" : k.toFixed(2))));
  } catch (e) { box.textContent = "Results unavailable: " + e.message; }
}

setupKeyBox();
document.getElementById("ask").addEventListener("click", ask);
document.getElementById("pick-left").addEventListener("click", () => pick("left"));
document.getElementById("pick-right").addEventListener("click", () => pick("right"));
document.getElementById("pick-tie").addEventListener("click", () => pick("tie"));
document.getElementById("refresh-results").addEventListener("click", loadResults);
document.addEventListener("keysaved", loadResults);
if (apiKey()) loadResults();
