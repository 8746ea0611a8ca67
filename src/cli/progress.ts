/**
 * A progress bar on stderr for long work (loading, training); silent when stderr is not a TTY
 * except for the final line.
 *   const bar = progressBar('loading'); bar.update(3, 10, 'loss 2.1'); bar.done();
 *   const bytes = progressBar('converting', process.stderr, {unit: 'bytes'});   // 1.2/4.0 GB
 */
export interface ProgressBar {
  update(done: number, total: number, note?: string): void;
  done(note?: string): void;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60),
    r = Math.round(s % 60);
  return m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

/** done/total as sizes (kB, MB, GB in the unit of the total). */
function fmtBytes(done: number, total: number): string {
  const [unit, div] = total >= 1e9 ? ['GB', 1e9] : total >= 1e6 ? ['MB', 1e6] : ['kB', 1e3];
  return `${(done / div).toFixed(1)}/${(total / div).toFixed(1)} ${unit}`;
}

export function progressBar(
  label: string,
  stream: NodeJS.WriteStream = process.stderr,
  opts: {unit?: 'count' | 'bytes'} = {},
): ProgressBar {
  const start = Date.now();
  let last = 0,
    lastLine = '';
  const render = (done: number, total: number, note?: string) => {
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const width = 24,
      filled = Math.round(frac * width);
    const elapsed = (Date.now() - start) / 1000;
    const left = frac > 0 ? (elapsed * (1 - frac)) / frac : Infinity;
    return (
      `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${opts.unit === 'bytes' ? fmtBytes(done, total) : `${done}/${total}`}` +
      `${note ? ` ${note}` : ''} ${fmtTime(elapsed)} elapsed, ${fmtTime(left)} left`
    );
  };
  return {
    update(done, total, note) {
      lastLine = render(done, total, note);
      const now = Date.now();
      if (!stream.isTTY || (now - last < 100 && done < total)) return;
      last = now;
      stream.write(`\r${lastLine}\x1b[K`);
    },
    done(note) {
      if (stream.isTTY) stream.write(`\r${lastLine}${note ? ` ${note}` : ''}\x1b[K\n`);
      else if (lastLine) stream.write(`${lastLine}${note ? ` ${note}` : ''}\n`);
    },
  };
}
