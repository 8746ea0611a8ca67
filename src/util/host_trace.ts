/// <reference types="@webgpu/types" />
/**
 * Host-side timestamps of a prefill and a first token (GRIFFIN_TRACE=1, or hostTraceConfig.enabled),
 * and counts of the GPU calls made meanwhile on an instrumented device: where the host spends the
 * time between `generate` / `stream` being called and the first id arriving.
 *   const trace = traceBegin('stream');      // null unless tracing is on
 *   tracePhase('prefill.encode');            // the time since the last mark was spent on this
 *   traceEnd(trace);                         // one line to stderr: each phase's ms, the call counts
 *   countGpuCalls(backend.device);           // submits, writeBuffers, mapAsyncs, ... counted from now on (gpuCalls)
 *
 * A phase mark costs one performance.now() when a trace is open and nothing otherwise. The
 * counters wrap the device's queue and create methods and GPUBuffer.mapAsync (once per device);
 * `countTfReads` wraps a tfjs backend's read / readSync (dataSync, data()).
 */

/** A closed trace: ms per phase (repeated names summed), in order; the total; the GPU calls meanwhile. */
export interface HostTraceSummary {
  label: string;
  phases: Record<string, number>;
  /** How many times each phase was marked (a whole run: once per step for the step's phases). */
  marks: Record<string, number>;
  totalMs: number;
  calls: GpuCallCounts;
}

/**
 * enabled: null = env GRIFFIN_TRACE (1/true/on, or run: on; unset or anything else: off). wholeRun:
 * null = GRIFFIN_TRACE=run: generate / stream keep their trace open to the last token (each
 * step's phases summed: wait.ids is the time the host waited on the GPU) instead of closing it at
 * the first. onTrace: gets each closed trace (a benchmark collects them) instead of the line on stderr.
 */
export const hostTraceConfig: {
  enabled: boolean | null;
  wholeRun: boolean | null;
  onTrace: ((t: HostTraceSummary) => void) | null;
} = {
  enabled: null,
  wholeRun: null,
  onTrace: null,
};

function traceEnv(): string {
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_TRACE : undefined;
  return v?.toLowerCase() ?? '';
}

export function hostTraceEnabled(): boolean {
  if (hostTraceConfig.enabled != null) return hostTraceConfig.enabled;
  return ['1', 'true', 'on', 'run'].includes(traceEnv());
}

/** Whether a generation's trace runs to its last token (hostTraceConfig.wholeRun, else GRIFFIN_TRACE=run). */
export function hostTraceWholeRun(): boolean {
  if (hostTraceConfig.wholeRun != null) return hostTraceConfig.wholeRun;
  return traceEnv() === 'run';
}

/** Running totals of the calls made on instrumented devices (and backends, for tfReads). */
export interface GpuCallCounts {
  submits: number;
  writeBuffers: number;
  mapAsyncs: number;
  commandEncoders: number;
  bindGroups: number;
  pipelines: number;
  shaderModules: number;
  buffers: number;
  /** tfjs backend read (data(), array()) and readSync (dataSync, arraySync). */
  tfReads: number;
}

export const gpuCalls: GpuCallCounts = {
  submits: 0,
  writeBuffers: 0,
  mapAsyncs: 0,
  commandEncoders: 0,
  bindGroups: 0,
  pipelines: 0,
  shaderModules: 0,
  buffers: 0,
  tfReads: 0,
};

/** The counts since `since` (a copy of gpuCalls taken earlier). */
export function gpuCallsSince(since: GpuCallCounts): GpuCallCounts {
  const out = {...gpuCalls};
  for (const k of Object.keys(out) as (keyof GpuCallCounts)[]) out[k] -= since[k];
  return out;
}

const counted = new WeakSet<object>();

/** Replaces obj[name] by a wrapper that counts into gpuCalls[key] first. */
function wrap(obj: object, name: string, key: keyof GpuCallCounts): void {
  const o = obj as Record<string, unknown>;
  const f = o[name];
  if (typeof f !== 'function') return;
  o[name] = function (this: unknown, ...args: unknown[]) {
    gpuCalls[key]++;
    return (f as (...a: unknown[]) => unknown).apply(this, args);
  };
}

/** Counts this device's GPU calls into gpuCalls from now on (idempotent). */
export function countGpuCalls(device: GPUDevice): void {
  if (counted.has(device)) return;
  counted.add(device);
  wrap(device.queue, 'submit', 'submits');
  wrap(device.queue, 'writeBuffer', 'writeBuffers');
  wrap(device, 'createCommandEncoder', 'commandEncoders');
  wrap(device, 'createBindGroup', 'bindGroups');
  wrap(device, 'createComputePipeline', 'pipelines');
  wrap(device, 'createComputePipelineAsync', 'pipelines');
  wrap(device, 'createShaderModule', 'shaderModules');
  wrap(device, 'createBuffer', 'buffers');
  // mapAsync lives on the buffers' prototype (shared by every device of the runtime).
  const probe = device.createBuffer({size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
  const proto = Object.getPrototypeOf(probe) as object;
  probe.destroy();
  if (!counted.has(proto)) {
    counted.add(proto);
    wrap(proto, 'mapAsync', 'mapAsyncs');
  }
}

/** Counts a tfjs backend's reads (read: data() / array(); readSync: dataSync() / arraySync()). */
export function countTfReads(backend: object): void {
  if (counted.has(backend)) return;
  counted.add(backend);
  wrap(backend, 'read', 'tfReads');
  wrap(backend, 'readSync', 'tfReads');
}

/** An open trace: phases in order with their ms, and the counts when it began. */
export interface HostTrace {
  readonly label: string;
  readonly t0: number;
  last: number;
  readonly phases: [string, number][];
  readonly calls: GpuCallCounts;
}

let current: HostTrace | null = null;

/** Opens a trace (replacing an open one) when tracing is on; null otherwise. */
export function traceBegin(label: string): HostTrace | null {
  if (!hostTraceEnabled()) return null;
  const now = performance.now();
  current = {label, t0: now, last: now, phases: [], calls: {...gpuCalls}};
  return current;
}

/** Ends the phase `name` of the open trace (if any): the time since the previous mark. */
export function tracePhase(name: string): void {
  if (current == null) return;
  const now = performance.now();
  current.phases.push([name, now - current.last]);
  current.last = now;
}

/** The trace's phases summed by name, its total and the GPU calls since it began. */
export function summarizeTrace(trace: HostTrace): HostTraceSummary {
  const phases: Record<string, number> = {};
  const marks: Record<string, number> = {};
  for (const [name, ms] of trace.phases) {
    phases[name] = (phases[name] ?? 0) + ms;
    marks[name] = (marks[name] ?? 0) + 1;
  }
  return {label: trace.label, phases, marks, totalMs: trace.last - trace.t0, calls: gpuCallsSince(trace.calls)};
}

/** A summary as one line: each phase's ms, the total, the GPU calls meanwhile. */
export function formatTrace(t: HostTraceSummary): string {
  const parts = Object.entries(t.phases).map(([name, ms]) => `${name} ${ms.toFixed(2)}`);
  const counts = (Object.keys(t.calls) as (keyof GpuCallCounts)[]).map((k) => `${k} ${t.calls[k]}`).join(', ');
  return `trace ${t.label}: ${parts.join(' | ')} | total ${t.totalMs.toFixed(2)} ms; ${counts}`;
}

/** Closes the trace (if it is still the open one): to hostTraceConfig.onTrace, else one line on stderr. */
export function traceEnd(trace: HostTrace | null): void {
  if (trace == null) return;
  if (current === trace) current = null;
  const summary = summarizeTrace(trace);
  if (hostTraceConfig.onTrace != null) {
    hostTraceConfig.onTrace(summary);
    return;
  }
  const line = formatTrace(summary);
  if (typeof process !== 'undefined' && process.stderr?.write != null) process.stderr.write(`${line}\n`);
  else console.error(line);
}
