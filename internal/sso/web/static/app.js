// Progressive enhancement of the web client: the presence switcher applies
// on change. Everything works without this script.
document.addEventListener("DOMContentLoaded", function () {
  var sel = document.getElementById("presence");
  var form = document.getElementById("presence-form");
  if (!sel || !form) return;
  document.querySelectorAll(".js-hide").forEach(function (b) { b.hidden = true; });
  sel.addEventListener("change", function () { form.submit(); });
});
