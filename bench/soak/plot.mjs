/**
 * Draws the soak's time series as one SVG file, by hand (no plotting dependency): memory
 * (RSS, heap used, heap total), turn latency (p50, p99 per time bucket), event-loop delay
 * (p99, max), handles and file descriptors, and throughput (turns/s, errors/s), one panel
 * each over a shared time axis. The warm-up is shaded; after it, the target bands are drawn
 * around the baseline (the first window after warm-up): ±10% for RSS and heap, ±20% for the
 * p99 latency.
 */

const WIDTH = 1000;
const PANEL_HEIGHT = 170;
const PANEL_GAP = 46;
const LEFT = 78;
const RIGHT = 24;

const COLORS = {
  rss: "#1f77b4",
  heapUsed: "#ff7f0e",
  heapTotal: "#8c8c8c",
  retainedRss: "#0b3c6b",
  retainedHeap: "#a64d00",
  p50: "#2ca02c",
  p99: "#d62728",
  eldP99: "#9467bd",
  eldMax: "#c5b0d5",
  handles: "#17becf",
  fds: "#8c564b",
  turns: "#333333",
  errors: "#d62728",
};

function escapeXml(text) {
  return String(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

/** About `count` round tick values (1, 2 or 5 times a power of ten) covering [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toFixed(10)));
  }
  return ticks;
}

function formatTick(value) {
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(value % 1000 === 0 ? 0 : 1)}k`;
  if (Number.isInteger(value)) return String(value);
  return value.toFixed(Math.abs(value) < 1 ? 2 : 1);
}

/** One panel: axes, grid, shaded warm-up, optional bands, and the series as polylines. */
function panel({ top, title, unit, xMax, warmup, series, bands = [], timeUnit }) {
  const height = PANEL_HEIGHT;
  const plotWidth = WIDTH - LEFT - RIGHT;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  const bandValues = bands.flatMap((b) => [b.low, b.high]);
  let yMax = Math.max(1e-9, ...values, ...bandValues);
  const yMin = 0;
  yMax *= 1.08;
  const yTicks = niceTicks(yMin, yMax, 4);
  yMax = Math.max(yMax, yTicks.at(-1));
  const x = (seconds) => LEFT + (seconds / xMax) * plotWidth;
  const y = (value) => top + height - ((value - yMin) / (yMax - yMin)) * height;
  const out = [];
  out.push(
    `<text x="${LEFT}" y="${top - 10}" class="title">${escapeXml(title)}<tspan class="unit"> (${escapeXml(unit)})</tspan></text>`,
  );
  out.push(
    `<rect x="${LEFT}" y="${top}" width="${plotWidth}" height="${height}" fill="#ffffff" stroke="#cccccc"/>`,
  );
  if (warmup > 0) {
    out.push(
      `<rect x="${LEFT}" y="${top}" width="${(x(warmup) - LEFT).toFixed(1)}" height="${height}" fill="#f0f0f0"/>`,
      `<text x="${(LEFT + x(warmup)) / 2}" y="${top + 14}" class="note" text-anchor="middle">warm-up</text>`,
    );
  }
  for (const band of bands) {
    const x0 = x(warmup);
    out.push(
      `<rect x="${x0.toFixed(1)}" y="${y(band.high).toFixed(1)}" width="${(LEFT + plotWidth - x0).toFixed(1)}" height="${Math.max(0.5, y(band.low) - y(band.high)).toFixed(1)}" fill="${band.color}" fill-opacity="0.12" stroke="${band.color}" stroke-opacity="0.35" stroke-dasharray="4 3"/>`,
    );
  }
  for (const tick of yTicks) {
    out.push(
      `<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${y(tick).toFixed(1)}" y2="${y(tick).toFixed(1)}" stroke="#eeeeee"/>`,
      `<text x="${LEFT - 6}" y="${(y(tick) + 4).toFixed(1)}" class="tick" text-anchor="end">${formatTick(tick)}</text>`,
    );
  }
  const divisor = timeUnit === "min" ? 60 : 1;
  for (const tick of niceTicks(0, xMax / divisor, 8)) {
    const px = x(tick * divisor);
    out.push(
      `<line x1="${px.toFixed(1)}" x2="${px.toFixed(1)}" y1="${top + height}" y2="${top + height + 4}" stroke="#999999"/>`,
      `<text x="${px.toFixed(1)}" y="${top + height + 16}" class="tick" text-anchor="middle">${formatTick(tick)}${timeUnit === "min" ? " min" : " s"}</text>`,
    );
  }
  for (const s of series) {
    const points = s.points.filter((p) => Number.isFinite(p[1]));
    if (points.length === 0) continue;
    const d = points
      .map(([px, py], i) => `${i === 0 ? "M" : "L"}${x(px).toFixed(1)} ${y(py).toFixed(1)}`)
      .join(" ");
    out.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 1.5}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`,
    );
  }
  // Legend, right-aligned above the panel.
  let lx = LEFT + plotWidth;
  for (const s of [...series].reverse()) {
    const label = escapeXml(s.label);
    const textWidth = label.length * 6.2;
    lx -= textWidth;
    out.push(`<text x="${lx.toFixed(1)}" y="${top - 10}" class="legend">${label}</text>`);
    lx -= 22;
    out.push(
      `<line x1="${lx.toFixed(1)}" x2="${(lx + 16).toFixed(1)}" y1="${top - 14}" y2="${top - 14}" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`,
    );
    lx -= 14;
  }
  return out.join("\n");
}

/**
 * The SVG text. `samples`: the probe's lines (`t` in s since the run's start, bytes, ms,
 * counts); `retained`: the probe's samples taken right after a forced full collection (may be
 * empty); `buckets`: per time bucket `{ t, p50, p99, turnsPerS, errorsPerS }`;
 * `baseline`: `{ rss, heapUsed, p99 }` of the first window after warm-up.
 */
export function renderSoakSvg({
  title,
  subtitle,
  samples,
  retained = [],
  buckets,
  warmupS,
  durationS,
  baseline,
}) {
  const MiB = 1024 * 1024;
  const timeUnit = durationS >= 600 ? "min" : "s";
  const panels = [
    {
      title: "Memory",
      unit: "MiB",
      series: [
        { label: "RSS", color: COLORS.rss, points: samples.map((s) => [s.t, s.rss / MiB]) },
        {
          label: "heap used",
          color: COLORS.heapUsed,
          points: samples.map((s) => [s.t, s.heapUsed / MiB]),
        },
        {
          label: "heap total",
          color: COLORS.heapTotal,
          dash: "5 3",
          width: 1,
          points: samples.map((s) => [s.t, s.heapTotal / MiB]),
        },
        ...(retained.length === 0
          ? []
          : [
              {
                label: "RSS after full GC",
                color: COLORS.retainedRss,
                width: 2.5,
                points: retained.map((s) => [s.t, s.rss / MiB]),
              },
              {
                label: "heap after full GC",
                color: COLORS.retainedHeap,
                width: 2.5,
                points: retained.map((s) => [s.t, s.heapUsed / MiB]),
              },
            ]),
      ],
      bands:
        baseline === undefined
          ? []
          : [
              {
                low: (baseline.rss * 0.9) / MiB,
                high: (baseline.rss * 1.1) / MiB,
                color: COLORS.rss,
              },
              {
                low: (baseline.heapUsed * 0.9) / MiB,
                high: (baseline.heapUsed * 1.1) / MiB,
                color: COLORS.heapUsed,
              },
            ],
    },
    {
      title: "Turn latency",
      unit: "ms",
      series: [
        { label: "p50", color: COLORS.p50, points: buckets.map((b) => [b.t, b.p50]) },
        { label: "p99", color: COLORS.p99, points: buckets.map((b) => [b.t, b.p99]) },
      ],
      bands:
        baseline === undefined || !Number.isFinite(baseline.p99)
          ? []
          : [{ low: baseline.p99 * 0.8, high: baseline.p99 * 1.2, color: COLORS.p99 }],
    },
    {
      title: "Event-loop delay of the gateway",
      unit: "ms",
      series: [
        { label: "max", color: COLORS.eldMax, points: samples.map((s) => [s.t, s.eldMax]) },
        { label: "p99", color: COLORS.eldP99, points: samples.map((s) => [s.t, s.eldP99]) },
      ],
    },
    {
      title: "Open handles and file descriptors of the gateway",
      unit: "count",
      series: [
        {
          label: "active handles",
          color: COLORS.handles,
          points: samples.map((s) => [s.t, s.handles]),
        },
        {
          label: "file descriptors",
          color: COLORS.fds,
          points: samples.map((s) => [s.t, s.fds ?? Number.NaN]),
        },
      ],
    },
    {
      title: "Throughput",
      unit: "per second",
      series: [
        { label: "turns/s", color: COLORS.turns, points: buckets.map((b) => [b.t, b.turnsPerS]) },
        {
          label: "errors/s",
          color: COLORS.errors,
          points: buckets.map((b) => [b.t, b.errorsPerS]),
        },
      ],
    },
  ];
  const HEADER = 50 + subtitle.length * 14;
  const height = HEADER + panels.length * (PANEL_HEIGHT + PANEL_GAP) + 10;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    "<style>.title{font-size:13px;font-weight:600;fill:#222}.unit{font-weight:400;fill:#666}.tick{font-size:10px;fill:#666}.legend{font-size:11px;fill:#333}.note{font-size:10px;fill:#888}.h1{font-size:16px;font-weight:700;fill:#111}.h2{font-size:11px;fill:#444}</style>",
    `<rect width="${WIDTH}" height="${height}" fill="#fafafa"/>`,
    `<text x="${LEFT}" y="26" class="h1">${escapeXml(title)}</text>`,
    ...subtitle.map(
      (line, i) => `<text x="${LEFT}" y="${44 + i * 14}" class="h2">${escapeXml(line)}</text>`,
    ),
  ];
  panels.forEach((p, i) => {
    parts.push(
      panel({
        ...p,
        top: HEADER + 18 + i * (PANEL_HEIGHT + PANEL_GAP),
        xMax: Math.max(1e-9, durationS),
        warmup: warmupS,
        timeUnit,
      }),
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
