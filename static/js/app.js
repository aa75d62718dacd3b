// OneKey's few enhancements. Every page works without them: forms post, links navigate.
(() => {
  "use strict";

  // ---- Controls that only work with JavaScript are rendered `hidden` and shown here. ----
  function reveal(root) {
    if (!root || !root.querySelectorAll) return;
    root.querySelectorAll("[data-copy-target][hidden]").forEach((element) => {
      element.hidden = false;
    });
  }
  reveal(document);
  document.addEventListener("htmx:load", (event) => reveal(event.detail.elt));

  // ---- A live region, so screen readers hear what happened. ----
  let announcer = null;
  function announce(message) {
    if (!announcer) {
      announcer = document.createElement("div");
      announcer.className = "visually-hidden";
      announcer.setAttribute("role", "status");
      announcer.setAttribute("aria-live", "polite");
      document.body.append(announcer);
    }
    announcer.textContent = "";
    window.setTimeout(() => { announcer.textContent = message; }, 50);
  }

  // ---- Copy buttons: <button data-copy-target="id">, for an input's value or an element's text. ----
  function selectContents(source) {
    if (typeof source.select === "function") {
      source.focus();
      source.select();
      return;
    }
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  async function copy(source) {
    const text = "value" in source && typeof source.value === "string" ? source.value : source.textContent;
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      selectContents(source);
      try {
        return document.execCommand("copy");
      } catch {
        return false;
      }
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy-target]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copyTarget);
    if (!source) return;
    if (!button.dataset.label) button.dataset.label = button.textContent.trim();
    const copied = await copy(source);
    if (copied) {
      button.textContent = "Copied";
      announce("Copied to the clipboard.");
      window.clearTimeout(button.copyTimer);
      button.copyTimer = window.setTimeout(() => {
        button.textContent = button.dataset.label;
      }, 4000);
    } else {
      selectContents(source);
      button.textContent = "Press Ctrl+C to copy";
      announce("Could not copy. The text is selected: press Control C to copy it.");
    }
  });

  // The new key's field selects the whole key when it gets focus.
  document.addEventListener("focusin", (event) => {
    if (event.target.id === "new-key-value") event.target.select();
  });

  // ---- htmx: busy buttons, focus after a swap, and errors that are not fragments. ----
  document.addEventListener("htmx:beforeRequest", (event) => {
    const submitter = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent
      ? event.detail.requestConfig.triggeringEvent.submitter : null;
    if (submitter) {
      submitter.setAttribute("aria-busy", "true");
      event.detail.elt.addEventListener("htmx:afterRequest", () => submitter.removeAttribute("aria-busy"), { once: true });
    }
  });

  function isWholePage(xhr) {
    return /^\s*<!doctype html/i.test(xhr.responseText || "");
  }

  function showError(message) {
    const notices = document.getElementById("notices");
    if (!notices) {
      window.alert(message);
      return;
    }
    notices.querySelectorAll("[data-htmx-error]").forEach((old) => old.remove());
    const notice = document.createElement("div");
    notice.className = "notice notice-error";
    notice.setAttribute("role", "alert");
    notice.dataset.htmxError = "";
    notice.textContent = message;
    notices.append(notice);
    notices.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (!isWholePage(xhr)) return;
    // A whole page where a fragment was expected: a redirect (the session ended, say) or an error page.
    event.detail.shouldSwap = false;
    if (xhr.status < 400) {
      window.location.assign(xhr.responseURL || window.location.href);
      return;
    }
    event.detail.isError = true;
  });

  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    let message = `Something went wrong (error ${xhr.status}). Reload the page and try again.`;
    if (isWholePage(xhr)) {
      const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
      const heading = page.querySelector("main h1");
      if (heading && heading.textContent.trim()) message = heading.textContent.trim();
    }
    showError(message);
  });

  document.addEventListener("htmx:sendError", () => {
    showError("OneKey could not be reached. Check your connection and try again.");
  });

  document.addEventListener("htmx:afterSettle", (event) => {
    const config = event.detail.requestConfig;
    if (!config || config.verb === "get") return;
    document.querySelectorAll("[data-htmx-error]").forEach((old) => old.remove());
    // After a form posts: the new key if there is one, else the first field with an error.
    const target = document.getElementById("new-key-value")
      || document.querySelector("[aria-invalid=true]")
      || document.querySelector(".notice-error[role=alert]");
    if (target) {
      if (!target.hasAttribute("tabindex") && !/^(INPUT|SELECT|TEXTAREA|BUTTON|A)$/.test(target.tagName)) {
        target.setAttribute("tabindex", "-1");
      }
      target.focus();
    }
  });
})();
