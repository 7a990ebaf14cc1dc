// dataflows dashboard: live updates. Every page works without this file; with it, the part of
// the page marked #live is refreshed when the server says (server-sent events) that it changed,
// and forms marked data-async are sent without leaving the page.
(function () {
  "use strict";
  var main = document.querySelector("main[data-stream]");
  if (!main || !window.EventSource) { return; }
  var busy = false, again = false;

  function openDetails(root) {
    var open = {};
    root.querySelectorAll("details[open] > summary").forEach(function (s) { open[s.textContent] = true; });
    return open;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var live = document.getElementById("live");
        if (!fresh || !live) { return; }
        var open = openDetails(live);
        fresh.querySelectorAll("details > summary").forEach(function (s) {
          if (open[s.textContent]) { s.parentNode.setAttribute("open", ""); }
        });
        live.replaceWith(fresh);
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var source = new EventSource(main.getAttribute("data-stream"));
  source.addEventListener("change", refresh);

  document.querySelectorAll("form[data-async]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var note = form.querySelector("[data-result]");
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        body: new URLSearchParams(new FormData(form)),
      }).then(function (r) {
        if (note) { note.textContent = r.ok ? "Sent." : "Not sent (" + r.status + ")."; }
        refresh();
      });
    });
  });
})();
