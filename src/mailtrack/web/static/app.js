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

  // Keep the #live part of the page current. With data-live, a Server-Sent Events stream says when
  // something changed and the page fetches itself once; otherwise it polls every data-refresh seconds.
  // Either way only the [data-key] blocks whose HTML differs are swapped, so open sections stay open
  // and nothing flickers; when the blocks themselves changed (a new email) the whole part is swapped.
  function topKeyed(root) {
    return Array.prototype.filter.call(root.querySelectorAll("[data-key]"), function (el) {
      return !el.parentElement.closest("[data-key]") || !root.contains(el.parentElement.closest("[data-key]"));
    });
  }

  function keepOpen(live, swap) {
    var open = {};
    live.querySelectorAll("details[data-keep]").forEach(function (d) { open[d.dataset.keep] = d.open; });
    swap();
    live.querySelectorAll("details[data-keep]").forEach(function (d) {
      if (d.dataset.keep in open) { d.open = open[d.dataset.keep]; }
    });
  }

  function liveRefresh(raw) {
    var seconds = parseInt(document.body.dataset.refresh || "0", 10);
    var stream = document.body.dataset.live;
    var live = document.getElementById("live");
    if ((!seconds && !stream) || !live) { return; }
    var note = document.querySelector(".live-note");
    var busy = false, again = false;

    function stamp() {
      if (note) { note.textContent = "updated " + new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
    }

    function apply(fresh) {
      var html = fresh.innerHTML;
      if (html === raw) { return; }  // the server's HTML is the same as last time: touch nothing
      var now = topKeyed(live), next = topKeyed(fresh);
      var same = now.length === next.length && now.every(function (el, i) { return el.dataset.key === next[i].dataset.key; });
      var focused = document.activeElement;
      var typing = focused && focused !== document.body && live.contains(focused) && /^(INPUT|SELECT|TEXTAREA)$/.test(focused.tagName);
      if (!same && typing) { again = true; return; }  // never rebuild under someone's typing
      var pending = false;
      keepOpen(live, function () {
        if (!same) { live.innerHTML = html; return; }
        next.forEach(function (el, i) {
          if (now[i].outerHTML === el.outerHTML) { return; }
          if (typing && now[i].contains(focused)) { pending = true; return; }
          now[i].replaceWith(document.importNode(el, true));
        });
      });
      if (pending) { again = true; } else { raw = html; }
    }

    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(location.href, { credentials: "same-origin", headers: { "X-Mailtrack-Refresh": "1" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
          if (fresh) { apply(fresh); }
          stamp();
        })
        .catch(function () { /* offline for a moment: the next change or tick tries again */ })
        .then(function () {
          busy = false;
          if (again) { again = false; setTimeout(refresh, 500); }
        });
    }

    if (stream && window.EventSource) {
      var es = new EventSource(stream);
      es.addEventListener("changed", refresh);
      es.addEventListener("open", stamp);
      live.addEventListener("focusout", function () { if (again) { again = false; setTimeout(refresh, 100); } });
      return;
    }
    setInterval(function () { if (!document.hidden) { refresh(); } }, seconds * 1000);
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
    var live = document.getElementById("live");
    var raw = live ? live.innerHTML : "";
    followBrowserZone();
    liveRefresh(raw);
    tooltips();
    confirmForms();
    copyFields();
  });
})();
