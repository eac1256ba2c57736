// Alert banner: poll /api/alerts, redraw the banner in place, and sound the fire tone while a
// fire alert is not yet acknowledged. The tone is made by the Web Audio API (no audio file).
// Browsers refuse sound before the first click or key press on the page: the "enable alarm
// sound" button appears then, and any click on the page unlocks it too.
(function () {
  "use strict";
  var banner = document.getElementById("alert-banner");
  if (!banner) { return; }
  var period = parseInt(banner.getAttribute("data-poll"), 10) || 2000;
  var csrf = banner.getAttribute("data-csrf") || "";
  var csrfField = banner.getAttribute("data-csrf-field") || "csrf_token";
  var list = banner.querySelector(".alert-list");
  var soundButton = document.getElementById("alert-sound");
  // The words come with each alert (gateway/web/words.py, the one translation table).
  var audio = null;
  var sounding = false;
  var timer = null;

  function context() {
    if (!audio) {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) { return null; }
      audio = new Ctx();
    }
    return audio;
  }

  function tone(ctx, freq, start, length) {
    var osc = ctx.createOscillator();
    var gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
    gain.gain.setValueAtTime(0.25, start + length - 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + length);
    osc.connect(gain); gain.connect(ctx.destination);
    osc.start(start); osc.stop(start + length);
  }

  function siren() {  // one second of the two-tone fire alarm
    var ctx = context();
    if (!ctx) { return; }
    if (ctx.state !== "running") {
      ctx.resume().catch(function () { /* needs a gesture first */ });
      if (soundButton) { soundButton.hidden = false; }
      return;
    }
    if (soundButton) { soundButton.hidden = true; }
    var t = ctx.currentTime + 0.01;
    tone(ctx, 960, t, 0.25); tone(ctx, 770, t + 0.25, 0.25);
    tone(ctx, 960, t + 0.5, 0.25); tone(ctx, 770, t + 0.75, 0.25);
  }

  function setSound(on) {
    banner.setAttribute("data-sounding", on ? "1" : "0");
    if (on === sounding) { return; }
    sounding = on;
    if (on) { siren(); timer = window.setInterval(siren, 1200); }
    else { window.clearInterval(timer); timer = null; if (soundButton) { soundButton.hidden = true; } }
  }

  function unlock() {
    var ctx = context();
    if (ctx && ctx.state !== "running") { ctx.resume().catch(function () {}); }
  }
  document.addEventListener("click", unlock, true);
  document.addEventListener("keydown", unlock, true);
  if (soundButton) { soundButton.addEventListener("click", function () { unlock(); siren(); }); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function ackForm(id) {
    var form = el("form", "inline ack-form");
    form.method = "post";
    form.action = "/alerts/" + encodeURIComponent(id) + "/ack";
    [[csrfField, csrf], ["next", window.location.pathname]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden"; input.name = pair[0]; input.value = pair[1];
      form.appendChild(input);
    });
    var button = el("button", "", "确认 Acknowledge");
    button.type = "submit";
    form.appendChild(button);
    return form;
  }

  function draw(alerts) {
    var key = alerts.map(function (a) { return a.alert_id + ":" + a.state; }).join(",");
    if (list.getAttribute("data-key") !== key) {
      list.setAttribute("data-key", key);
      while (list.firstChild) { list.removeChild(list.firstChild); }
      alerts.forEach(function (a) {
        var li = el("li", "alert-item sev-" + a.severity + " state-" + a.state);
        li.setAttribute("data-alert", a.alert_id);
        li.setAttribute("data-sound", a.sound ? "fire" : "");
        li.appendChild(el("strong", "", (a.severity_zh || "") + " " + a.title_zh));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", "en", a.title_en));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("small", "", a.raised_local + " · " + (a.state_words || a.state) +
                                       (a.acked_by ? " · " + a.acked_by : "")));
        if (a.state === "raised" || a.state === "notified") { li.appendChild(ackForm(a.alert_id)); }
        list.appendChild(li);
      });
    }
    banner.classList.toggle("empty", alerts.length === 0);
    setSound(alerts.some(function (a) { return a.sound; }));
  }

  // A poll that fails or hangs says so under the banner (the lanes page has its own).
  var lost = document.getElementById("alerts-lost");
  function setLost(isLost) { if (lost) { lost.hidden = !isLost; } }

  function poll() {
    var controller = window.AbortController ? new AbortController() : null;
    var timer = controller ?
      window.setTimeout(function () { controller.abort(); }, Math.max(4000, 2 * period)) : 0;
    fetch("/api/alerts", { credentials: "same-origin", headers: { "Accept": "application/json" },
                           signal: controller ? controller.signal : undefined })
      .then(function (r) {  // a 4xx is the gateway answering (a login ended, say): not lost
        if (r.status >= 500) { throw new Error(String(r.status)); }
        setLost(false);
        return r.ok ? r.json() : null;
      })
      .then(function (data) {
        if (data) { draw(data.alerts); banner.setAttribute("data-updated", data.now); }
      })
      .catch(function () { setLost(true); /* the next poll tries again */ })
      .then(function () { window.clearTimeout(timer); window.setTimeout(poll, period); });
  }

  setSound(Array.prototype.some.call(banner.querySelectorAll(".alert-item"), function (li) {
    return li.getAttribute("data-sound") === "fire";
  }));
  window.setTimeout(poll, period);
})();
