/**
 * Checks the usage lines that open every source file: TypeScript usage must typecheck against the
 * file's own exports and the package's, and `griffin ...` command lines must name a real command
 * and real options. Run by `npm run lint:usage` (part of `npm run lint`, hence CI).
 *   npx tsx scripts/check_usage.ts            # exit 1 with "file:line: why" per broken line
 *
 * A file opens with a comment: what it is for, then its usage lines (indented by 3 spaces after
 * the `*`), then anything else. The usage block is the first run of indented lines. Free names
 * the usage may take for granted (a model, ids, a tokenizer ...) are declared in PRELUDE below.
 * A usage line `import {...} from './x'` that names a module beside the file is checked with the
 * rest; other imports (the package's name, the browser bundle) are skipped.
 */
import {spawnSync} from 'child_process';
import type {Command} from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import {buildProgram} from '../src/cli';

const ROOT = path.resolve(__dirname, '..');
const OUT = path.join(ROOT, 'node_modules', '.cache', 'griffin-usage');
const SOURCES = ['src', 'ops', 'layers', 'converters'];

/** Names a usage line may use without defining them. */
const PRELUDE = `
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {RecurrentGemmaForCausalLM} from '${rel('src/model')}';
import {CausalLMCore} from '${rel('src/core/model')}';
type Model_ = RecurrentGemmaForCausalLM;
import type {GemmaTokenizer as Tokenizer_} from '${rel('src/tokenizer')}';
import type {RecurrentGemmaConfig as Config_} from '${rel('src/config')}';
import type {SequenceInfo as Info_} from '${rel('ops/sequence')}';
import type {ResidualBlock as Block_, LayerState as LayerState_} from '${rel('layers/model_layers')}';
import type {GenerationState as State_} from '${rel('src/generation/state')}';
declare const model: Model_, other: Model_, tokenizer: Tokenizer_, tok: Tokenizer_, config: Config_;
declare const info: Info_, block: Block_, prevState: LayerState_ | null, state: State_;
declare const ids: tf.Tensor, x: tf.Tensor, logits: tf.Tensor, hidden: tf.Tensor, hidden2d: tf.Tensor;
declare const a: tf.Tensor, h0: tf.Tensor, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, weight: tf.Tensor;
declare const bias: tf.Tensor, labels: tf.Tensor, angles: tf.Tensor, inputIds: number[][];
declare const b: number, t: number, e: number, d: number, n: number, V: number, windowSize: number;
declare const bytes: Uint8Array, data: Float32Array, texts: string[], lengths: number[], order: number[];
declare const out: string, dir: string, backend: WebGPUBackend, signal: AbortSignal;
declare function bar(fraction: number): void;
declare function save(dir: string): Promise<void>;
`;

/** The local names an import's `{a, b as c}` binds. */
const bindings = (braces: string) => braces.split(',').map((part) => part.trim().replace(/^.*\s+as\s+/, ''));

/** Names PRELUDE binds: a file's own exports of the same names are not imported again. */
function preludeNames(): Set<string> {
  const names = new Set<string>();
  for (const m of PRELUDE.matchAll(/^import\s+(?:type\s+)?\{([^}]*)\}/gm)) for (const n of bindings(m[1])) names.add(n);
  for (const m of PRELUDE.matchAll(/^import\s+\*\s+as\s+(\w+)/gm)) names.add(m[1]);
  for (const m of PRELUDE.matchAll(/^declare\s+(?:const|function)\s+([^;(]*)/gm)) {
    for (const n of m[1].matchAll(/(?:^|,)\s*([A-Za-z_$][\w$]*)/g)) names.add(n[1]);
  }
  return names;
}

function rel(p: string): string {
  return path.relative(OUT, path.join(ROOT, p)).split(path.sep).join('/');
}

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of fs.readdirSync(path.join(ROOT, d), {withFileTypes: true})) {
      const p = path.join(d, f.name);
      if (f.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
    }
  };
  SOURCES.forEach(walk);
  return out.sort();
}

interface Usage {
  file: string;
  /** 1-based line in the file for each usage line. */
  lines: {line: number; text: string}[];
}

/** The first run of lines indented by three spaces after ` *` in the opening comment. */
function usageOf(file: string): Usage | string {
  const src = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  // Triple-slash directives (`/// <reference types=... />`) may come first: the comment follows them.
  let start = 0;
  while (start < src.length && src[start].startsWith('///')) start++;
  if (!src[start]?.startsWith('/**')) return 'does not open with a /** comment saying what it is for';
  const lines: Usage['lines'] = [];
  for (let i = start + 1; i < src.length && !src[i].includes('*/'); i++) {
    const m = /^ \* {3}(.*)$/.exec(src[i]);
    if (m != null) lines.push({line: i + 1, text: m[1]});
    else if (lines.length > 0) break;
  }
  if (lines.length === 0) return 'its opening comment has no usage line';
  return {file, lines};
}

/** The .ts file a relative module path names, or null. */
function moduleFile(fromFile: string, spec: string): string | null {
  const base = path.join(path.dirname(fromFile), spec);
  return ['.ts', '/index.ts'].map((ext) => base + ext).find((f) => fs.existsSync(path.join(ROOT, f))) ?? null;
}

/** Exported value and type names of a module, from its text (following `export * from './x'`). */
function exportsOf(file: string, seen = new Set<string>()): string[] {
  const s = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const names = new Set<string>();
  seen.add(file);
  for (const m of s.matchAll(/^export\s+\*\s+from\s+'(\.[^']*)'/gm)) {
    const target = moduleFile(file, m[1]);
    if (target != null && !seen.has(target)) for (const n of exportsOf(target, seen)) names.add(n);
  }
  for (const m of s.matchAll(
    /^export\s+(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(?:function\*?|class|const|let|interface|type|enum)\s+([A-Za-z_$][\w$]*)/gm,
  )) {
    names.add(m[1]);
  }
  for (const m of s.matchAll(/^export\s+(?:type\s+)?\{([^}]*)\}/gm)) {
    for (const part of m[1].split(',')) {
      const name = part
        .trim()
        .split(/\s+as\s+/)
        .pop()
        ?.replace(/^type\s+/, '')
        .trim();
      if (name) names.add(name);
    }
  }
  return [...names];
}

const isShell = (text: string) => /^(npx |griffin |node |tsx |npm |\$ )/.test(text);
const isImport = (text: string) => /^(import |require\()/.test(text);

/** `import ... from './x'` naming a module beside `file`, rewritten for the generated file; else null. */
function localImport(file: string, text: string): string | null {
  const m = /^import\s+(.+?)\s+from\s+'(\.{1,2}\/[^']*)';?\s*(?:\/\/.*)?$/.exec(text);
  const target = m != null ? moduleFile(file, m[2]) : null;
  return m != null && target != null ? `import ${m[1]} from '${rel(target.replace(/\.ts$/, ''))}';` : null;
}

/** `griffin CMD --opt ...`: CMD must be a command and each --opt one of its options. */
function checkCommand(program: Command, text: string): string | null {
  const words = text
    .replace(/#.*$/, '')
    .replace(/"[^"]*"/g, 'ARG')
    .trim()
    .split(/\s+/);
  const at = words.indexOf('griffin');
  if (at < 0) return null;
  const name = words[at + 1];
  const cmd = program.commands.find((c) => c.name() === name || c.aliases().includes(name));
  if (cmd == null) return `griffin ${name}: no such command`;
  const known = new Set(cmd.options.flatMap((o) => [o.long, o.short, o.negate ? o.long : null]).filter(Boolean));
  const bad = words.slice(at + 2).filter((w) => w.startsWith('--') && !known.has(w.split('=')[0]));
  return bad.length > 0 ? `griffin ${name}: unknown option ${bad[0]}` : null;
}

function main(): number {
  const problems: string[] = [];
  const program = buildProgram();
  fs.rmSync(OUT, {recursive: true, force: true});
  fs.mkdirSync(OUT, {recursive: true});
  const lineMap = new Map<string, {file: string; line: number}[]>();
  for (const file of sourceFiles()) {
    const u = usageOf(file);
    if (typeof u === 'string') {
      problems.push(`${file}:1: ${u}`);
      continue;
    }
    if (u.lines.some((l) => isShell(l.text))) {
      for (const l of u.lines) {
        const why = checkCommand(program, l.text);
        if (why != null) problems.push(`${file}:${l.line}: ${why}`);
      }
      continue;
    }
    const code = u.lines.filter((l) => !isImport(l.text));
    if (code.length === 0) continue;
    const bound = preludeNames();
    const imports = u.lines.map((l) => localImport(file, l.text)).filter((l): l is string => l != null);
    for (const l of imports) for (const n of bindings(/\{([^}]*)\}/.exec(l)?.[1] ?? '')) bound.add(n);
    const own = exportsOf(file).filter((n) => !bound.has(n));
    const modPath = rel(file.replace(/\.ts$/, ''));
    const head = [
      PRELUDE.trim(),
      own.length > 0 ? `import {${own.join(', ')}} from '${modPath}';` : '',
      ...imports,
      `export async function usage(): Promise<void> {`,
    ];
    const map: {file: string; line: number}[] = [];
    const text = head.join('\n').split('\n');
    text.forEach(() => map.push({file, line: u.lines[0].line}));
    for (const l of code) {
      text.push(`  ${l.text}`);
      map.push({file, line: l.line});
    }
    text.push('}');
    map.push({file, line: code[code.length - 1].line});
    const name = file.replace(/[\\/]/g, '__').replace(/\.ts$/, '.usage.ts');
    fs.writeFileSync(path.join(OUT, name), `${text.join('\n')}\n`);
    lineMap.set(name, map);
  }
  fs.writeFileSync(
    path.join(OUT, 'tsconfig.json'),
    JSON.stringify(
      {
        extends: rel('tsconfig.json'),
        compilerOptions: {noEmit: true, noUnusedLocals: false, rootDir: rel('.'), isolatedModules: false},
        include: ['*.usage.ts'],
      },
      null,
      2,
    ),
  );
  const tsc = spawnSync(
    process.execPath,
    [require.resolve('typescript/bin/tsc'), '-p', path.join(OUT, 'tsconfig.json')],
    {encoding: 'utf8', cwd: ROOT},
  );
  for (const line of `${tsc.stdout}${tsc.stderr}`.split('\n')) {
    const m = /([^/\\(]+\.usage\.ts)\((\d+),\d+\): error (TS\d+: .*)$/.exec(line);
    if (m == null) continue;
    const at = lineMap.get(m[1])?.[Number(m[2]) - 1];
    // Errors in the generated header mean an import that does not resolve: report them too.
    problems.push(at ? `${at.file}:${at.line}: usage does not compile: ${m[3]}` : `${m[1]}: ${m[3]}`);
  }
  for (const p of problems) console.error(p);
  console.error(problems.length === 0 ? 'usage lines: all compile' : `usage lines: ${problems.length} problem(s)`);
  return problems.length === 0 ? 0 : 1;
}

process.exitCode = main();
