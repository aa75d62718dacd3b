// The API keys page: a text filter over each allowed-models checklist. Without JavaScript the
// checklist is a plain list of checkboxes; the filter only hides rows, so a ticked model that is
// filtered out is still posted.
(() => {
  "use strict";

  function terms(text) {
    return text.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function update(checklist) {
    const input = checklist.querySelector("[data-model-filter] input");
    const wanted = terms(input ? input.value : "");
    const rows = checklist.querySelectorAll(".model-options > li");
    let shown = 0;
    let ticked = 0;
    rows.forEach((row) => {
      const text = row.textContent.toLowerCase();
      const match = wanted.every((term) => text.includes(term));
      row.hidden = !match;
      if (match) shown += 1;
      const box = row.querySelector("input[type=checkbox]");
      if (box && box.checked) ticked += 1;
    });
    const none = checklist.querySelector("[data-model-none]");
    if (none) none.hidden = shown > 0;
    const count = checklist.querySelector("[data-model-count]");
    if (count) {
      const showing = wanted.length ? `${shown} of ${rows.length} shown` : `${rows.length} models`;
      count.textContent = `${showing} · ${ticked ? `${ticked} ticked` : "none ticked: all allowed"}`;
    }
  }

  function setUp(root) {
    if (!root || !root.querySelectorAll) return;
    const checklists = root.matches && root.matches("[data-model-checklist]")
      ? [root] : Array.from(root.querySelectorAll("[data-model-checklist]"));
    checklists.forEach((checklist) => {
      const filter = checklist.querySelector("[data-model-filter]");
      if (filter) filter.hidden = false;
      update(checklist);
    });
  }

  document.addEventListener("DOMContentLoaded", () => setUp(document));
  document.addEventListener("htmx:load", (event) => setUp(event.detail.elt));

  // A key's row swapped back in (saved, cancelled, paused, resumed) took the focused button
  // with it: focus goes to the row's first control rather than to the top of the page.
  document.addEventListener("htmx:afterSettle", (event) => {
    const row = event.detail.elt;
    if (!row || !row.matches || !row.matches("#keys-table tr[id^=key-]")) return;
    if (document.activeElement && document.activeElement !== document.body) return;
    const control = row.querySelector(".row-action a, .row-action button, input, select");
    if (control) control.focus();
  });

  document.addEventListener("input", (event) => {
    const checklist = event.target.closest("[data-model-checklist]");
    if (checklist) update(checklist);
  });
  document.addEventListener("change", (event) => {
    const checklist = event.target.closest("[data-model-checklist]");
    if (checklist) update(checklist);
  });
  document.addEventListener("keydown", (event) => {
    if (!event.target.closest("[data-model-filter]")) return;
    if (event.key === "Enter") {
      event.preventDefault(); // a filter, not a submit
    } else if (event.key === "Escape" && event.target.value) {
      event.preventDefault();
      event.target.value = "";
      update(event.target.closest("[data-model-checklist]"));
    }
  });
})();
