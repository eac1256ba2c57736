// Print buttons (inline handlers are blocked by the Content-Security-Policy).
document.querySelectorAll("[data-print]").forEach(function (b) {
  b.addEventListener("click", function () { window.print(); });
});
