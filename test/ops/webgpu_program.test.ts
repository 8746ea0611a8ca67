/**
 * The base of the package's WebGPU programs (ops/webgpu_program.ts): the shaderKey, dispatch and
 * layout it derives from a spec, its WGSL index split, and that it (and the kernel modules built
 * on it) load without tfjs-backend-webgpu, whose code registers the backend on import. No GPU.
 */
let mockBackendLoaded = false;
jest.mock('@tensorflow/tfjs-backend-webgpu', () => {
  mockBackendLoaded = true;
  return {};
});

import type {ProgramSpec} from '../../ops/webgpu_program';
import {flatDispatch, shaderKeyOf, splitIndex, WebGPUProgramBase, WORKGROUP_64} from '../../ops/webgpu_program';

class Probe extends WebGPUProgramBase {
  constructor(spec: ProgramSpec) {
    super(spec);
  }
  getUserCode(): string {
    return 'fn main(index : i32) {}';
  }
}

test('shaderKeyOf joins the name and the options that change the WGSL', () => {
  expect(shaderKeyOf('rgLruLastStep')).toBe('rgLruLastStep');
  expect(shaderKeyOf('rgLruScanSerial', [true])).toBe('rgLruScanSerial_true');
  expect(shaderKeyOf('griffinCausalConv1d', ['101'])).toBe('griffinCausalConv1d_101');
  expect(shaderKeyOf('k', ['sin', 3, false])).toBe('k_sin_3_false');
});

test('flatDispatch rounds up to whole workgroups along x, at least one', () => {
  expect(flatDispatch(0)).toEqual([1, 1, 1]);
  expect(flatDispatch(1)).toEqual([1, 1, 1]);
  expect(flatDispatch(64)).toEqual([1, 1, 1]);
  expect(flatDispatch(65)).toEqual([2, 1, 1]);
  expect(flatDispatch(2 * 600 * 64)).toEqual([1200, 1, 1]);
  expect(flatDispatch(1000, [256, 1, 1])).toEqual([4, 1, 1]);
  // A 2-d workgroup holds 64 invocations: 130 of them take 3 workgroups.
  expect(flatDispatch(130, [8, 8, 1])).toEqual([3, 1, 1]);
});

test('splitIndex emits the row / place split of a flat index', () => {
  const norm = (s: string) => s.replace(/\s+/g, ' ');
  expect(norm(splitIndex('index', 'bi', 'c', 'E'))).toBe('let bi = index / E; let c = index - bi * E;');
  expect(norm(splitIndex('row', 'bi', 'k', 'N'))).toBe('let bi = row / N; let k = row - bi * N;');
});

test('a flat program: every output dimension on x, 64-wide workgroups, uniforms only when asked', () => {
  const p = new Probe({
    name: 'rgLruChunkSummary',
    variant: [false],
    inputs: ['a', 'x'],
    outputShape: [2, 3, 5, 7],
    invocations: 3 * 5 * 7,
    uniforms: 'chunk : i32,',
  });
  expect(p.variableNames).toEqual(['a', 'x']);
  expect(p.outputShape).toEqual([2, 3, 5, 7]);
  expect(p.shaderKey).toBe('rgLruChunkSummary_false');
  expect(p.dispatchLayout).toEqual({x: [0, 1, 2, 3]});
  expect(p.dispatch).toEqual([2, 1, 1]);
  expect(p.workgroupSize).toEqual([64, 1, 1]);
  expect(p.uniforms).toBe('chunk : i32,');
  expect('size' in p).toBe(false);

  const q = new Probe({
    name: 'preciseTrig',
    variant: ['cos'],
    inputs: ['x'],
    outputShape: [10],
    invocations: 10,
    size: true,
  });
  expect(q.size).toBe(true);
  expect('uniforms' in q).toBe(false);
  // The backend rewrites dispatch (and shaderKey) in place: neither may be shared with the defaults.
  q.workgroupSize[0] = 1;
  q.dispatch[0] = 99;
  expect(WORKGROUP_64).toEqual([64, 1, 1]);
  expect(new Probe({name: 't', inputs: ['x'], outputShape: [10], invocations: 10}).dispatch).toEqual([1, 1, 1]);
});

test('workgroup counts given directly are used as they are', () => {
  const grid: [number, number, number] = [8, 1, 1];
  const p = new Probe({
    name: 'griffinRowArgmax',
    inputs: ['x'],
    outputShape: [8],
    workgroups: grid,
    workgroupSize: [256, 1, 1],
    uniforms: 'n : i32,',
  });
  expect(p.dispatch).toEqual([8, 1, 1]);
  expect(p.workgroupSize).toEqual([256, 1, 1]);
  expect(p.dispatchLayout).toEqual({x: [0]});
  p.dispatch[0] = 1;
  expect(grid).toEqual([8, 1, 1]);
});

test('the base and the kernel modules load without the backend package', () => {
  jest.isolateModules(() => {
    require('../../ops/webgpu_program');
    require('../../ops/rg_lru_scan/webgpu');
    require('../../ops/causal_conv1d/webgpu');
    require('../../ops/precise_trig/webgpu');
    require('../../ops/row_argmax/webgpu');
  });
  expect(mockBackendLoaded).toBe(false);
});
