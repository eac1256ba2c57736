// Evidence images: a picture the gateway could not get from its lane (offline, no answer,
// dropped from the lane's store) answers 404; put the words there instead of a broken image.
// One listener for the whole page, so cards swapped in by live.js are covered too.
(function () {
  "use strict";
  function unavailable(img) {
    var note = document.createElement("span");
    note.className = "no-image";
    note.setAttribute("role", "img");
    note.textContent = "图像不可用 image unavailable";
    img.replaceWith(note);
  }
  document.addEventListener("error", function (event) {
    var img = event.target;
    if (img instanceof HTMLImageElement && img.classList.contains("evidence")) unavailable(img);
  }, true);
  // an image that failed before this script ran
  document.querySelectorAll("img.evidence").forEach(function (img) {
    if (img.complete && img.naturalWidth === 0) unavailable(img);
  });
})();
