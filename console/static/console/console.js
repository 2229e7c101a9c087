// The console's only script: keeps a page's live region fresh and opens an attempt when
// its bar in the timeline is selected. Served by the service (CSP: script-src 'self').
"use strict";

function openAttempt(hash) {
  const target = hash && document.getElementById(hash.slice(1));
  if (target && target.tagName === "DETAILS") {
    target.open = true;
    target.scrollIntoView({ block: "nearest" });
    const summary = target.querySelector("summary");
    if (summary) summary.focus({ preventScroll: true });
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a.bar-link");
  if (link) {
    event.preventDefault();
    const hash = link.getAttribute("href");
    history.replaceState(null, "", hash);
    openAttempt(hash);
  }
});

// Someone is filling in a form: a field has the focus, or has been typed in or ticked.
function busy(live) {
  const focused = document.activeElement;
  if (focused && focused.matches("input, textarea, select")) return true;
  const fields = [...live.querySelectorAll("textarea, input[type=checkbox]")];
  return fields.some((field) =>
    field.tagName === "TEXTAREA" ? field.value.trim() !== "" : field.checked,
  );
}

// Replace the live region with the same region of a fresh copy of this page (same URL,
// so the filters and the page stay), keeping open attempts open. Skipped while the page
// is hidden or someone is filling in one of its forms.
async function refresh(live) {
  if (document.hidden || busy(live)) return true;
  let response;
  try {
    response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
  } catch (error) {
    return true; // the service is restarting: try again next time
  }
  if (!response.ok || response.redirected) return response.status === 429;
  const fresh = new DOMParser()
    .parseFromString(await response.text(), "text/html")
    .getElementById("live");
  if (!fresh) return false;
  const open = [...live.querySelectorAll("details[open]")].map((d) => d.id);
  live.replaceChildren(...fresh.childNodes);
  open.forEach((id) => {
    const details = document.getElementById(id);
    if (details) details.open = true;
  });
  return fresh.hasAttribute("data-refresh");
}

function startRefreshing() {
  const live = document.getElementById("live");
  const seconds = live && Number(live.dataset.refresh);
  if (!seconds) return;
  const timer = setInterval(async () => {
    if (!(await refresh(live))) clearInterval(timer);
  }, seconds * 1000);
}

// JSON fields (input patch, skipped response) say at once when their text is not JSON;
// the service checks them again.
document.addEventListener("input", (event) => {
  const field = event.target;
  if (!field.matches("textarea[data-json]")) return;
  let problem = "";
  if (field.value.trim() !== "") {
    try {
      JSON.parse(field.value);
    } catch (error) {
      problem = `Not valid JSON: ${error.message}`;
    }
  }
  field.setCustomValidity(problem);
});

document.addEventListener("DOMContentLoaded", () => {
  openAttempt(location.hash);
  startRefreshing();
});
