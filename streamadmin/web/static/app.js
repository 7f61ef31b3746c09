// streamctl web: progressive enhancement only; every page works without it.
// Reloads the numbers of pages that ask for it (#live[data-refresh]), and
// makes the select-all box of the dead-letter list work.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var every = live ? parseInt(live.getAttribute("data-refresh"), 10) : 0;
  if (live && every > 0) {
    setInterval(function () {
      if (document.hidden) return;
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (!text) return;
          // DOMParser never runs scripts; the server escaped every value.
          var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
          if (fresh) live.replaceWith(document.importNode(fresh, true));
          live = document.getElementById("live");
        })
        .catch(function () {});
    }, every * 1000);
  }
  var all = document.querySelector("input[data-select-all]");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=id]").forEach(function (box) { box.checked = all.checked; });
    });
  }
})();
