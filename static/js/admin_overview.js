// The admin overview's chart (Chart.js, vendored): money in and out and usage per UTC day, from
// the JSON endpoint the canvas names. Without JavaScript the table shows the same figures.
(() => {
  "use strict";

  const COLOURS = {
    paid_in: "#009e73", granted: "#56b4e9", refunded: "#e69f00", disputed: "#d55e00",
    revenue: "#0072b2", list_cost: "#cc79a7",
  };

  function cssColor(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  async function drawChart(canvas) {
    if (typeof window.Chart !== "function" || canvas.dataset.chartState) return;
    canvas.dataset.chartState = "loading";
    let data;
    try {
      const response = await fetch(canvas.dataset.chartUrl,
        { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
    } catch (error) {
      canvas.dataset.chartState = "failed";
      canvas.setAttribute("aria-label", "The chart could not be loaded. Reload the page to try again.");
      return;
    }
    const text = cssColor("--pico-muted-color", "#646b79");
    const grid = cssColor("--pico-muted-border-color", "#e7eaf0");
    const usage = new Set(["revenue", "list_cost"]);
    const datasets = data.series.map((series) => ({
      type: usage.has(series.key) ? "line" : "bar",
      label: series.label,
      data: series.values.map(Number),
      exact: series.values,
      backgroundColor: COLOURS[series.key],
      borderColor: COLOURS[series.key],
      pointRadius: data.days.length > 45 ? 0 : 2,
    }));
    new window.Chart(canvas, {
      data: { labels: data.days, datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { color: text }, grid: { color: grid },
            title: { display: true, text: "UTC day", color: text } },
          y: { beginAtZero: true, ticks: { color: text }, grid: { color: grid },
            title: { display: true, text: "Credits", color: text } },
        },
        plugins: {
          legend: { labels: { color: text } },
          tooltip: {
            callbacks: {
              // The exact decimal the server sent, not the float drawn.
              label: (item) => `${item.dataset.label}: ${item.dataset.exact[item.dataIndex]} credits`,
            },
          },
        },
      },
    });
    canvas.dataset.chartState = "drawn";
  }

  function start() {
    document.querySelectorAll("canvas[data-overview-chart]").forEach(drawChart);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  // Editing a date makes the range custom.
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!input.matches || !input.matches("[data-custom-range]")) return;
    const range = input.form && input.form.elements.namedItem("range");
    if (range) range.value = "custom";
  }, true);
})();
