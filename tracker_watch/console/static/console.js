// The console works without this file; it only adds confirmations and progress feedback.
"use strict";
document.addEventListener("submit", function (event) {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { event.preventDefault(); return; }
  const progress = form.getAttribute("data-progress");
  if (progress) {
    const note = document.getElementById(progress);
    if (note) { note.hidden = false; }
    form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
  }
});
