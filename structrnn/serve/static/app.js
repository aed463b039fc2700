// structrnn serve: the page. Plain JavaScript, no build step, nothing from the network but this
// server's own JSON API (relative URLs, so the page works behind a path prefix too).
"use strict";

const SVG = "http://www.w3.org/2000/svg";  // the SVG namespace name, not a URL that is fetched
// the treebank demo's scale: red (very negative) through grey (neutral) to blue (very positive)
const FIVE = ["#c0392b", "#e8a39b", "#d4d4d4", "#9ec5e8", "#1f6fb4"];
const PALETTES = {5: FIVE, 2: [FIVE[0], FIVE[4]]};
const X_STEP = 64, Y_STEP = 54, MARGIN = 28, RADIUS = 9;

const state = {models: [], current: null};
const $ = (id) => document.getElementById(id);

function palette(model) {
  const n = model.labels.length;
  return PALETTES[n] || model.labels.map((_, k) => `hsl(${(360 * k) / n}, 60%, 55%)`);
}

function showError(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, init);
  let data;
  try {
    data = await response.json();
  } catch (err) {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

// ---------------------------------------------------------------------------- the models
async function start() {
  for (let attempt = 0; ; attempt++) {
    try {
      const data = await api("v1/models");
      state.models = data.models;
      break;
    } catch (err) {
      $("status").textContent = `waiting for the models: ${err.message}`;
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * (attempt + 1), 3000)));
    }
  }
  const nav = $("models");
  for (const model of state.models) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${model.name} (${model.task})`;
    button.dataset.model = model.name;
    button.addEventListener("click", () => select(model.name));
    nav.appendChild(button);
  }
  $("status").textContent = `${state.models.length} model(s) served`;
  const first = state.models.find((m) => m.task === "sst" || m.task === "molecules");
  if (first) select(first.name);
}

function select(name) {
  const model = state.models.find((m) => m.name === name);
  state.current = model;
  for (const b of $("models").children) b.setAttribute("aria-pressed", b.dataset.model === name);
  $("sentiment").hidden = model.task !== "sst";
  $("molecule").hidden = model.task !== "molecules";
  $("other").hidden = model.task === "sst" || model.task === "molecules";
  if (model.task === "sst") {
    $("tree-note").textContent = model.tree === "balanced"
      ? "Sentences get a balanced binary tree over their words (this server has no parser: " +
        "structrnn serve --parser PARSER_RUN parses them). A PTB tree is used as given."
      : `Sentences are ${model.tree}. A PTB tree is used as given.`;
    legend(model);
  }
}

// ---------------------------------------------------------------------------- sentiment
function legend(model) {
  const box = $("legend");
  box.textContent = "";
  const colours = palette(model);
  model.labels.forEach((name, k) => {
    const item = document.createElement("span");
    item.dataset.label = k;
    item.dataset.color = colours[k];
    const swatch = document.createElementNS(SVG, "svg");
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", 7); dot.setAttribute("cy", 7); dot.setAttribute("r", 6);
    dot.setAttribute("fill", colours[k]);
    swatch.appendChild(dot);
    item.append(swatch, `${k} ${name}`);
    box.appendChild(item);
  });
}

// PTB bracket text -> {label, token, children}; the tree the server predicted on
function parsePTB(text) {
  const tokens = text.match(/\(|\)|[^\s()]+/g) || [];
  let i = 0;
  function node() {
    if (tokens[i] !== "(") throw new Error(`bad tree near token ${i}`);
    i++;
    const label = tokens[i++];
    const children = [];
    let token = null;
    while (tokens[i] !== ")") {
      if (i >= tokens.length) throw new Error("unbalanced tree");
      if (tokens[i] === "(") children.push(node());
      else token = tokens[i++];
    }
    i++;
    return {label, token, children};
  }
  return node();
}

function preorder(root) {
  const out = [];
  (function walk(n, depth, parent) {
    n.depth = depth; n.parent = parent; n.index = out.length;
    out.push(n);
    n.children.forEach((c) => walk(c, depth + 1, n));
  })(root, 0, null);
  return out;
}

// the words side by side on the bottom row, as the treebank demo draws them; a phrase above
// the middle of its first and last child, one row per level
function layout(nodes) {
  let leaf = 0;
  const bottom = Math.max(...nodes.map((n) => n.depth));
  (function place(n) {
    n.children.forEach(place);
    n.x = n.children.length
      ? (n.children[0].x + n.children[n.children.length - 1].x) / 2
      : MARGIN + X_STEP / 2 + X_STEP * leaf++;
    n.y = MARGIN + Y_STEP * (n.children.length ? n.depth : bottom);
  })(nodes[0]);
  return leaf;
}

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function drawTree(row, model) {
  const svg = $("tree");
  svg.textContent = "";
  const nodes = preorder(parsePTB(row.ptb));
  if (nodes.length !== row.nodes.length) {
    throw new Error(`the tree has ${nodes.length} nodes, the prediction ${row.nodes.length}`);
  }
  const leaves = layout(nodes);
  const depth = Math.max(...nodes.map((n) => n.depth));
  const width = 2 * MARGIN + X_STEP * leaves, height = 2 * MARGIN + Y_STEP * depth + 24;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const edges = svgEl("g", {class: "edges"}, svg);
  for (const n of nodes) {
    if (n.parent) svgEl("line", {x1: n.parent.x, y1: n.parent.y, x2: n.x, y2: n.y}, edges);
  }
  const colours = palette(model);
  nodes.forEach((n, k) => {
    const p = row.nodes[k];
    const g = svgEl("g", {class: n.children.length ? "node" : "node leaf", "data-index": k,
                          "data-label": p.label, "data-span": p.span}, svg);
    const title = svgEl("title", {}, g);
    title.textContent = `${p.span}\n` + model.labels.map(
      (name, c) => `${name}: ${(100 * p.probs[c]).toFixed(1)}%`).join("\n");
    svgEl("circle", {cx: n.x, cy: n.y, r: RADIUS, fill: colours[p.label]}, g);
    if (!n.children.length) {
      const text = svgEl("text", {x: n.x, y: n.y + RADIUS + 16, "text-anchor": "middle"}, g);
      text.textContent = n.token;
    }
    g.addEventListener("mousemove", (e) => tooltip(e, p, model));
    g.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  });
}

function tooltip(event, p, model) {
  const tip = $("tooltip");
  tip.textContent = "";
  const head = document.createElement("div");
  head.textContent = `“${p.span}”: ${model.labels[p.label]}`;
  const table = document.createElement("table");
  model.labels.forEach((name, c) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(80 * p.probs[c])}px`;
    bar.style.background = palette(model)[c];
    tr.insertCell().appendChild(bar);
    tr.insertCell().textContent = `${(100 * p.probs[c]).toFixed(1)}%`;
  });
  tip.append(head, table);
  tip.hidden = false;
  tip.style.left = `${event.clientX + 14}px`;
  tip.style.top = `${event.clientY + 14}px`;
}

async function predictSentence(event) {
  event.preventDefault();
  const model = state.current, text = $("sentence").value;
  const error = $("sentence-error"), result = $("sentence-result");
  showError(error, "");
  try {
    const {rows: [row]} = await api(`v1/models/${encodeURIComponent(model.name)}/predict`,
                                    {inputs: [text], nodes: true});
    if (row.error) throw new Error(row.error);
    const tree = {balanced: "a balanced binary tree (no parser)", parsed: "the parser's tree",
                  gold: "the given treebank tree", given: "the given tree"}[row.tree] || row.tree;
    $("sentence-label").textContent =
      `${model.labels[row.label]} (${(100 * row.probs[row.label]).toFixed(1)}%), on ${tree}` +
      (row.unknown_words.length ? `; words the model never saw: ${row.unknown_words.join(" ")}`
                                : "");
    drawTree(row, model);
    result.hidden = false;
  } catch (err) {
    result.hidden = true;
    showError(error, err.message);
  }
}

// ---------------------------------------------------------------------------- molecules
function formatNumber(x) {
  if (x === null || x === undefined) return "";
  return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(3)
                                                                : x.toPrecision(4);
}

async function predictMolecule(event) {
  event.preventDefault();
  const model = state.current, smiles = $("smiles").value.trim();
  const error = $("smiles-error"), result = $("molecule-result");
  showError(error, "");
  try {
    const name = encodeURIComponent(model.name);
    const {rows: [row]} = await api(`v1/models/${name}/predict`, {inputs: [smiles]});
    if (row.error) throw new Error(row.error);
    $("drawing").src = `v1/models/${name}/molecule.svg?smiles=${encodeURIComponent(smiles)}`;
    const body = $("targets").tBodies[0];
    body.textContent = "";
    for (const target of model.targets) {
      const keys = Object.keys(row).filter((k) => k === target || k.startsWith(`${target}_p`));
      for (const key of keys) {
        const tr = body.insertRow();
        tr.dataset.target = key;
        tr.insertCell().textContent = key;
        const value = tr.insertCell();
        value.className = "number";
        value.textContent = formatNumber(row[key]);
        const spread = tr.insertCell();
        spread.className = "number";
        spread.textContent = key === target && row[`${target}_std`] !== undefined
          ? `± ${formatNumber(row[`${target}_std`])}` : (model.ensemble > 1 ? "" : "one model");
        tr.insertCell().textContent = key === target ? model.units[target] : "probability";
      }
    }
    result.hidden = false;
  } catch (err) {
    result.hidden = true;
    showError(error, err.message);
  }
}

$("sentence-form").addEventListener("submit", predictSentence);
$("smiles-form").addEventListener("submit", predictMolecule);
start();
