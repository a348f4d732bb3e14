// The agent's metrics: counters, gauges and sliding-window latency summaries, rendered in the
// Prometheus text exposition format (version 0.0.4) for GET /metrics. No client library: the
// format is a few lines of text.

/** A fixed-size ring of recent samples with percentiles over it. */
export class Window {
  private readonly buf: Float64Array;
  private n = 0;
  private i = 0;
  sum = 0;
  count = 0;

  constructor(readonly size = 1024) {
    this.buf = new Float64Array(size);
  }

  add(v: number): void {
    this.buf[this.i] = v;
    this.i = (this.i + 1) % this.size;
    this.n = Math.min(this.n + 1, this.size);
    this.sum += v;
    this.count++;
  }

  /** Percentile q in [0, 1] over the window (nearest rank); NaN when empty. */
  quantile(q: number): number {
    if (this.n === 0) return NaN;
    const sorted = Float64Array.from(this.buf.subarray(0, this.n)).sort();
    const k = Math.min(this.n - 1, Math.max(0, Math.ceil(q * this.n) - 1));
    return sorted[k]!;
  }
}

/** Events per second over the last `spanMs`. */
export class RateMeter {
  private readonly t: number[] = [];
  private readonly c: number[] = [];

  constructor(private readonly spanMs = 10_000) {}

  add(count: number, now = Date.now()): void {
    this.t.push(now);
    this.c.push(count);
    this.trim(now);
  }

  private trim(now: number): void {
    while (this.t.length > 1 && now - this.t[0]! > this.spanMs) {
      this.t.shift();
      this.c.shift();
    }
  }

  rate(now = Date.now()): number {
    this.trim(now);
    if (this.t.length === 0 || now - this.t[0]! > this.spanMs) return 0;
    // Counts after the first mark, over the time since it (at least one second for a stable start).
    const total = this.c.slice(1).reduce((a, b) => a + b, 0);
    const span = Math.max(1000, now - this.t[0]!);
    return this.t.length > 1 ? (total * 1000) / span : 0;
  }
}

export const QUANTILES = [0.5, 0.9, 0.99] as const;

type Labels = Readonly<Record<string, string>>;

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'summary';
  readonly samples: { suffix?: string; labels?: Labels; value: number }[];
}

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const fmt = (v: number): string => (Number.isNaN(v) ? 'NaN' : v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v));

/** Builds one exposition text; families appear in the order added. */
export class Exposition {
  private readonly families: Family[] = [];

  private family(name: string, help: string, type: Family['type']): Family {
    let f = this.families.find((x) => x.name === name);
    if (!f) {
      f = { name, help, type, samples: [] };
      this.families.push(f);
    }
    return f;
  }

  counter(name: string, help: string, value: number, labels?: Labels): this {
    this.family(name, help, 'counter').samples.push({ suffix: '_total', value, ...(labels ? { labels } : {}) });
    return this;
  }

  gauge(name: string, help: string, value: number, labels?: Labels): this {
    this.family(name, help, 'gauge').samples.push({ value, ...(labels ? { labels } : {}) });
    return this;
  }

  summary(name: string, help: string, w: Window, labels: Labels = {}): this {
    const f = this.family(name, help, 'summary');
    for (const q of QUANTILES) f.samples.push({ labels: { ...labels, quantile: String(q) }, value: w.quantile(q) });
    f.samples.push({ suffix: '_sum', labels, value: w.sum });
    f.samples.push({ suffix: '_count', labels, value: w.count });
    return this;
  }

  text(): string {
    const lines: string[] = [];
    for (const f of this.families) {
      lines.push(`# HELP ${f.name}${f.type === 'counter' ? '_total' : ''} ${f.help}`);
      lines.push(`# TYPE ${f.name}${f.type === 'counter' ? '_total' : ''} ${f.type}`);
      for (const s of f.samples) {
        const l = s.labels && Object.keys(s.labels).length
          ? `{${Object.entries(s.labels).map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`
          : '';
        lines.push(`${f.name}${s.suffix ?? ''}${l} ${fmt(s.value)}`);
      }
    }
    return lines.join('\n') + '\n';
  }
}
