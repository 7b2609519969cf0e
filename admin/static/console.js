// Clover console: draws the charts the pages describe in data-chart attributes, with uPlot, when a page
// loads and whenever htmx swaps a part of it in, and follows a running execution's output. Everything
// else works without this file.
(function () {
  "use strict";
  var colors = { fired: "#2a7b3f", succeeded: "#3a6ea5", failed: "#b32d2e", skipped: "#8c8f94", late: "#c98a00" };

  function draw(root) {
    if (typeof uPlot !== "function" || !root.querySelectorAll) {
      return;
    }
    root.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var d;
      try {
        d = JSON.parse(el.getAttribute("data-chart"));
      } catch (e) {
        return;
      }
      var names = ["fired", "succeeded", "failed", "skipped", "late"];
      var series = [{}];
      var data = [d.t];
      names.forEach(function (n) {
        series.push({ label: n, stroke: colors[n], width: 1.5 });
        data.push(d[n]);
      });
      el.textContent = "";
      new uPlot({ width: Math.max(el.clientWidth, 300), height: 170, series: series, scales: { x: { time: true } } }, data, el);
      el.setAttribute("data-drawn", String(d.t.length));
    });
  }

  // follow streams a run's output into a <pre data-follow="URL">: each "output" event's data is a JSON
  // string appended as text (never as HTML). The browser's EventSource reconnects by itself with the
  // last event id (the byte offset reached), so nothing is shown twice; if it gives up, a new one starts
  // from that offset. The page keeps the last maxKept characters.
  var maxKept = 1 << 20;

  function follow(pre) {
    var url = pre.getAttribute("data-follow");
    var state = document.getElementById("output-state");
    var offset = null;
    var failures = 0;
    var source;
    function show(text) {
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(text));
      var n = pre.textContent.length;
      if (n > maxKept) {
        pre.textContent = pre.textContent.slice(n - maxKept);
      }
      if (atBottom) {
        pre.scrollTop = pre.scrollHeight;
      }
    }
    function open() {
      var u = url;
      if (offset !== null) {
        u = u.replace(/([?&]offset=)\d+/, "$1" + offset);
      }
      source = new EventSource(u);
      source.addEventListener("output", function (e) {
        offset = e.lastEventId;
        show(JSON.parse(e.data));
        pre.setAttribute("data-offset", offset);
      });
      source.addEventListener("end", function () {
        source.close();
        pre.removeAttribute("data-follow");
        pre.setAttribute("data-ended", "true");
        if (state) {
          state.textContent = "ended";
        }
      });
      source.addEventListener("failure", function (e) {
        if (state) {
          state.textContent = "cannot read the output: " + JSON.parse(e.data);
        }
      });
      source.addEventListener("open", function () { failures = 0; });
      source.onerror = function () {
        if (source.readyState !== EventSource.CLOSED || !pre.hasAttribute("data-follow")) {
          return;
        }
        // Refused (too many streams, the session ended): try again a few times, then say so.
        if (++failures > 10) {
          if (state) {
            state.textContent = "the live output stopped: reload the page";
          }
          return;
        }
        setTimeout(open, 3000);
      };
    }
    open();
  }

  function followAll(root) {
    if (typeof EventSource !== "function" || !root.querySelectorAll) {
      return;
    }
    root.querySelectorAll("pre[data-follow]").forEach(follow);
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); followAll(document); });
  document.addEventListener("htmx:afterSwap", function (e) { draw(e.target); });
})();
