// The receipt's Print button: it works only with JavaScript, so it is rendered hidden.
(() => {
  "use strict";
  document.querySelectorAll("[data-print][hidden]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  });
})();
