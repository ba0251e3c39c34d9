// keysentry dashboard: enhancements only. Every page reads and every form
// works without this file.
"use strict";

// Ask before a resolve (a form with data-confirm).
document.addEventListener("submit", (ev) => {
  const msg = ev.target.getAttribute && ev.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
  }
});

// Keep the per-state counts of the list fresh: the JSON API, every 15 s.
function refreshCounts() {
  const counts = document.getElementById("counts");
  if (!counts) {
    return;
  }
  fetch("/ui/api/incidents?page=1", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((data) => {
      if (!data || !data.counts) {
        return;
      }
      for (const li of counts.querySelectorAll("li[data-state]")) {
        const n = data.counts[li.getAttribute("data-state")];
        const span = li.querySelector(".count");
        if (span && n !== undefined) {
          span.textContent = String(n);
        }
      }
    })
    .catch(() => {});
}

if (document.getElementById("counts")) {
  window.setInterval(refreshCounts, 15000);
}
