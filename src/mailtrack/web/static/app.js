// Small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // The pages show times in the zone of the mt_tz cookie: follow this browser's zone unless one was chosen.
  function followBrowserZone() {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (!zone || /(?:^|; )mt_tz_chosen=1/.test(document.cookie)) { return; }
    var m = document.cookie.match(/(?:^|; )mt_tz=([^;]*)/);
    if (!m || decodeURIComponent(m[1]) !== zone) {
      document.cookie = "mt_tz=" + encodeURIComponent(zone) + "; path=/; max-age=34560000; samesite=lax";
    }
  }

  // Refresh the #live part of the page while it is visible and nobody is typing in it.
  function liveRefresh(raw) {
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
          // compare with the server's last HTML (the page's own copy has localised times)
          if (fresh && fresh.innerHTML !== raw) {
            raw = fresh.innerHTML;
            // keep what the reader opened: details stay open (or closed) across the swap
            var open = {};
            live.querySelectorAll("details[data-keep]").forEach(function (d) { open[d.dataset.keep] = d.open; });
            live.innerHTML = fresh.innerHTML;
            live.querySelectorAll("details[data-keep]").forEach(function (d) {
              if (d.dataset.keep in open) { d.open = open[d.dataset.keep]; }
            });
          }
          if (note) { note.textContent = "updated " + new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
        })
        .catch(function () { /* offline for a moment: try again next time */ });
    }, seconds * 1000);
  }

  // Symbol tooltips for keyboard and touch too: focus or tap a row of symbols to read what they mean.
  function tooltips() {
    var tip = null;
    function hide() { if (tip) { tip.remove(); tip = null; } }
    function show(el) {
      hide();
      tip = document.createElement("div");
      tip.id = "tip";
      tip.setAttribute("role", "tooltip");
      tip.textContent = el.getAttribute("data-tip");
      document.body.appendChild(tip);
      var r = el.getBoundingClientRect(), w = tip.offsetWidth, h = tip.offsetHeight;
      var left = Math.max(8, Math.min(r.left, window.innerWidth - w - 8));
      var top = r.bottom + 6 + h > window.innerHeight ? Math.max(8, r.top - h - 6) : r.bottom + 6;
      tip.style.left = left + "px";
      tip.style.top = top + "px";
    }
    document.addEventListener("focusin", function (ev) {
      var el = ev.target.closest && ev.target.closest("[data-tip]");
      if (el) { show(el); } else { hide(); }
    });
    document.addEventListener("focusout", hide);
    document.addEventListener("click", function (ev) {
      var el = ev.target.closest && ev.target.closest("[data-tip]");
      if (el) { el.focus(); show(el); } else { hide(); }
    });
    document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") { hide(); } });
    window.addEventListener("scroll", hide, { passive: true });
  }

  // delegated, so forms that arrive with a live refresh ask too
  function confirmForms() {
    document.addEventListener("submit", function (ev) {
      var form = ev.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
    });
  }

  function copyFields() {
    document.querySelectorAll("input.copy").forEach(function (el) {
      el.addEventListener("focus", function () { el.select(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    var raw = live ? live.innerHTML : "";
    followBrowserZone();
    liveRefresh(raw);
    tooltips();
    confirmForms();
    copyFields();
  });
})();
