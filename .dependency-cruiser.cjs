/**
 * The project's dependency rules, checked in CI (`npm run lint:deps`, part of `npm run lint`):
 * no import cycle at all (type-only imports count), and imports point one way only, from a
 * higher tier to a lower one:
 *
 *   base        src/config.ts, src/util/              plain data, validation, rng, progress
 *   ops         ops/, src/tf.ts                        tensor ops, their kernels, one registration per backend
 *   backends    src/backend.ts, src/webgpu_node.ts, src/browser/backend.ts, src/browser/webgpu_node.ts
 *   layers      layers/                                tfjs layers named after the checkpoint
 *   core        src/core/                              the graph and forward (the one layer loop)
 *   io          converters/, src/tokenizer*, src/data/ checkpoints, adapters, tokenizer, corpus
 *   engines     src/engines/                           fused WebGPU engines (typed view of the model)
 *   generation  src/generation/                        prefill, decode, sampling, generate
 *   model       src/model.ts                           the public class: core + loading, saving, generation
 *   training    src/training/                          data, optimizer, Trainer, finetune
 *   api         src/index.ts, src/browser/             the package's entry points
 *   apps        src/cli.ts, src/cli/, src/bench/, src/pretrain/, src/serve/   the command, the suite it runs, the server
 *   scripts     bench/, examples/                      benchmark scripts and examples
 *
 * A module may import from its own tier and any tier below it.
 */
const TIERS = [
  ['base', ['^src/config\\.ts$', '^src/util/']],
  ['ops', ['^ops/', '^src/tf\\.ts$']],
  ['backends', ['^src/backend\\.ts$', '^src/webgpu_node\\.ts$', '^src/browser/backend\\.ts$', '^src/browser/webgpu_node\\.ts$']],
  ['layers', ['^layers/']],
  ['core', ['^src/core/']],
  ['io', ['^converters/', '^src/tokenizer', '^src/data/']],
  ['engines', ['^src/engines/']],
  ['generation', ['^src/generation/']],
  ['model', ['^src/model\\.ts$']],
  ['training', ['^src/training/']],
  ['api', ['^src/index\\.ts$', '^src/browser/']],
  ['apps', ['^src/cli\\.ts$', '^src/cli/', '^src/bench/', '^src/pretrain/', '^src/serve/']],
  ['scripts', ['^bench/', '^examples/']],
];

const upward = [];
for (let i = 0; i < TIERS.length - 1; i++) {
  const higher = TIERS.slice(i + 1).flatMap(([, paths]) => paths);
  // A more specific path of a lower tier inside a higher tier's folder (src/browser/backend.ts) stays allowed.
  const sameOrLower = TIERS.slice(0, i + 1).flatMap(([, paths]) => paths);
  upward.push({
    name: `no-upward-from-${TIERS[i][0]}`,
    comment: `${TIERS[i][0]} may import only from ${TIERS.slice(0, i + 1).map(([n]) => n).join(', ')}`,
    severity: 'error',
    from: {path: TIERS[i][1]},
    to: {path: higher, pathNot: sameOrLower},
  });
}

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import cycle, type-only imports included',
      severity: 'error',
      from: {},
      to: {circular: true},
    },
    {
      name: 'every-module-in-a-tier',
      comment: 'each source file belongs to a tier (see the table above): add new folders to it',
      severity: 'error',
      from: {path: '^(src|ops|layers|converters|bench|examples)/', pathNot: TIERS.flatMap(([, p]) => p)},
      to: {},
    },
    ...upward,
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: {fileName: 'tsconfig.json'},
    doNotFollow: {path: 'node_modules'},
    exclude: {path: ['^dist/', '^node_modules/', '\\.d\\.ts$']},
  },
};
