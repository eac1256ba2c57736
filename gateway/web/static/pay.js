// The pay page's plate keypad, when JavaScript runs (the page works without it: the
// province radios and the plate box are a plain GET form the server puts together).
(function () {
  "use strict";
  var form = document.getElementById("plate-form");
  if (!form) { return; }
  var box = document.getElementById("plate");
  var chosen = document.getElementById("chosen");
  var energy = document.getElementById("new-energy");
  var suffixes = document.getElementById("suffixes");
  var keys = form.querySelectorAll("input[name=province]");
  var firsts = {};
  keys.forEach(function (key) { firsts[key.value] = key; });

  function pick(char) {
    if (firsts[char]) { firsts[char].checked = true; }
    chosen.textContent = char;
  }
  function tidy() {
    // typed or pasted with its province: move that onto the keypad, keep the rest here
    var text = box.value.replace(/[\s·•.\-]/g, "").toUpperCase();
    if (text && firsts[text.charAt(0)]) { pick(text.charAt(0)); text = text.slice(1); }
    if (text !== box.value) { box.value = text; }
  }
  function hint() {
    box.placeholder = energy.checked ? "AD12345" : "B12345";
  }
  keys.forEach(function (key) {
    key.addEventListener("change", function () { pick(key.value); box.focus(); });
  });
  box.addEventListener("input", tidy);
  energy.addEventListener("change", function () { hint(); box.focus(); });
  suffixes.hidden = false;
  suffixes.querySelectorAll("button").forEach(function (button) {
    button.addEventListener("click", function () {
      box.value += button.getAttribute("data-char");
      box.focus();
    });
  });
  document.body.classList.add("js");
  tidy();
  hint();
}());
