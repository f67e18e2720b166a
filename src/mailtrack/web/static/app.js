// Small progressive enhancements; every page works without them.
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      el.title = el.textContent;
      el.textContent = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit" });
    });
  }

  // Refresh the #live part of the page while it is visible and nobody is typing in it.
  function liveRefresh() {
    var seconds = parseInt(document.body.dataset.refresh || "0", 10);
    var live = document.getElementById("live");
    if (!seconds || !live) { return; }
    var note = document.querySelector(".live-note");
    setInterval(function () {
      if (document.hidden || live.contains(document.activeElement) && document.activeElement !== document.body) { return; }
      fetch(location.href, { credentials: "same-origin", headers: { "X-Mailtrack-Refresh": "1" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
          if (fresh && fresh.innerHTML !== live.innerHTML) {
            live.innerHTML = fresh.innerHTML;
            localTimes(live);
          }
          if (note) { note.textContent = "updated " + new Date().toLocaleTimeString(); }
        })
        .catch(function () { /* offline for a moment: try again next time */ });
    }, seconds * 1000);
  }

  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
  }

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
      });
    });
  }

  function copyFields() {
    document.querySelectorAll("input.copy").forEach(function (el) {
      el.addEventListener("focus", function () { el.select(); });
    });
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var field = document.getElementById(btn.dataset.copy);
        if (!field) { return; }
        field.select();
        var done = function () { btn.textContent = "Copied"; };
        if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () {}); }
        else { document.execCommand("copy"); done(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    copyButtons();
    localTimes(document);
    liveRefresh();
    autosubmit();
    confirmForms();
    copyFields();
  });
})();
