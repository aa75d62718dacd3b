// The dashboard's 7-day spend chart, drawn with the vendored Chart.js from the canvas's
// data-chart attribute ({"labels": [...], "credits": ["0.25", ...]}); the figures are also in the
// table below it, so the page says the same without JavaScript.
(() => {
  "use strict";

  function cssColor(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function draw(canvas) {
    if (typeof window.Chart === "undefined" || window.Chart.getChart(canvas)) return;
    let data;
    try {
      data = JSON.parse(canvas.dataset.chart);
    } catch {
      return;
    }
    const text = cssColor("--pico-muted-color", "#646b79");
    const grid = cssColor("--pico-muted-border-color", "#e7eaf0");
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{
          label: "Credits spent",
          data: data.credits.map(Number),
          backgroundColor: cssColor("--pico-primary", "#0172ad"),
          borderRadius: 3,
          maxBarThickness: 36,
        }],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: { label: (item) => `${data.credits[item.dataIndex]} credits` },
          },
        },
        scales: {
          x: { grid: { display: false }, ticks: { color: text } },
          y: { beginAtZero: true, grid: { color: grid }, ticks: { color: text } },
        },
      },
    });
    canvas.closest(".spend-chart")?.classList.add("is-drawn");
  }

  document.querySelectorAll("canvas[data-chart]").forEach(draw);
})();
