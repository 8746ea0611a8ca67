/**
 * The base of this package's tfjs-backend-webgpu programs. The backend reads a program's inputs,
 * output shape, shaderKey, dispatch layout, workgroup counts and size, uniforms and WGSL off the
 * object it is given (its WebGPUProgram interface); here a program declares what it needs in one
 * spec and writes only its WGSL.
 *   class Twice extends WebGPUProgramBase {
 *     constructor(n: number) { super({name: 'twice', inputs: ['x'], outputShape: [n], invocations: n, size: true}); }
 *     getUserCode() { return 'fn main(i : i32) { if (i < uniforms.size) { result[i] = 2.0 * x[i]; } }'; }
 *   }
 *   const y = backend.runWebGPUProgram(new Twice(n), [x], 'float32');
 *
 * Shape letters: n invocations of a flat dispatch (one WGSL `main(index)` call each, index in
 * [0, n)); [gx, gy, gz] workgroup counts of a dispatch given directly; [wx, wy, wz] a workgroup.
 *
 * The backend prepends the declarations (bindings named after the inputs, `result`, the uniforms
 * struct with `<input>Shape` and `outShape`) and appends the input ranks, dtypes and names and the
 * workgroup size to the shaderKey; the spec's name and variant are what tells apart WGSL built
 * from different templates or different options of one template.
 *
 * Only types come from the backend package (`import type`): importing its code registers the
 * backend, which in Node must wait until navigator.gpu exists.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';

export type Vec3 = [number, number, number];

/** The workgroup most of these kernels use: 64 invocations along x. */
export const WORKGROUP_64: Vec3 = [64, 1, 1];

interface CommonSpec {
  /** First part of the shaderKey, one per WGSL template (tests and WEBGPU_PRINT_SHADER match on it). */
  name: string;
  /** Every option the WGSL text depends on, joined onto the name with '_'. */
  variant?: ReadonlyArray<string | number | boolean>;
  /** The input bindings, in the order runWebGPUProgram gets the tensors. */
  inputs: readonly string[];
  outputShape: readonly number[];
  /** [64, 1, 1] when absent. */
  workgroupSize?: Vec3;
  /** The program's own uniform fields (WGSL `name : type,` each), filled from runWebGPUProgram's 4th argument. */
  uniforms?: string;
  /** Adds uniforms.size: the output's element count. */
  size?: boolean;
}

/**
 * Either a flat dispatch of n invocations (whole workgroups, so `main` checks its bound) or the
 * workgroup counts themselves (say one workgroup per row).
 */
export type ProgramSpec = CommonSpec &
  ({invocations: number; workgroups?: never} | {workgroups: Vec3; invocations?: never});

/** The shaderKey prefix for a template name and its options: 'rgLruScanSerial_true'. */
export function shaderKeyOf(name: string, variant: ReadonlyArray<string | number | boolean> = []): string {
  return [name, ...variant].join('_');
}

/**
 * Workgroup counts for n invocations, all along x (at least one). The backend folds an x count
 * above the device's per-dimension limit into y and z, and its flat getGlobalIndex() follows, so
 * a flat count is always safe.
 */
export function flatDispatch(n: number, workgroupSize: Vec3 = WORKGROUP_64): Vec3 {
  const perGroup = workgroupSize[0] * workgroupSize[1] * workgroupSize[2];
  return [Math.max(1, Math.ceil(n / perGroup)), 1, 1];
}

/**
 * WGSL that splits a flat index over an inner extent: `outer` counts whole rows of `extent`,
 * `inner` is the place within the row.
 *   splitIndex('index', 'bi', 'c', 'E')   // let bi = index / E; let c = index - bi * E;
 */
export function splitIndex(flat: string, outer: string, inner: string, extent: string): string {
  return `let ${outer} = ${flat} / ${extent};
        let ${inner} = ${flat} - ${outer} * ${extent};`;
}

/**
 * A program for runWebGPUProgram built from a ProgramSpec; subclasses write getUserCode (a WGSL
 * `fn main(index : i32)` for a flat dispatch). Every output dimension is on x of the dispatch
 * layout, so `index` is the output's flat index. One instance serves one run: the backend
 * rewrites shaderKey and dispatch in place.
 */
export abstract class WebGPUProgramBase implements WebGPUProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: Vec3;
  workgroupSize: Vec3;
  uniforms?: string;
  size?: boolean;

  constructor(spec: ProgramSpec) {
    this.variableNames = [...spec.inputs];
    this.outputShape = [...spec.outputShape];
    this.shaderKey = shaderKeyOf(spec.name, spec.variant);
    this.dispatchLayout = {x: this.outputShape.map((_, i) => i)};
    this.workgroupSize = [...(spec.workgroupSize ?? WORKGROUP_64)];
    this.dispatch = spec.workgroups != null ? [...spec.workgroups] : flatDispatch(spec.invocations, this.workgroupSize);
    if (spec.uniforms) this.uniforms = spec.uniforms;
    if (spec.size) this.size = true;
  }

  abstract getUserCode(): string;
}
