// The review page's behaviour: move between units, filter them, post decisions, switch diff views.
// It never turns data into markup itself: after a decision, the server's freshly rendered section (escaped on
// the server like the first page) replaces the old one.
"use strict";

const token = document.querySelector('meta[name="t2i-token"]').content;
const message = document.getElementById("message");
let current = null;

function units() {
  return Array.from(document.querySelectorAll("section.unit"));
}

function visibleUnits() {
  return units().filter((unit) => !unit.hidden);
}

function say(text, problem = false) {
  message.textContent = text;
  message.classList.toggle("problem", problem);
}

function select(unit) {
  if (current) current.classList.remove("current");
  current = unit;
  if (!unit) return;
  unit.classList.add("current");
  unit.focus({ preventScroll: true });
  unit.scrollIntoView({ block: "nearest" });
}

function move(step) {
  const shown = visibleUnits();
  if (!shown.length) return;
  const at = shown.indexOf(current);
  const next = at < 0 ? (step > 0 ? 0 : shown.length - 1) : Math.min(Math.max(at + step, 0), shown.length - 1);
  select(shown[next]);
}

// -- filter -------------------------------------------------------------------------------------------------

const FILTERS = {
  changed: ["regressed", "improved", "nondeterministic", "new"],
  regressed: ["regressed"],
  improved: ["improved"],
  new: ["new"],
  nondeterministic: ["nondeterministic"],
  unchanged: ["unchanged"],
  all: null,
};

function applyFilter() {
  const form = document.getElementById("filters");
  const statuses = FILTERS[form.elements.filter.value];
  const failingOnly = form.elements.failing.checked;
  const undecidedOnly = form.elements.undecided.checked;
  for (const unit of units()) {
    unit.hidden =
      (statuses !== null && !statuses.includes(unit.dataset.status)) ||
      (failingOnly && unit.dataset.failed !== "1") ||
      (undecidedOnly && unit.dataset.decision !== "");
  }
  if (current && current.hidden) select(null);
  const shown = visibleUnits().length;
  say(`${shown} of ${units().length} review units shown`);
}

// -- decisions ----------------------------------------------------------------------------------------------

async function post(decisions, what) {
  say(`${what}...`);
  let response;
  try {
    response = await fetch("/api/decisions", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-T2I-Token": token },
      body: JSON.stringify({ decisions }),
    });
  } catch (error) {
    say(`${what}: the review server did not answer (${error}); nothing was written`, true);
    return false;
  }
  if (!response.ok) {
    say(`${what}: ${await response.text()}`, true);
    return false;
  }
  const answer = await response.json();
  const parser = new DOMParser();
  for (const [uid, markup] of Object.entries(answer.units)) {
    const old = units().find((unit) => unit.dataset.uid === uid);
    const fresh = parser.parseFromString(markup, "text/html").body.firstElementChild;
    if (!old || !fresh) continue;
    const wasCurrent = old === current;
    old.replaceWith(fresh);
    if (wasCurrent) select(fresh);
  }
  say(`${what}: done`);
  return true;
}

function decide(unit, action) {
  if (!unit) return;
  return post([{ action, unit: unit.dataset.uid }], `${action} ${unit.dataset.uid}`);
}

function judgeWrong(button) {
  const item = button.closest(".item");
  const wrong = button.getAttribute("aria-pressed") !== "true";
  const judge = button.dataset.judge;
  return post(
    [{ action: "judge_wrong", item: item.dataset.item, judge, wrong }],
    `${wrong ? "judge is wrong" : "judge is right"}: ${judge} on ${item.dataset.item}`,
  );
}

function acceptShown() {
  const shown = visibleUnits().filter((unit) => unit.dataset.status !== "not scored");
  if (!shown.length) return say("nothing shown to accept", true);
  if (!window.confirm(`Accept ${shown.length} review unit(s) into the baseline?`)) return;
  return post(
    shown.map((unit) => ({ action: "accept", unit: unit.dataset.uid })),
    `accept ${shown.length} shown`,
  );
}

// -- diff views ---------------------------------------------------------------------------------------------

const MODES = ["side", "overlay", "heat"];

function setMode(diff, mode) {
  for (const name of MODES) diff.classList.toggle(`mode-${name}`, name === mode);
  const stats = diff.querySelector(".stats");
  if (mode === "heat" && stats && !stats.textContent) showStats(stats);
}

async function showStats(stats) {
  // The numbers are computed when first asked for: a page of many items never decodes every pair up front.
  const response = await fetch(stats.dataset.src);
  stats.textContent = response.ok ? (await response.json()).stats : await response.text();
}

function nextMode(unit) {
  for (const diff of unit.querySelectorAll(".diff")) {
    const at = MODES.findIndex((name) => diff.classList.contains(`mode-${name}`));
    setMode(diff, MODES[(at + 1) % MODES.length]);
  }
}

function slide(range) {
  // The top image (this run) is shown left of the slider, the baseline right of it.
  const top = range.parentElement.querySelector("img.top");
  top.style.clipPath = `inset(0 ${100 - Number(range.value)}% 0 0)`;
}

// -- wiring -------------------------------------------------------------------------------------------------

document.addEventListener("click", (event) => {
  const target = event.target;
  const unit = target.closest("section.unit");
  if (unit && !target.closest("a, input")) select(unit);
  if (target.matches("button.accept")) decide(unit, "accept");
  else if (target.matches("button.reject")) decide(unit, "reject");
  else if (target.matches("button.judge-wrong")) judgeWrong(target);
  else if (target.matches(".diff button[data-mode]")) setMode(target.closest(".diff"), target.dataset.mode);
  else if (target.id === "accept-shown") acceptShown();
});

document.addEventListener("input", (event) => {
  if (event.target.matches('.overlay input[type="range"]')) slide(event.target);
});

document.getElementById("filters").addEventListener("change", applyFilter);

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  // A filter or the overlay slider keeps the focus after a click: the letters still work there, and the arrows
  // stay theirs (they move a radio choice or a slider).
  if (event.target.matches('textarea, select, input:not([type="radio"]):not([type="checkbox"]):not([type="range"])')) return;
  if (event.target.matches("input") && key.startsWith("Arrow")) return;
  if (key === "j" || key === "ArrowDown") move(1);
  else if (key === "k" || key === "ArrowUp") move(-1);
  else if (key === "a") decide(current, "accept");
  else if (key === "r") decide(current, "reject");
  else if (key === "d" && current) nextMode(current);
  else if (key === "f" && current) {
    const link = current.querySelector("a.full");
    if (link) window.open(link.href, "_blank", "noopener");
  } else if (/^[1-9]$/.test(key) && current) {
    const button = current.querySelector(`.item button.judge-wrong[data-key="${key}"]`);
    if (button) judgeWrong(button);
  } else return;
  event.preventDefault();
});

for (const range of document.querySelectorAll('.overlay input[type="range"]')) slide(range);
applyFilter();
