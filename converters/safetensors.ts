/**
 * Reader and writer of Hugging Face safetensors checkpoints, single-file or sharded, so weights
 * move between transformers and this package without Python or a whole shard in memory.
 *   for await (const {name, shape, data} of iterateCheckpoint('ckpt/')) console.log(name, shape, data.length);
 *   writeCheckpoint('out/', [{name: 'w', shape: [2, 2], data: new Float32Array(4)}]);
 *
 * Headers are checked in full when read, so a malformed or truncated file fails before any
 * tensor is used; tensor bytes are then read one tensor at a time at their offsets.
 */
import * as fs from 'fs';
import * as path from 'path';
import {bf16ToF32, f16ToF32, f32ToBf16, widenBf16InPlace, widenF16InPlace} from '../ops/compact/half';

/** Every failure a user can cause; the message is one line naming the file (and tensor). */
export class CheckpointError extends Error {
  constructor(message: string) {
    // One line, so it can be logged and matched as-is; tensor names come JSON-quoted already.
    super(message.replace(/\s*[\r\n]+\s*/g, ' '));
    this.name = 'CheckpointError';
  }
}

/** begin/end are absolute byte offsets in `file`, not relative to the data buffer. */
export interface TensorMeta {
  name: string;
  dtype: string;
  shape: number[];
  file: string;
  begin: number;
  end: number;
}

/**
 * A tensor to write: float32 or int32 values, or 16-bit float bit patterns (a Uint16Array with
 * dtype 'BF16' or 'F16', e.g. from f32ToBf16) as the released checkpoints hold them.
 */
export interface WriteTensor {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array | Uint16Array;
  dtype?: 'BF16' | 'F16';
}

export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

// Every dtype the format defines, so a checkpoint holding e.g. a U8 buffer we never read can
// still be listed; only READABLE ones can be converted. A Map, as a plain object would answer
// for 'constructor' and friends.
const DTYPE_BYTES = new Map<string, number>([
  ['BOOL', 1],
  ['U8', 1],
  ['I8', 1],
  ['F8_E5M2', 1],
  ['F8_E4M3', 1],
  ['I16', 2],
  ['U16', 2],
  ['F16', 2],
  ['BF16', 2],
  ['I32', 4],
  ['U32', 4],
  ['F32', 4],
  ['I64', 8],
  ['U64', 8],
  ['F64', 8],
]);
const READABLE = ['F32', 'F16', 'BF16', 'F64', 'I32', 'I64'];

// The reference implementation's own limit; anything larger is garbage, not a header.
const MAX_HEADER_BYTES = 100_000_000;
// fs.readSync/writeSync refuse lengths of 2 GiB and more.
const IO_CHUNK = 1 << 30;
// HF's default max_shard_size ("5GB").
const DEFAULT_MAX_SHARD_BYTES = 5e9;
const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

// The format is little-endian and tensors are viewed in place, so a big-endian host would
// silently byte-swap every value.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function q(name: string): string {
  return JSON.stringify(name);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isFile(p: string): boolean {
  return fs.statSync(p, {throwIfNoEntry: false})?.isFile() ?? false;
}

function requireLittleEndian(file: string): void {
  if (!LITTLE_ENDIAN) throw new CheckpointError(`${file}: safetensors I/O needs a little-endian host`);
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function isShape(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function openRead(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (e) {
    throw new CheckpointError(`${file}: cannot open: ${errMsg(e)}`);
  }
}

/** Reads exactly len bytes at pos into a fresh (so aligned) buffer, or fails naming the file. */
function readExact(fd: number, file: string, pos: number, len: number): Uint8Array {
  return readExactInto(fd, file, pos, new Uint8Array(len));
}

/** Fills `out` with the bytes at pos, or fails naming the file. */
function readExactInto(fd: number, file: string, pos: number, out: Uint8Array): Uint8Array {
  const len = out.length;
  let done = 0;
  while (done < len) {
    let n: number;
    try {
      n = fs.readSync(fd, out, done, Math.min(IO_CHUNK, len - done), pos + done);
    } catch (e) {
      throw new CheckpointError(`${file}: read failed at byte ${pos + done}: ${errMsg(e)}`);
    }
    if (n === 0)
      throw new CheckpointError(
        `${file}: file ends at byte ${pos + done}, expected ${len - done} more bytes (truncated?)`,
      );
    done += n;
  }
  return out;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    done += fs.writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done));
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/**
 * Parses and validates the header of one safetensors file. Tensors come in file order (by
 * offset), which is the order that reads the file front to back.
 */
export function readHeader(file: string): {tensors: Map<string, TensorMeta>; metadata: Record<string, string>} {
  const fd = openRead(file);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new CheckpointError(`${file}: not a regular file`);
    const size = stat.size;
    if (size < 8)
      throw new CheckpointError(
        `${file}: only ${size} bytes, too short for a safetensors file (the header length alone is 8)`,
      );
    const headerLen = Buffer.from(readExact(fd, file, 0, 8)).readBigUInt64LE(0);
    if (headerLen > BigInt(MAX_HEADER_BYTES)) {
      throw new CheckpointError(
        `${file}: header length ${headerLen} is absurd (limit ${MAX_HEADER_BYTES} bytes); not a safetensors file?`,
      );
    }
    const n = Number(headerLen);
    if (8 + n > size)
      throw new CheckpointError(`${file}: header length ${n} runs past the end of the file (${size} bytes)`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', {fatal: true}).decode(readExact(fd, file, 8, n));
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      throw new CheckpointError(`${file}: header is not valid UTF-8`);
    }
    return parseHeader(file, text, 8 + n, size - 8 - n);
  } finally {
    fs.closeSync(fd);
  }
}

function parseHeader(file: string, text: string, dataStart: number, dataBytes: number) {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${file}: header is not valid JSON: ${errMsg(e)}`);
  }
  if (!isPlainObject(json)) throw new CheckpointError(`${file}: header is not a JSON object`);
  const list: TensorMeta[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(file, entry);
      continue;
    }
    const where = `${file}: tensor ${q(name)}`;
    if (!isPlainObject(entry)) throw new CheckpointError(`${where}: header entry is not an object`);
    const {dtype, shape, data_offsets: offsets} = entry;
    const bpe = typeof dtype === 'string' ? DTYPE_BYTES.get(dtype) : undefined;
    if (typeof dtype !== 'string' || bpe === undefined)
      throw new CheckpointError(`${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!isShape(shape))
      throw new CheckpointError(`${where}: shape ${JSON.stringify(shape)} is not an array of non-negative integers`);
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw new CheckpointError(
        `${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataBytes) {
      throw new CheckpointError(
        `${where}: data_offsets end ${end} is past the end of the data (${dataBytes} bytes; file truncated?)`,
      );
    }
    // Once end <= dataBytes, a shape whose product overflows can never match, so no overflow check.
    if (numel(shape) * bpe !== end - begin) {
      throw new CheckpointError(
        `${where}: ${dtype} ${JSON.stringify(shape)} needs ${numel(shape) * bpe} bytes but data_offsets span ${end - begin}`,
      );
    }
    list.push({name, dtype, shape: [...shape], file, begin: dataStart + begin, end: dataStart + end});
  }
  list.sort((a, b) => a.begin - b.begin || a.end - b.end);
  // The reference implementation lays tensors end to end from byte 0: an overlap would alias two
  // tensors' bytes, a gap hide bytes no tensor accounts for.
  let at = dataStart;
  for (const m of list) {
    if (m.begin !== at) {
      const prev = list[list.indexOf(m) - 1];
      throw new CheckpointError(
        m.begin < at
          ? `${file}: tensor ${q(m.name)}: data_offsets [${m.begin - dataStart}, ${m.end - dataStart}] overlap those of ${q(prev.name)} (which end at ${at - dataStart})`
          : `${file}: tensor ${q(m.name)}: data_offsets begin at ${m.begin - dataStart}, leaving bytes ${at - dataStart}..${m.begin - dataStart} unaccounted for (a gap)`,
      );
    }
    at = m.end;
  }
  return {tensors: new Map(list.map((m) => [m.name, m])), metadata};
}

function parseMetadata(file: string, v: unknown): Record<string, string> {
  if (!isPlainObject(v)) throw new CheckpointError(`${file}: __metadata__ is not a JSON object`);
  const out: Record<string, string> = {};
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== 'string') throw new CheckpointError(`${file}: __metadata__ ${q(k)} is not a string`);
    Object.defineProperty(out, k, {value: s, enumerable: true, writable: true, configurable: true});
  }
  return out;
}

/**
 * The tensors of the checkpoint in `dir`, in file order: `model.safetensors` if present (as
 * transformers prefers it too), else the shards named by `model.safetensors.index.json`.
 * With an index, only the tensors it lists are returned.
 */
export function listCheckpoint(dir: string): Map<string, TensorMeta> {
  const single = path.join(dir, SINGLE_FILE_NAME);
  if (isFile(single)) return readHeader(single).tensors;
  const indexFile = path.join(dir, INDEX_FILE_NAME);
  if (!isFile(indexFile))
    throw new CheckpointError(`${dir}: no checkpoint here (neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME})`);

  const byShard = new Map<string, Set<string>>();
  for (const [name, shard] of Object.entries(readIndex(indexFile))) {
    if (!byShard.has(shard)) byShard.set(shard, new Set());
    byShard.get(shard)!.add(name);
  }
  const out = new Map<string, TensorMeta>();
  for (const shard of [...byShard.keys()].sort()) {
    const names = byShard.get(shard)!;
    const shardFile = path.join(dir, shard);
    if (!isFile(shardFile)) {
      throw new CheckpointError(
        `${indexFile}: shard ${shardFile} (holding ${q(names.values().next().value!)}) does not exist`,
      );
    }
    const {tensors} = readHeader(shardFile);
    for (const name of names) {
      if (!tensors.has(name))
        throw new CheckpointError(
          `${shardFile}: tensor ${q(name)} is listed in ${indexFile} but absent from this shard`,
        );
    }
    for (const [name, meta] of tensors) if (names.has(name)) out.set(name, meta);
  }
  return out;
}

function readIndex(indexFile: string): Record<string, string> {
  const size = fs.statSync(indexFile).size;
  if (size > MAX_HEADER_BYTES) throw new CheckpointError(`${indexFile}: ${size} bytes is absurd for a shard index`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${indexFile}: not a valid JSON shard index: ${errMsg(e)}`);
  }
  const weightMap = isPlainObject(json) ? json.weight_map : undefined;
  if (!isPlainObject(weightMap)) throw new CheckpointError(`${indexFile}: has no "weight_map" object`);
  for (const [name, shard] of Object.entries(weightMap)) {
    // Shards live next to the index; a path elsewhere is a broken (or hostile) index.
    if (typeof shard !== 'string' || shard === '' || shard === '.' || shard === '..' || /[\\/]/.test(shard)) {
      throw new CheckpointError(
        `${indexFile}: tensor ${q(name)} maps to ${JSON.stringify(shard)}, not a shard file name in this directory`,
      );
    }
  }
  return weightMap as Record<string, string>;
}

/** Reads one tensor's bytes and converts them: floats to float32, integers to int32. */
export function readTensor(meta: TensorMeta): Float32Array | Int32Array {
  const fd = openRead(meta.file);
  try {
    return readTensorAt(fd, meta);
  } finally {
    fs.closeSync(fd);
  }
}

function readTensorAt(fd: number, meta: TensorMeta): Float32Array | Int32Array {
  const where = `${meta.file}: tensor ${q(meta.name)}`;
  if (!READABLE.includes(meta.dtype))
    throw new CheckpointError(`${where}: dtype ${meta.dtype} cannot be read (supported: ${READABLE.join(', ')})`);
  requireLittleEndian(meta.file);
  const bpe = DTYPE_BYTES.get(meta.dtype)!;
  const n = numel(meta.shape);
  if (n * bpe !== meta.end - meta.begin)
    throw new CheckpointError(
      `${where}: shape ${JSON.stringify(meta.shape)} does not match its ${meta.end - meta.begin} bytes`,
    );
  if (meta.dtype === 'BF16' || meta.dtype === 'F16') {
    // Read the 16-bit values into the upper half of the float32 result and widen them in place,
    // front to back: the one allocation is the result (a 1.3 GB bf16 embedding costs 2.6 GB,
    // not 2.6 GB plus a 1.3 GB read buffer waiting for the garbage collector).
    const out = new Float32Array(n);
    readExactInto(fd, meta.file, meta.begin, new Uint8Array(out.buffer, 2 * n, 2 * n));
    return meta.dtype === 'BF16' ? widenBf16InPlace(out) : widenF16InPlace(out);
  }
  const buf = readExact(fd, meta.file, meta.begin, meta.end - meta.begin).buffer;
  switch (meta.dtype) {
    case 'F32':
      return new Float32Array(buf, 0, n);
    case 'F64':
      return new Float32Array(new Float64Array(buf, 0, n));
    case 'I32':
      return new Int32Array(buf, 0, n);
    default: {
      // I64
      const words = new Int32Array(buf, 0, 2 * n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = words[2 * i],
          hi = words[2 * i + 1];
        // Fits int32 exactly when the high word is the sign extension of the low one.
        if (hi !== lo >> 31) {
          const v = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
          throw new CheckpointError(`${where}: I64 value ${v} at index ${i} does not fit in int32`);
        }
        out[i] = lo;
      }
      return out;
    }
  }
}

/**
 * Streams the checkpoint in `dir` shard by shard, tensor by tensor in file order, holding one
 * tensor at a time. `onlyNames` restricts the tensors read; names not in the checkpoint are
 * simply not yielded.
 */
export async function* iterateCheckpoint(
  dir: string,
  onlyNames?: Set<string>,
): AsyncGenerator<{name: string; shape: number[]; data: Float32Array | Int32Array}> {
  const byFile = new Map<string, TensorMeta[]>();
  for (const meta of listCheckpoint(dir).values()) {
    if (onlyNames && !onlyNames.has(meta.name)) continue;
    if (!byFile.has(meta.file)) byFile.set(meta.file, []);
    byFile.get(meta.file)!.push(meta);
  }
  for (const [file, metas] of byFile) {
    const fd = openRead(file);
    try {
      for (const meta of metas) yield {name: meta.name, shape: [...meta.shape], data: readTensorAt(fd, meta)};
    } finally {
      fs.closeSync(fd);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

type WriteDtype = 'F32' | 'I32' | 'BF16' | 'F16';
interface Planned {
  name: string;
  shape: number[];
  dtype: WriteDtype;
  bytes: number;
}

function writeDtype(t: WriteTensor): WriteDtype | undefined {
  if (t.data instanceof Float32Array) return t.dtype == null ? 'F32' : undefined;
  if (t.data instanceof Int32Array) return t.dtype == null ? 'I32' : undefined;
  if (t.data instanceof Uint16Array) return t.dtype === 'BF16' || t.dtype === 'F16' ? t.dtype : undefined;
  return undefined;
}

function planTensor(t: WriteTensor, where: string): Planned {
  if (typeof t?.name !== 'string' || t.name === '' || t.name === '__metadata__') {
    throw new CheckpointError(`${where}: invalid tensor name ${JSON.stringify(t?.name)}`);
  }
  const at = `${where}: tensor ${q(t.name)}`;
  if (!isShape(t.shape))
    throw new CheckpointError(`${at}: shape ${JSON.stringify(t.shape)} is not an array of non-negative integers`);
  const dtype = writeDtype(t);
  if (dtype === undefined) {
    throw new CheckpointError(
      `${at}: data must be a Float32Array, an Int32Array, or a Uint16Array with dtype 'BF16' or 'F16'`,
    );
  }
  if (t.data.length !== numel(t.shape)) {
    throw new CheckpointError(
      `${at}: shape ${JSON.stringify(t.shape)} has ${numel(t.shape)} elements but data has ${t.data.length}`,
    );
  }
  return {name: t.name, shape: [...t.shape], dtype, bytes: t.data.byteLength};
}

function planAll(tensors: Iterable<WriteTensor>, where: string): Planned[] {
  const plan: Planned[] = [];
  const seen = new Set<string>();
  for (const t of tensors) {
    const p = planTensor(t, where);
    if (seen.has(p.name)) throw new CheckpointError(`${where}: tensor ${q(p.name)} appears twice`);
    seen.add(p.name);
    plan.push(p);
  }
  return plan;
}

function checkMetadata(where: string, metadata: Record<string, string> | undefined): void {
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') throw new CheckpointError(`${where}: metadata ${q(k)} is not a string`);
  }
}

/** 8-byte length, then compact JSON in the key order the Rust library writes, space-padded. */
function encodeHeader(plan: Planned[], metadata: Record<string, string> | undefined): Uint8Array {
  // Built by hand rather than as an object, so a tensor named "__proto__" stays a key.
  const parts: string[] = [];
  if (metadata !== undefined) {
    parts.push(
      `"__metadata__":{${Object.entries(metadata)
        .map(([k, v]) => `${q(k)}:${q(v)}`)
        .join(',')}}`,
    );
  }
  let offset = 0;
  for (const p of plan) {
    parts.push(
      `${q(p.name)}:{"dtype":"${p.dtype}","shape":${JSON.stringify(p.shape)},"data_offsets":[${offset},${offset + p.bytes}]}`,
    );
    offset += p.bytes;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  // Padding to 8 keeps the data buffer 8-aligned in the file, so readers can map it in place.
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(out, 8);
  return out;
}

/**
 * Writes `plan` to `file` via `${file}.tmp` and a rename, so a crash never leaves a truncated
 * file under the real name. `next()` supplies each tensor's data in plan order.
 */
function writeFile(
  file: string,
  plan: Planned[],
  metadata: Record<string, string> | undefined,
  next: () => WriteTensor,
): void {
  requireLittleEndian(file);
  const header = encodeHeader(plan, metadata);
  const tmp = `${file}.tmp`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    writeAll(fd, header);
    for (const p of plan) {
      const t = next();
      if (
        t?.name !== p.name ||
        writeDtype(t) !== p.dtype ||
        t.data.byteLength !== p.bytes ||
        JSON.stringify(t.shape) !== JSON.stringify(p.shape)
      ) {
        throw new CheckpointError(
          `${file}: tensor source yielded ${q(String(t?.name))} where ${q(p.name)} ${p.dtype} ` +
            `${JSON.stringify(p.shape)} was planned; a tensor factory must yield the same tensors on every call`,
        );
      }
      writeAll(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, {force: true});
    throw e instanceof CheckpointError ? e : new CheckpointError(`${file}: write failed: ${errMsg(e)}`);
  }
}

/** Writes one safetensors file of F32 / I32 (or BF16 / F16 bit pattern) tensors, in the given order. */
export function writeSafetensors(file: string, tensors: WriteTensor[], metadata?: Record<string, string>): void {
  checkMetadata(file, metadata);
  const plan = planAll(tensors, file);
  let i = 0;
  writeFile(file, plan, metadata, () => tensors[i++]);
}

/** Python's json.dumps(..., indent=2, sort_keys=True), so indexes match transformers' byte for byte. */
function pythonJson(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

function sortedObject<T>(entries: [string, T][]): Record<string, T> {
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Writes a checkpoint to `dir` as transformers' save_pretrained does: one `model.safetensors`
 * when all tensors fit in maxShardBytes (default 5e9), else `model-0000k-of-0000n.safetensors`
 * shards (filled greedily in order; a tensor larger than the limit gets a shard of its own)
 * and `model.safetensors.index.json`. Shards carry `{format: 'pt', ...metadata}`, which
 * transformers requires to load them.
 *
 * A function source is called twice, once to plan the shards and once to write them, so only
 * one tensor need be alive at a time; it must yield the same tensors both times.
 * Checkpoint files from an earlier write that would shadow or confuse this one are removed.
 */
export function writeCheckpoint(
  dir: string,
  tensors: WriteTensor[] | (() => Iterable<WriteTensor>),
  opts?: {maxShardBytes?: number; metadata?: Record<string, string>},
): void {
  const maxShardBytes = opts?.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(maxShardBytes > 0)) throw new CheckpointError(`${dir}: maxShardBytes must be positive, got ${maxShardBytes}`);
  checkMetadata(dir, opts?.metadata);
  const source = typeof tensors === 'function' ? tensors : () => tensors;
  const plan = planAll(source(), dir);

  const shards: Planned[][] = [[]];
  let shardBytes = 0;
  for (const p of plan) {
    if (shards[shards.length - 1].length > 0 && shardBytes + p.bytes > maxShardBytes) {
      shards.push([]);
      shardBytes = 0;
    }
    shards[shards.length - 1].push(p);
    shardBytes += p.bytes;
  }
  const n = shards.length;
  const pad = (k: number) => String(k).padStart(5, '0');
  const names = n === 1 ? [SINGLE_FILE_NAME] : shards.map((_, k) => `model-${pad(k + 1)}-of-${pad(n)}.safetensors`);

  try {
    fs.mkdirSync(dir, {recursive: true});
  } catch (e) {
    throw new CheckpointError(`${dir}: cannot create directory: ${errMsg(e)}`);
  }
  const shardMetadata = {format: 'pt', ...opts?.metadata};
  const it = source()[Symbol.iterator]();
  try {
    for (let k = 0; k < n; k++) {
      writeFile(path.join(dir, names[k]), shards[k], shardMetadata, () => {
        const r = it.next();
        if (r.done)
          throw new CheckpointError(`${path.join(dir, names[k])}: tensor source ended early on its second call`);
        return r.value;
      });
    }
    if (typeof tensors === 'function' && !it.next().done) {
      throw new CheckpointError(`${dir}: tensor source yielded more tensors on its second call than on its first`);
    }
  } finally {
    it.return?.();
  }

  const indexFile = path.join(dir, INDEX_FILE_NAME);
  if (n > 1) {
    const total = plan.reduce((s, p) => s + p.bytes, 0);
    const index = {
      metadata: sortedObject<string | number>([...Object.entries(opts?.metadata ?? {}), ['total_size', total]]),
      weight_map: sortedObject(shards.flatMap((s, k) => s.map((p): [string, string] => [p.name, names[k]]))),
    };
    try {
      fs.writeFileSync(`${indexFile}.tmp`, `${pythonJson(index)}\n`);
      fs.renameSync(`${indexFile}.tmp`, indexFile);
    } catch (e) {
      fs.rmSync(`${indexFile}.tmp`, {force: true});
      throw new CheckpointError(`${indexFile}: write failed: ${errMsg(e)}`);
    }
  }
  // A leftover model.safetensors would be loaded instead of new shards (it takes precedence),
  // and leftover shards or index would sit beside a new single file looking current.
  for (const f of fs.readdirSync(dir)) {
    const stale =
      (f === SINGLE_FILE_NAME && n > 1) ||
      (f === INDEX_FILE_NAME && n === 1) ||
      (SHARD_NAME.test(f) && !names.includes(f));
    if (stale) fs.rmSync(path.join(dir, f), {force: true});
  }
}

// The 16-bit conversions live with the compact weights (ops/compact/half.ts); named here for the loaders' users.
export {bf16ToF32, f16ToF32, f32ToBf16, widenBf16InPlace, widenF16InPlace};
