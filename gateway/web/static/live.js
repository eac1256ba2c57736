// Live lanes: poll /api/lanes and update each card in place (no reload, no framework).
(function () {
  "use strict";
  var root = document.getElementById("lanes");
  if (!root) { return; }
  var period = parseInt(root.getAttribute("data-poll"), 10) || 2000;
  var words = { "true": "在线 online", "false": "离线 offline", "null": "未知 unknown" };

  function text(card, selector, value) {
    var node = card.querySelector(selector);
    if (node && node.textContent !== String(value)) { node.textContent = String(value); }
  }

  function reads(card, list) {
    var ul = card.querySelector(".reads");
    if (!ul) { return; }
    var key = list.map(function (r) { return r.event_id; }).join(",");
    if (ul.getAttribute("data-key") === key) { return; }
    ul.setAttribute("data-key", key);
    while (ul.firstChild) { ul.removeChild(ul.firstChild); }
    list.forEach(function (r) {
      var li = document.createElement("li");
      var img = document.createElement("img");
      img.src = "/lanes/reads/" + encodeURIComponent(r.event_id) + ".svg";
      img.alt = r.plate || "unread"; img.width = 160; img.height = 51;
      var plate = document.createElement("span");
      plate.className = "plate"; plate.textContent = r.plate || "未识别 unread";
      var when = document.createElement("small");
      when.textContent = " " + r.local;
      li.appendChild(img); li.appendChild(plate); li.appendChild(when);
      ul.appendChild(li);
    });
  }

  function update(data) {
    data.lanes.forEach(function (lane) {
      var card = document.getElementById("lane-" + lane.lane);
      if (!card) { window.location.reload(); return; }  // a new lane appeared
      var waiting = lane.waiting ? lane.waiting.session_id : "";
      if (card.getAttribute("data-waiting") !== waiting) {  // a car waits to pay, or went
        window.location.reload(); return;
      }
      text(card, ".online", words[String(lane.online)]);
      text(card, ".barrier", lane.barrier);
      text(card, ".mode", lane.mode || "—");
      text(card, ".queue", lane.queue);
      reads(card, lane.reads);
    });
    root.setAttribute("data-updated", data.now);
  }

  function poll() {
    fetch("/api/lanes", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (r.status === 401) { window.location = "/login"; } return r.json(); })
      .then(update)
      .catch(function () { /* the next poll tries again */ })
      .then(function () { window.setTimeout(poll, period); });
  }
  window.setTimeout(poll, period);
})();
