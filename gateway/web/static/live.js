// Live lanes: poll /lanes/live and swap each card's live part in place (no reload, no
// framework). The server renders the parts with the page's own template, so every word
// comes from one translation table. A poll that fails or hangs shows the "lost contact"
// banner at once and greys every card until a poll succeeds again.
(function () {
  "use strict";
  var root = document.getElementById("lanes");
  if (!root) { return; }
  var period = parseInt(root.getAttribute("data-poll"), 10) || 2000;
  var limit = Math.max(4000, 2 * period);  // a poll that hangs longer counts as failed
  var lost = document.getElementById("gateway-lost");
  var busLost = document.getElementById("bus-lost");
  var updated = document.getElementById("updated");
  var failures = 0;

  function setLost(isLost) {
    document.body.classList.toggle("gateway-lost", isLost);
    if (lost) {
      lost.hidden = !isLost;
      lost.querySelector(".tries").textContent = isLost ?
        "已重试 retried " + failures + " 次 times" : "";
    }
  }

  function update(data) {
    data.cards.forEach(function (lane) {
      var card = document.getElementById("lane-" + lane.lane);
      if (!card) { window.location.reload(); return; }  // a new lane appeared
      if (card.getAttribute("data-waiting") !== lane.waiting) {  // a car waits to pay, or went
        window.location.reload(); return;
      }
      var live = card.querySelector(".live");
      if (live && live.getAttribute("data-html") !== lane.html) {
        live.innerHTML = lane.html;  // rendered by our own template (escaped there)
        live.setAttribute("data-html", lane.html);
      }
      card.classList.toggle("stale", lane.stale);
    });
    if (busLost) {
      busLost.hidden = !data.bus_lost;
      busLost.querySelector(".text").textContent = data.bus_lost;
    }
    if (updated) { updated.textContent = data.now_local; }
    if (lost) { lost.querySelector(".last").textContent = data.now_local; }
  }

  function fetchWithin(url, ms) {
    var controller = window.AbortController ? new AbortController() : null;
    var timer = controller ? window.setTimeout(function () { controller.abort(); }, ms) : 0;
    return fetch(url, { credentials: "same-origin", cache: "no-store",
                        headers: { "Accept": "application/json" },
                        signal: controller ? controller.signal : undefined })
      .finally(function () { window.clearTimeout(timer); });
  }

  function poll() {
    fetchWithin("/lanes/live", limit)
      .then(function (r) {
        if (r.status === 401) { window.location = "/login"; }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) { failures = 0; setLost(false); update(data); })
      .catch(function () { failures += 1; setLost(true); })
      .then(function () { window.setTimeout(poll, period); });
  }

  // Presets: "other" and no preset need typed words; a named preset is reason enough.
  Array.prototype.forEach.call(document.querySelectorAll("form.open-form"), function (form) {
    var preset = form.querySelector("select.preset");
    var reason = form.querySelector("input.reason");
    if (!preset || !reason) { return; }
    preset.addEventListener("change", function () {
      var needsWords = preset.value === "" || preset.value.indexOf("其他") === 0;
      reason.required = needsWords;
      if (needsWords) { reason.setAttribute("minlength", "4"); }
      else { reason.removeAttribute("minlength"); }
    });
  });

  window.setTimeout(poll, period);
})();
