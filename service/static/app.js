// The model try-out page: GET /models, POST /score (with maps), decisions redrawn locally.
"use strict";

const state = { models: [], current: null, thresholds: [], value: 0, rows: [] };
const $ = (id) => document.getElementById(id);

function fmt(x) {
  return Number(x).toPrecision(6);
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function status(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status} ${body.error.code}: ${body.error.message}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadModels() {
  const response = await fetch("/models");
  if (!response.ok) {
    status(`Could not list the models: ${await errorText(response)}`, true);
    return;
  }
  const body = await response.json();
  const select = $("model");
  select.replaceChildren();
  for (const model of body.models) {
    for (const v of model.versions) {
      state.models.push({ name: model.name, info: v });
      const option = el("option", { value: `${model.name}/${v.version}` }, `${model.name} v${v.version}`);
      if (model.name === body.default_model && v.version === model.latest_version) option.selected = true;
      select.append(option);
    }
  }
  if (!state.models.length) status("No model is loaded.", true);
  selectModel();
}

function selectModel() {
  const [name, version] = $("model").value.split("/");
  const found = state.models.find((m) => m.name === name && String(m.info.version) === version);
  if (!found) return;
  state.current = found;
  const info = found.info;
  const facts = $("model-info");
  facts.replaceChildren();
  const data = info.dataset || {};
  const auc = info.metrics && info.metrics.auc;
  const rows = [
    ["AUC (test split)", auc === null || auc === undefined ? "n/a" : Number(auc).toFixed(4)],
    ["training data", `${data.name}, normal class ${data.class_name || data.normal_class}, ${data.n_train} images`],
    ["objective", `${info.objective} (nu ${info.nu})`],
    ["input", `${info.input.width}x${info.input.height} ${info.input.color}`],
    ["kind", info.kind === "patch" ? "patch (per-patch scores)" : "image (whole-image score)"],
    ["runs on", (info.providers || []).join(", ")],
    ["created", info.created],
  ];
  for (const [k, v] of rows) facts.append(el("dt", {}, k), el("dd", { title: v }, v));
  $("explain-how").textContent = mapHow(info);

  state.thresholds = Object.entries(info.thresholds).sort((a, b) => a[1] - b[1]);
  const body = $("thresholds").querySelector("tbody");
  body.replaceChildren();
  const ticks = $("threshold-ticks");
  ticks.replaceChildren();
  state.thresholds.forEach(([k, v], i) => {
    const rate = info.expected_anomaly_rate[k];
    const tr = el("tr");
    tr.append(el("td", {}, k + (k === info.default_threshold ? " (default)" : "")),
      el("td", { class: "num" }, fmt(v)),
      el("td", { class: "num" }, rate === undefined ? "" : `${(100 * rate).toFixed(1)}%`));
    body.append(tr);
    ticks.append(el("option", { value: String(i), label: k }));
  });
  const slider = $("threshold");
  slider.max = String(state.thresholds.length - 1);
  const index = state.thresholds.findIndex(([k]) => k === info.default_threshold);
  slider.value = String(Math.max(0, index));
  setThresholdIndex(Number(slider.value));
  loadFigures(found.name);
  state.rows = [];
  render();
}

// A patch model's graph gives its map with the score; the others' maps are by occlusion.
function mapHow(info) {
  if (!info.anomaly_map) return "occlusion: about 170 inferences an image";
  const [h, w] = info.anomaly_map;
  return `the model's own ${w}x${h} patch grid, in the same inference`;
}

async function loadFigures(name) {
  const box = $("figures");
  box.replaceChildren();
  const response = await fetch(`/ui/figures/${encodeURIComponent(name)}`);
  if (!response.ok) return;
  const body = await response.json();
  if (!body.figures.length) {
    box.append(el("p", { class: "hint" }, "No report figures next to this model."));
  }
  for (const f of body.figures) box.append(el("img", { src: f.url, alt: `report figure ${f.name}` }));
}

function setThresholdIndex(i) {
  const [name, value] = state.thresholds[i];
  state.value = value;
  state.thresholdName = name;
  $("threshold-number").value = fmt(value);
  $("threshold").setAttribute("aria-valuetext", `${name}: ${fmt(value)}`);
  $("threshold-value").textContent = `${name} = ${fmt(value)}`;
  redraw();
}

function setThresholdNumber(text) {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) return;
  state.value = value;
  state.thresholdName = "custom";
  $("threshold-value").textContent = `custom = ${fmt(value)}`;
  redraw();
}

async function scoreFiles(files) {
  if (!state.current || !files.length) return;
  const { name, info } = state.current;
  const explain = $("explain").checked;
  const query = new URLSearchParams({ model: name, version: String(info.version) });
  if (explain) query.set("explain", "true");
  // With occlusion maps, one request an image: each costs ~170 inferences and the server
  // bounds them. A patch model's maps come with its scores: all images in one request.
  const groups = explain && !info.anomaly_map ? files.map((f) => [f]) : [files];
  status(`Scoring ${files.length} image(s)...`);
  let done = 0;
  for (const group of groups) {
    const form = new FormData();
    for (const f of group) form.append("files", f, f.name);
    const response = await fetch(`/score?${query}`, { method: "POST", body: form });
    if (!response.ok) {
      const text = await errorText(response);
      for (const f of group) state.rows.push({ file: f, error: text });
    } else {
      const body = await response.json();
      // An image the service could not use has its own error; the others are scored.
      body.results.forEach((r, i) => state.rows.push(
        r.error
          ? { file: group[i], error: `${r.error.code}: ${r.error.message}` }
          : { file: group[i], result: r },
      ));
    }
    done += group.length;
    render();
  }
  status(`Scored ${done} image(s) with ${name} v${info.version}.`);
}

function render() {
  const body = $("results").querySelector("tbody");
  body.replaceChildren();
  state.rows.forEach((row, i) => {
    const tr = el("tr", { "data-index": String(i) });
    const thumb = el("img", { class: "thumb", alt: `uploaded ${row.file.name}` });
    thumb.src = row.url || (row.url = URL.createObjectURL(row.file));
    const mapCell = el("td");
    if (row.result && row.result.anomaly_map) {
      mapCell.append(el("img", {
        class: "thumb map",
        alt: `anomaly map of ${row.file.name}`,
        src: `data:image/png;base64,${row.result.anomaly_map.png}`,
      }));
    }
    const first = el("td");
    first.append(thumb);
    tr.append(first, mapCell, el("td", {}, row.file.name));
    if (row.error) {
      tr.append(el("td", { class: "error", colspan: "3" }, row.error));
    } else {
      const score = row.result.score;
      tr.append(el("td", { class: "num score", "data-score": String(score) }, fmt(score)),
        el("td", { class: "num threshold-cell" }), el("td", { class: "decision" }));
    }
    body.append(tr);
  });
  redraw();
}

function redraw() {
  let anomalies = 0;
  let scored = 0;
  for (const tr of $("results").querySelectorAll("tbody tr")) {
    const row = state.rows[Number(tr.dataset.index)];
    if (!row || !row.result) continue;
    scored += 1;
    const anomalous = row.result.score > state.value;
    anomalies += anomalous ? 1 : 0;
    tr.querySelector(".threshold-cell").textContent = fmt(state.value);
    const decision = tr.querySelector(".decision");
    decision.textContent = anomalous ? "anomaly" : "normal";
    decision.className = `decision ${anomalous ? "anomaly" : "normal"}`;
  }
  $("summary").textContent = scored
    ? `${anomalies} of ${scored} image(s) above the threshold ${state.thresholdName} (${fmt(state.value)}).`
    : "No image scored yet.";
}

function wire() {
  $("model").addEventListener("change", selectModel);
  $("threshold").addEventListener("input", (e) => setThresholdIndex(Number(e.target.value)));
  $("threshold-number").addEventListener("change", (e) => setThresholdNumber(e.target.value));
  $("files").addEventListener("change", (e) => {
    scoreFiles(Array.from(e.target.files));
    e.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    scoreFiles(Array.from(e.dataTransfer.files).filter((f) => f.type.startsWith("image/") || !f.type));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  loadModels().catch((err) => status(`Could not load the models: ${err}`, true));
});
