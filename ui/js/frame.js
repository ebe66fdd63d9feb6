// DOM writes for live data are batched into one requestAnimationFrame callback: many price updates
// between two frames cost one write each for the latest value, and none for the ones replaced.
//
// Counters for the benchmark (window.__shardlinePerf):
//   latency  - message arrival to the end of the frame callback that wrote it (the paint follows
//              in that same frame), ms
//   render   - time spent writing the DOM in one frame callback, ms
//   handler  - time spent handling one message before its write is scheduled, ms

class Ring {
  constructor(size) {
    this.values = new Float64Array(size);
    this.count = 0;
  }

  push(value) {
    this.values[this.count % this.values.length] = value;
    this.count += 1;
  }

  summary() {
    const n = Math.min(this.count, this.values.length);
    if (n === 0) return { count: 0, p50: null, p99: null, max: null };
    const sorted = Array.from(this.values.subarray(0, n)).sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(n - 1, Math.floor(q * n))];
    return { count: this.count, p50: at(0.5), p99: at(0.99), max: sorted[n - 1] };
  }
}

const SAMPLES = 20_000;

export const perf = {
  latency: new Ring(SAMPLES),
  render: new Ring(SAMPLES),
  handler: new Ring(SAMPLES),
  updates: 0,
  frames: 0,
  summary() {
    return {
      updates: this.updates,
      frames: this.frames,
      latency_ms: this.latency.summary(),
      render_ms: this.render.summary(),
      handler_ms: this.handler.summary(),
    };
  },
  reset() {
    this.latency = new Ring(SAMPLES);
    this.render = new Ring(SAMPLES);
    this.handler = new Ring(SAMPLES);
    this.updates = 0;
    this.frames = 0;
  },
};
window.__shardlinePerf = perf;

const pending = new Map();
const arrivals = [];
let scheduled = false;

/** Run `write` in the next frame; a later write with the same key replaces it. */
export function schedule(key, write, arrivedAt) {
  pending.set(key, write);
  if (arrivedAt !== undefined) {
    arrivals.push(arrivedAt);
    perf.updates += 1;
    perf.handler.push(performance.now() - arrivedAt);
  }
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

function flush() {
  scheduled = false;
  const started = performance.now();
  const writes = [...pending.values()];
  pending.clear();
  for (const write of writes) {
    try {
      write();
    } catch (err) {
      console.warn("render failed", err); // one bad panel must not stop the others
    }
  }
  const done = performance.now();
  perf.frames += 1;
  perf.render.push(done - started);
  for (const arrivedAt of arrivals) perf.latency.push(done - arrivedAt);
  arrivals.length = 0;
}
