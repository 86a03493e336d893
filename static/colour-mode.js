// The "System" colour mode: follow the device's light or dark setting, now and when it changes.
// Loaded in <head>, before the page is drawn, so a dark device never flashes a light page.
(function () {
  var root = document.documentElement;
  if (root.getAttribute("data-colour-mode") !== "auto" || !window.matchMedia) {
    return;
  }
  var dark = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    root.setAttribute("data-bs-theme", dark.matches ? "dark" : "light");
  }
  apply();
  dark.addEventListener("change", apply);
})();
