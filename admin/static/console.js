// Clover console: draws the charts the pages describe in data-chart attributes, with uPlot, when a page
// loads and whenever htmx swaps a part of it in. Everything else works without this file.
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

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (e) { draw(e.target); });
})();
