// Light or dark: the browser's choice (prefers-color-scheme) until the user presses the
// toggle, then theirs, remembered in this browser (localStorage). Loaded in <head> so the
// page never flashes the wrong theme.
(function () {
  "use strict";
  var KEY = "parkguard-theme";
  var html = document.documentElement;
  function stored() { try { return window.localStorage.getItem(KEY); } catch (e) { return null; } }
  function system() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ?
      "dark" : "light";
  }
  function apply(theme) { html.setAttribute("data-theme", theme); }
  apply(stored() || system());
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var next = html.getAttribute("data-theme") === "dark" ? "light" : "dark";
      apply(next);
      try { window.localStorage.setItem(KEY, next); } catch (e) { /* private mode: this page only */ }
    });
  });
})();
