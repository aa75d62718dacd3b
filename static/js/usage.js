// The usage page: the chart (Chart.js, vendored), local times, custom dates and the detail dialog.
// Without JavaScript the filters submit, the pager and the detail links navigate; only the
// chart needs it.
(() => {
  "use strict";

  // Colour-blind-friendly (Okabe–Ito, then a few more), legible on light and dark backgrounds.
  const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442",
    "#7f7f7f", "#999933"];

  // ---- Times: shown in the browser's time zone; the title keeps UTC. ----
  const localTime = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZoneName: "short",
  });
  function showLocalTimes(root) {
    root.querySelectorAll("time[data-local]").forEach((element) => {
      const when = new Date(element.dateTime);
      if (!Number.isNaN(when.getTime())) element.textContent = localTime.format(when);
    });
  }

  // ---- The chart: spend per UTC day, stacked by model or key; requests as a line. ----
  let chart = null;

  function cssColor(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function chartConfig(data) {
    const text = cssColor("--pico-muted-color", "#646b79");
    const grid = cssColor("--pico-muted-border-color", "#e7eaf0");
    const datasets = data.series.map((series, n) => ({
      type: "bar",
      label: series.label,
      data: series.cost.map(Number),
      exact: series.cost,
      backgroundColor: PALETTE[n % PALETTE.length],
      stack: "cost",
      yAxisID: "credits",
      order: 2,
    }));
    datasets.push({
      type: "line",
      label: "Requests",
      data: data.requests,
      borderColor: text,
      backgroundColor: text,
      pointRadius: data.days.length > 45 ? 0 : 2,
      tension: 0.2,
      yAxisID: "requests",
      order: 1,
    });
    return {
      data: { labels: data.days, datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, ticks: { color: text }, grid: { color: grid },
            title: { display: true, text: "UTC day", color: text } },
          credits: { stacked: true, beginAtZero: true, position: "left", ticks: { color: text },
            grid: { color: grid }, title: { display: true, text: "Credits", color: text } },
          requests: { beginAtZero: true, position: "right", ticks: { color: text, precision: 0 },
            grid: { drawOnChartArea: false }, title: { display: true, text: "Requests", color: text } },
        },
        plugins: {
          legend: { labels: { color: text } },
          tooltip: {
            callbacks: {
              // The exact decimal the server sent, not the float drawn.
              label: (item) => {
                const exact = item.dataset.exact;
                const value = exact ? `${exact[item.dataIndex]} credits` : item.formattedValue;
                return `${item.dataset.label}: ${value}`;
              },
            },
          },
        },
      },
    };
  }

  async function drawChart(canvas) {
    // htmx announces the page it loaded too: each canvas is drawn once.
    if (typeof window.Chart !== "function" || canvas.dataset.chartState) return;
    const url = canvas.dataset.chartUrl;
    canvas.dataset.chartState = "loading";
    let data;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
    } catch (error) {
      canvas.dataset.chartState = "failed";
      canvas.setAttribute("aria-label", "The chart could not be loaded. Reload the page to try again.");
      return;
    }
    // A newer view may have replaced this canvas while its data was on the way.
    if (!canvas.isConnected || canvas.dataset.chartUrl !== url) return;
    if (chart) chart.destroy();
    chart = new window.Chart(canvas, chartConfig(data));
    canvas.dataset.chartState = "drawn";
    canvas.dataset.chartStack = data.stack;
  }

  function enhance(root) {
    if (!root || !root.querySelectorAll) return;
    showLocalTimes(root);
    const canvases = root.matches && root.matches("canvas[data-usage-chart]")
      ? [root] : root.querySelectorAll("canvas[data-usage-chart]");
    canvases.forEach(drawChart);
  }

  function start() {
    enhance(document);
    document.addEventListener("htmx:load", (event) => enhance(event.detail.elt));
    // The back button brings an earlier view back from the server (htmx keeps no history cache).
    document.addEventListener("htmx:historyRestore", () => enhance(document));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  // ---- Editing a date makes the range custom (before the form's request is made). ----
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!input.matches || !input.matches("[data-custom-range]")) return;
    const range = input.form && input.form.elements.namedItem("range");
    if (range) range.value = "custom";
  }, true);

  // ---- A request's detail opens in a dialog over the log. ----
  document.addEventListener("htmx:afterSwap", (event) => {
    if (!event.detail.target || event.detail.target.id !== "usage-detail-body") return;
    const dialog = document.getElementById("usage-detail");
    if (dialog && !dialog.open) dialog.showModal();
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-close-dialog]");
    if (button) button.closest("dialog").close();
  });
})();
