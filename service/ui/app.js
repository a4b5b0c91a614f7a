// The coder workbench: plain JavaScript over the service's JSON API (no build step).
// Note text is only ever inserted as text nodes, never as HTML.

const $ = (selector) => document.querySelector(selector);
const state = {
  key: sessionStorage.getItem("coder-key"),
  me: null,
  offset: 0,
  limit: 25,
  total: 0,
  item: null,
  keep: new Map(), // suggestion code -> kept?
  added: [], // {code, system, description, billable}
  focus: -1,
  selected: null,
  warnings: [],
  confirmResolve: false,
  hits: [],
  hit: -1,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { "X-API-Key": state.key };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new ApiError(response.status, error.code || "http_error", error.message || response.statusText);
  }
  return data;
}

function say(message, isError = false) {
  const status = $("#status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

function fail(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut("Your key was refused; sign in again.");
    return;
  }
  say(error.message || String(error), true);
}

function show(view) {
  for (const id of ["sign-in", "queue", "item"]) $(`#${id}`).hidden = id !== view;
  state.view = view;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const pct = (value) => value.toFixed(2);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

// --- sign in -------------------------------------------------------------------------------
async function signIn(key) {
  state.key = key;
  try {
    const me = await api("GET", "/v1/me");
    if (me.role !== "coder" && me.role !== "admin") {
      state.key = null;
      say(`The key "${me.name}" has the ${me.role} role; the workbench needs a coder key.`, true);
      return;
    }
    state.me = me;
    sessionStorage.setItem("coder-key", key);
    $("#who").textContent = `Signed in as ${me.name}`;
    $("#who").hidden = false;
    $("#sign-out").hidden = false;
    say(`Signed in as ${me.name}.`);
    await loadQueue();
  } catch (error) {
    state.key = null;
    sessionStorage.removeItem("coder-key");
    if (error instanceof ApiError && error.status === 401) say("That key was not accepted.", true);
    else fail(error);
  }
}

function signOut(message = "Signed out.") {
  state.key = null;
  state.me = null;
  sessionStorage.removeItem("coder-key");
  $("#who").hidden = true;
  $("#sign-out").hidden = true;
  show("sign-in");
  say(message, message !== "Signed out.");
  $("#api-key").value = "";
  $("#api-key").focus();
}

// --- the queue -----------------------------------------------------------------------------
function queueParams(extra = {}) {
  const params = new URLSearchParams();
  const status = $("#filter-status").value;
  if (status) params.set("status", status);
  params.set("order", $("#filter-order").value);
  const confidence = $("#filter-confidence").value;
  if (confidence !== "") params.set("max_confidence", confidence);
  if ($("#filter-mine").checked) params.set("claimed_by", state.me.name);
  params.set("limit", state.limit);
  params.set("offset", state.offset);
  for (const [name, value] of Object.entries(extra)) params.set(name, value);
  return params;
}

async function loadCounts() {
  const counts = $("#counts");
  const labels = { open: "Waiting", claimed: "Claimed", resolved: "Resolved" };
  const totals = await Promise.all(
    Object.keys(labels).map((status) => api("GET", `/v1/reviews?status=${status}&limit=1`).then((page) => page.total)),
  );
  counts.replaceChildren(...Object.values(labels).map((label, i) => el("li", {}, `${label}: `, el("strong", {}, String(totals[i])))));
}

async function loadQueue() {
  show("queue");
  try {
    const [page] = await Promise.all([api("GET", `/v1/reviews?${queueParams()}`), loadCounts()]);
    state.total = page.total;
    const rows = page.items.map((item) => {
      const open = () => openItem(item.id);
      const label = item.note_id || item.id.slice(0, 8);
      return el(
        "tr",
        { "data-id": item.id },
        el("td", {}, pct(item.confidence)),
        el("td", {}, label),
        el("td", {}, item.encounter_id || ""),
        el("td", {}, when(item.created_at)),
        el("td", {}, item.status),
        el("td", {}, item.claimed_by || ""),
        el("td", {}, el("button", { type: "button", onclick: open, "aria-label": `Open note ${label}` }, "Open")),
      );
    });
    $("#queue-table tbody").replaceChildren(...rows);
    if (!rows.length) $("#queue-table tbody").append(el("tr", {}, el("td", { colspan: "7" }, "Nothing here.")));
    const last = Math.min(state.offset + state.limit, state.total);
    $("#page-info").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "";
    $("#prev-page").disabled = state.offset === 0;
    $("#next-page").disabled = last >= state.total;
  } catch (error) {
    fail(error);
  }
}

async function claimNext() {
  try {
    const item = await api("POST", "/v1/reviews:claimNext");
    if (item === null) {
      say("The queue is empty: nothing to claim.");
      return;
    }
    say(`Claimed ${item.note_id || item.id}.`);
    await showItem(item);
  } catch (error) {
    fail(error);
  }
}

// --- one item ------------------------------------------------------------------------------
async function openItem(id) {
  try {
    await showItem(await api("GET", `/v1/reviews/${encodeURIComponent(id)}`));
  } catch (error) {
    fail(error);
  }
}

const mine = () => state.item && state.item.status === "claimed" && state.item.claimed_by === state.me.name;

async function showItem(item) {
  state.item = item;
  state.keep = new Map(item.suggestions.map((s) => [s.code, item.status === "resolved" ? isFinal(item, s.code) : s.accepted]));
  state.added = item.status === "resolved"
    ? (item.final_codes || []).filter((c) => !item.suggestions.some((s) => s.code === c.code)).map((c) => ({ ...c, description: "" }))
    : [];
  state.focus = -1;
  state.selected = null;
  state.confirmResolve = false;
  show("item");
  $("#item-title").textContent = `Note ${item.note_id || item.id.slice(0, 8)}`;
  $("#item-meta").textContent = `${item.status}${item.claimed_by ? ` · held by ${item.claimed_by}` : ""} · model ${item.model_version}`;
  $("#comment").value = item.comment || "";
  $("#entry").replaceChildren(el("h3", { id: "entry-title" }, "Code entry"),
    el("p", { class: "hint" }, "Select a code to see its catalogue entry and the text that supports it."));
  renderNote();
  renderCodes();
  updateActions();
  await Promise.all([checkCodes(), loadHistory()]);
  $("#note").focus();
}

const isFinal = (item, code) => (item.final_codes || []).some((c) => c.code === code);

// Evidence offsets count characters (code points, as Python does); a JavaScript string counts UTF-16 units,
// two for any character beyond the BMP (an emoji), so an offset is mapped before the text is cut at it.
function unitOffsets(text) {
  const units = [0];
  for (const ch of text) units.push(units[units.length - 1] + ch.length);
  return (offset) => units[Math.max(0, Math.min(units.length - 1, offset))];
}

function evidenceText(text, evidence) {
  const unit = unitOffsets(text);
  return text.slice(unit(evidence.start), unit(evidence.end));
}

function renderNote() {
  const text = state.item.text;
  const unit = unitOffsets(text);
  const spans = [];
  for (const s of state.item.suggestions) {
    for (const e of s.evidence || []) spans.push({ start: unit(e.start), end: unit(e.end), code: s.code });
  }
  const cuts = new Set([0, text.length]);
  for (const s of spans) {
    cuts.add(Math.max(0, Math.min(text.length, s.start)));
    cuts.add(Math.max(0, Math.min(text.length, s.end)));
  }
  const points = [...cuts].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < points.length - 1; i++) {
    const [start, end] = [points[i], points[i + 1]];
    const codes = spans.filter((s) => s.start <= start && s.end >= end).map((s) => s.code);
    const piece = text.slice(start, end);
    if (!codes.length) parts.push(document.createTextNode(piece));
    else parts.push(el("mark", { "data-codes": codes.join(" "), title: `Evidence for ${codes.join(", ")}` }, piece));
  }
  $("#note").replaceChildren(...parts);
}

function codeRow(code, { suggestion, added }) {
  const kept = suggestion ? state.keep.get(code.code) : true;
  const id = `keep-${code.code.replace(/\W/g, "_")}`;
  const editable = mine();
  const box = suggestion
    ? el("input", { type: "checkbox", id, checked: kept, disabled: !editable, onchange: (e) => setKeep(code.code, e.target.checked) })
    : el("button", { type: "button", class: "remove", disabled: !editable, onclick: () => removeAdded(code.code), "aria-label": `Remove ${code.code}` }, "✕");
  const warnings = (code.warnings || []).filter((w) => !w.startsWith("excludes1:"));
  return el(
    "li",
    { class: suggestion && !kept ? "removed" : "", "data-code": code.code },
    box,
    el("label", { for: suggestion ? id : undefined, class: "sr-only" }, `Keep ${code.code}`),
    el("button", { type: "button", class: "link code", onclick: () => selectCode(code.code, code.system) }, code.code),
    el("span", { class: "desc" }, code.description || "", ...warnings.map((w) => el("span", { class: "badge bad" }, ` ${w.replaceAll("_", " ")}`))),
    suggestion ? el("span", { class: "conf", title: "model confidence" }, pct(code.confidence)) : null,
  );
}

function renderCodes() {
  $("#suggestions").replaceChildren(...state.item.suggestions.map((s) => codeRow(s, { suggestion: true })));
  $("#added").replaceChildren(...state.added.map((c) => codeRow(c, { added: true })));
  if (!state.added.length) $("#added").append(el("li", { class: "hint" }, "None yet."));
  highlightFocus();
}

function updateActions() {
  const editable = mine();
  $("#resolve").disabled = !editable;
  $("#release").disabled = !editable;
  $("#claim").disabled = state.item.status === "resolved" || editable;
  $("#code-search").disabled = !editable;
  $("#comment").disabled = !editable;
}

function setKeep(code, kept) {
  state.keep.set(code, kept);
  state.confirmResolve = false;
  const row = $(`#suggestions li[data-code="${CSS.escape(code)}"]`);
  if (row) row.classList.toggle("removed", !kept);
  checkCodes();
}

function removeAdded(code) {
  state.added = state.added.filter((c) => c.code !== code);
  state.confirmResolve = false;
  renderCodes();
  checkCodes();
  say(`Removed ${code}.`);
}

function finalCodes() {
  const kept = state.item.suggestions.filter((s) => state.keep.get(s.code)).map((s) => ({ code: s.code, system: s.system }));
  return [...kept, ...state.added.map((c) => ({ code: c.code, system: c.system }))];
}

const WARNING_TEXT = {
  not_billable: (c) => `${c} is not billable: choose a more specific code.`,
  missing_7th_character: (c) => `${c} needs a 7th character.`,
  not_in_catalogue: (c) => `${c} is not in the catalogue.`,
};

async function checkCodes() {
  if (!mine()) {
    $("#warnings").replaceChildren();
    return;
  }
  const codes = finalCodes();
  if (!codes.length) {
    state.warnings = [];
    $("#warnings").replaceChildren();
    return;
  }
  try {
    const result = await api("POST", "/v1/catalog:check", { codes });
    const lines = [];
    const pairs = new Set();
    for (const c of result.codes) {
      for (const w of c.warnings) {
        if (w.startsWith("excludes1:")) {
          const other = w.slice("excludes1:".length);
          const pair = [c.code, other].sort().join(" and ");
          if (!pairs.has(pair)) lines.push(`${pair} exclude each other (Excludes1): keep one.`);
          pairs.add(pair);
        } else if (WARNING_TEXT[w]) lines.push(WARNING_TEXT[w](c.code));
      }
    }
    state.warnings = lines;
    $("#warnings").replaceChildren(
      ...(lines.length ? [el("strong", {}, "Before resolving:"), el("ul", {}, ...lines.map((l) => el("li", {}, l)))] : []),
    );
  } catch (error) {
    fail(error);
  }
}

async function loadHistory() {
  try {
    const page = await api("GET", `/v1/reviews/${encodeURIComponent(state.item.id)}/history`);
    $("#history").replaceChildren(...page.events.map((e) => {
      const details = e.action === "resolve"
        ? ` — kept ${e.details.accepted.join(", ") || "none"}; removed ${e.details.removed.join(", ") || "none"}; added ${e.details.added.join(", ") || "none"}`
        : "";
      return el("li", {}, `${when(e.at)} · ${e.actor} · ${e.action}${details}`);
    }));
  } catch (error) {
    fail(error);
  }
}

async function selectCode(code, system) {
  state.selected = code;
  for (const mark of document.querySelectorAll("#note mark")) {
    mark.classList.toggle("selected", mark.dataset.codes.split(" ").includes(code));
  }
  const first = document.querySelector("#note mark.selected");
  if (first) first.scrollIntoView({ block: "center" });
  try {
    const entry = await api("GET", `/v1/catalog/codes/${encodeURIComponent(code)}?system=${encodeURIComponent(system)}`);
    const list = (title, items) => (items.length ? [el("dt", {}, title), ...items.map((i) => el("dd", {}, i))] : []);
    const suggestion = state.item.suggestions.find((s) => s.code === code);
    const evidence = (suggestion?.evidence || []).map((e) => `“${evidenceText(state.item.text, e)}”`);
    $("#entry").replaceChildren(
      el("h3", { id: "entry-title" }, `${entry.code} · ${entry.system}`),
      el("p", {}, entry.description, " ",
        el("span", { class: `badge ${entry.billable ? "ok" : "bad"}` }, entry.billable ? "billable" : "not billable")),
      el("dl", {},
        ...list("Evidence in the note", evidence.length ? evidence : suggestion ? ["(none given)"] : []),
        ...list("Excludes1", entry.excludes1),
        ...list("Excludes2", entry.excludes2),
        ...list("Code first", entry.code_first),
        ...list("Use additional code", entry.use_additional),
        ...list("Includes", entry.inclusion_terms),
        ...list("Billable codes under it", entry.billable_alternatives)),
    );
  } catch (error) {
    fail(error);
  }
}

// --- search and add ------------------------------------------------------------------------
let searchTimer = null;
function onSearchInput() {
  clearTimeout(searchTimer);
  const query = $("#code-search").value.trim();
  if (!query) {
    renderHits([]);
    return;
  }
  searchTimer = setTimeout(async () => {
    try {
      const result = await api("GET", `/v1/catalog/search?q=${encodeURIComponent(query)}&limit=15`);
      if ($("#code-search").value.trim() === query) renderHits(result.hits);
    } catch (error) {
      fail(error);
    }
  }, 150);
}

function renderHits(hits) {
  state.hits = hits;
  state.hit = hits.length ? 0 : -1;
  $("#search-results").replaceChildren(...hits.map((h, i) => el(
    "li",
    { role: "option", id: `hit-${i}`, "aria-selected": i === 0 ? "true" : "false", onclick: () => addCode(h) },
    el("span", { class: "code" }, h.code), ` ${h.description}`, h.billable ? "" : " (not billable)",
  )));
  $("#code-search").setAttribute("aria-expanded", hits.length ? "true" : "false");
  moveHit(0);
}

function moveHit(delta) {
  if (!state.hits.length) {
    $("#code-search").removeAttribute("aria-activedescendant");
    return;
  }
  state.hit = (state.hit + delta + state.hits.length) % state.hits.length;
  document.querySelectorAll("#search-results li").forEach((li, i) => li.setAttribute("aria-selected", i === state.hit ? "true" : "false"));
  $("#code-search").setAttribute("aria-activedescendant", `hit-${state.hit}`);
  document.getElementById(`hit-${state.hit}`)?.scrollIntoView({ block: "nearest" });
}

function addCode(hit) {
  const exists = state.added.some((c) => c.code === hit.code) || state.item.suggestions.some((s) => s.code === hit.code);
  if (exists) {
    if (state.keep.has(hit.code)) setKeep(hit.code, true);
    renderCodes();
    say(`${hit.code} is already in the set.`);
  } else {
    state.added.push({ ...hit });
    renderCodes();
    checkCodes();
    say(`Added ${hit.code} ${hit.description}.`);
  }
  state.confirmResolve = false;
  $("#code-search").value = "";
  renderHits([]);
  $("#code-search").focus();
}

// --- resolve, release, claim ---------------------------------------------------------------
async function resolve() {
  if (!mine()) return;
  const codes = finalCodes();
  const comment = $("#comment").value.trim();
  if (!codes.length && !comment) {
    say("Keep or add at least one code, or say in a comment why there is none.", true);
    return;
  }
  await checkCodes();
  if (state.warnings.length && !state.confirmResolve) {
    state.confirmResolve = true;
    say("This code set breaks a coding rule (see above). Press Resolve again to resolve anyway.", true);
    $("#warnings").focus?.();
    return;
  }
  try {
    const result = await api("POST", `/v1/reviews/${encodeURIComponent(state.item.id)}:resolve`, { codes, comment: comment || null });
    say(`Resolved: kept ${result.accepted.join(", ") || "none"}; removed ${result.removed.join(", ") || "none"}; added ${result.added.join(", ") || "none"}.`);
    state.offset = 0;
    await loadQueue();
  } catch (error) {
    fail(error);
  }
}

async function release() {
  if (!mine()) return;
  try {
    await api("POST", `/v1/reviews/${encodeURIComponent(state.item.id)}:release`);
    say("Released back to the queue.");
    await loadQueue();
  } catch (error) {
    fail(error);
  }
}

async function claimShown() {
  if (!state.item || state.item.status === "resolved" || mine()) return;
  try {
    const item = await api("POST", `/v1/reviews/${encodeURIComponent(state.item.id)}:claim`);
    say(`Claimed ${item.note_id || item.id}.`);
    await showItem(item);
  } catch (error) {
    fail(error);
  }
}

// --- keyboard ------------------------------------------------------------------------------
function codeRows() {
  return [...document.querySelectorAll("#suggestions li[data-code], #added li[data-code]")];
}

function highlightFocus() {
  codeRows().forEach((row, i) => row.classList.toggle("focused", i === state.focus));
}

function moveFocus(delta) {
  const rows = codeRows();
  if (!rows.length) return;
  state.focus = Math.max(0, Math.min(rows.length - 1, state.focus + delta));
  highlightFocus();
  const row = rows[state.focus];
  (row.querySelector("input, button.remove") || row.querySelector("button.link")).focus();
}

function toggleFocused() {
  const row = codeRows()[state.focus];
  if (!row) return;
  const box = row.querySelector("input[type=checkbox]");
  if (box && !box.disabled) {
    box.checked = !box.checked;
    setKeep(row.dataset.code, box.checked);
    say(`${row.dataset.code} ${box.checked ? "kept" : "removed"}.`);
  } else if (row.querySelector("button.remove") && mine()) removeAdded(row.dataset.code);
}

function onKey(event) {
  const target = event.target;
  const typing = target.matches("input:not([type=checkbox]), textarea, select");
  if (target.id === "code-search") {
    if (event.key === "ArrowDown") { moveHit(1); event.preventDefault(); }
    else if (event.key === "ArrowUp") { moveHit(-1); event.preventDefault(); }
    else if (event.key === "Enter" && state.hit >= 0) { addCode(state.hits[state.hit]); event.preventDefault(); }
    else if (event.key === "Escape") { target.value = ""; renderHits([]); target.blur(); event.preventDefault(); }
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey || $("#help").open) return;
  if (event.key === "?") { $("#help").showModal(); event.preventDefault(); return; }
  if (state.view === "queue" && event.key === "n") { claimNext(); event.preventDefault(); return; }
  if (state.view !== "item") return;
  const actions = {
    j: () => moveFocus(1),
    k: () => moveFocus(-1),
    x: toggleFocused,
    "/": () => $("#code-search").focus(),
    r: resolve,
    u: release,
    c: claimShown,
    n: claimNext,
    Escape: loadQueue,
    Enter: () => {
      const row = codeRows()[state.focus];
      if (row && !target.matches("button")) {
        const code = row.dataset.code;
        const s = state.item.suggestions.find((x) => x.code === code) || state.added.find((x) => x.code === code);
        selectCode(code, s.system);
      } else return false;
      return true;
    },
  };
  const action = actions[event.key];
  if (action && action() !== false) event.preventDefault();
}

// --- wiring --------------------------------------------------------------------------------
function wire() {
  $("#sign-in-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("#api-key").value.trim()); });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#help-button").addEventListener("click", () => $("#help").showModal());
  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadQueue(); });
  $("#claim-next").addEventListener("click", claimNext);
  $("#prev-page").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadQueue(); });
  $("#next-page").addEventListener("click", () => { state.offset += state.limit; loadQueue(); });
  $("#back").addEventListener("click", loadQueue);
  $("#resolve").addEventListener("click", resolve);
  $("#release").addEventListener("click", release);
  $("#claim").addEventListener("click", claimShown);
  $("#code-search").addEventListener("input", onSearchInput);
  $("#comment").addEventListener("input", () => { state.confirmResolve = false; });
  document.addEventListener("keydown", onKey);
  $("#warnings").setAttribute("tabindex", "-1");
  if (state.key) signIn(state.key);
  else { show("sign-in"); $("#api-key").focus(); }
}

wire();
