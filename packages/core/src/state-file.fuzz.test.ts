import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AccSGDStateError } from './errors.js';
import { AccSGD } from './optimizer.js';
import { decodeState, encodeState } from './state-file.js';

/**
 * Fuzzing the strict state parser: every input must either decode to a consistent state or throw
 * AccSGDStateError; nothing untyped, and nothing decoded larger than the file. 10,000+ inputs.
 */

const base = (() => {
  const opt = new AccSGD(
    [
      {
        params: [new Float32Array([1, 2, 3, 4, 5, 6]), new Float64Array([7, 8])],
        names: ['dense/kernel', 'dense/bias'],
        shapes: [[2, 3], [2]],
      },
      { params: [new Float32Array([9])], names: ['scale'], lr: 0.01 },
    ],
    { lr: 0.1 },
  );
  opt.step([new Float32Array(6).fill(0.5), new Float64Array([1, -1]), null]);
  return opt.exportState();
})();

const encoder = new TextEncoder();
const headerLength = Number(new DataView(base.buffer).getBigUint64(0, true));
const headerText = new TextDecoder().decode(base.subarray(8, 8 + headerLength));
const data = base.subarray(8 + headerLength);

function withHeader(text: string, body: Uint8Array = data, declaredLength?: bigint): Uint8Array {
  const json = encoder.encode(text);
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

const header = () => JSON.parse(headerText) as Record<string, Record<string, unknown>>;
const tensorNames = Object.keys(header()).filter((k) => k !== '__metadata__');

const mutations = fc.oneof(
  // truncated anywhere
  fc.integer({ min: 0, max: base.length - 1 }).map((n) => base.slice(0, n)),
  // random bytes flipped
  fc
    .array(fc.tuple(fc.integer({ min: 0, max: base.length - 1 }), fc.integer({ min: 1, max: 255 })), {
      minLength: 1,
      maxLength: 8,
    })
    .map((flips) => {
      const out = base.slice();
      for (const [i, x] of flips) out[i] = out[i]! ^ x;
      return out;
    }),
  // hostile header lengths
  fc
    .oneof(
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.constantFrom(
        0n,
        1n,
        7n,
        BigInt(headerLength - 1),
        BigInt(headerLength + 1),
        1n << 63n,
        (1n << 64n) - 1n,
      ),
    )
    .map((n) => {
      const out = base.slice();
      new DataView(out.buffer).setBigUint64(0, n, true);
      return out;
    }),
  // offsets out of range or overlapping, wrong dtypes and shapes
  fc
    .record({
      name: fc.constantFrom(...tensorNames),
      field: fc.constantFrom('data_offsets', 'dtype', 'shape'),
      value: fc.oneof(
        fc.tuple(
          fc.integer({ min: -8, max: data.length + 64 }),
          fc.integer({ min: -8, max: data.length + 64 }),
        ),
        fc.constantFrom('F16', 'BF16', 'I64', 'f32', '', null, 3),
        fc.array(fc.integer({ min: -2, max: 10 }), { maxLength: 4 }),
        fc.constantFrom([0, 24], [0, 8], [24, 24], [2 ** 53, 2 ** 53 + 4], [1.5, 25.5], 'x'),
      ),
    })
    .map(({ name, field, value }) => {
      const h = header();
      h[name]![field] = value;
      return withHeader(JSON.stringify(h));
    }),
  // duplicate names (JSON.parse would keep the last silently) and missing names
  fc.constantFrom(...tensorNames).map((name) => {
    const h = header();
    const entry = JSON.stringify(h[name]);
    return withHeader(headerText.trimEnd().replace(/}$/, `,${JSON.stringify(name)}:${entry}}`));
  }),
  fc.constantFrom(...tensorNames).map((name) => {
    const h = header();
    delete h[name];
    return withHeader(JSON.stringify(h));
  }),
  // metadata: unknown versions, bad groups, non-JSON
  fc
    .record({
      key: fc.constantFrom('format', 'format_version', 'param_groups', 'extra'),
      value: fc.oneof(
        fc.string(),
        fc.constantFrom('2', '0', '1.0', '[]', '{}', '[{}]', 'null', '[{"lr":0.1}]'),
        fc.jsonValue().map((v) => JSON.stringify(v)),
      ),
    })
    .map(({ key, value }) => {
      const h = header();
      (h.__metadata__ as Record<string, unknown>)[key] = value;
      return withHeader(JSON.stringify(h));
    }),
  fc
    .record({
      group: fc.integer({ min: 0, max: 1 }),
      key: fc.constantFrom('lr', 'kappa', 'xi', 'small_const', 'weight_decay', 'params', 'step', 'other'),
      value: fc.jsonValue(),
    })
    .map(({ group, key, value }) => {
      const h = header();
      const meta = h.__metadata__ as Record<string, string>;
      const groups = JSON.parse(meta.param_groups!) as Record<string, unknown>[];
      groups[group]![key] = value;
      meta.param_groups = JSON.stringify(groups);
      return withHeader(JSON.stringify(h));
    }),
  // non-JSON headers and plain garbage
  fc.string({ maxLength: 64 }).map((s) => withHeader(s)),
  fc.uint8Array({ maxLength: 256 }),
);

function check(bytes: Uint8Array): 'valid' | 'rejected' {
  let state: ReturnType<typeof decodeState>;
  try {
    state = decodeState(bytes);
  } catch (error) {
    if (!(error instanceof AccSGDStateError))
      throw new Error(`untyped error: ${(error as Error)?.name}: ${(error as Error)?.message}`);
    expect(error.message.length).toBeGreaterThan(20);
    return 'rejected';
  }
  let decodedBytes = 0;
  for (const [name, buffer] of state.buffers) {
    decodedBytes += buffer.data.byteLength;
    expect(
      buffer.shape.reduce((a, b) => a * b, 1),
      name,
    ).toBe(buffer.data.length);
    expect(state.groups.some((g) => g.params.includes(name))).toBe(true);
  }
  expect(decodedBytes).toBeLessThanOrEqual(bytes.length);
  // Whatever decodes must re-encode and decode to the same state.
  expect(decodeState(encodeState(state))).toEqual(state);
  return 'valid';
}

describe('state file parser under fuzzing', () => {
  it('decodes the unmodified file', () => {
    expect(check(base)).toBe('valid');
  });

  it('accepts or rejects with AccSGDStateError on 10,000 generated inputs', () => {
    const outcomes = { valid: 0, rejected: 0 };
    fc.assert(
      fc.property(mutations, (bytes) => {
        outcomes[check(bytes)]++;
      }),
      { numRuns: 10_000, seed: 1704_08227 },
    );
    expect(outcomes.valid + outcomes.rejected).toBe(10_000);
    // Most mutations must be caught; some (a flipped bit inside tensor data, say) stay valid.
    expect(outcomes.rejected).toBeGreaterThan(7_000);
  });

  it('names the problem for each kind of corruption', () => {
    const h = header();
    const [first, second] = tensorNames as [string, string];
    const overlapping = {
      ...h,
      [second]: {
        ...h[second],
        data_offsets: [
          0,
          (h[second]!.data_offsets as number[])[1]! - (h[second]!.data_offsets as number[])[0]!,
        ],
      },
    };
    const cases: [Uint8Array, string][] = [
      [base.slice(0, 5), 'shorter than the 8-byte header length'],
      [withHeader(headerText, data, 1n << 40n), 'exceeds the limit of 100000000 bytes'],
      [withHeader(headerText, data, BigInt(headerText.length + data.length + 1)), 'runs past the end'],
      [withHeader('[1,2]'), 'header does not start with "{"'],
      [withHeader('{"a":'), 'header is not JSON'],
      [
        withHeader(JSON.stringify({ ...h, [first]: { ...h[first], dtype: 'F16' } })),
        `tensor "${first}" has dtype "F16"; expected "F32" or "F64"`,
      ],
      [
        withHeader(JSON.stringify({ ...h, [first]: { ...h[first], shape: [5, 3] } })),
        'but data_offsets span',
      ],
      [withHeader(JSON.stringify({ ...h, [first]: { ...h[first], data_offsets: [0, 9999] } })), 'past the'],
      [withHeader(JSON.stringify(overlapping)), 'overlaps the tensor before it'],
      [withHeader(headerText, data.slice(0, data.length - 4)), 'past the'],
      [
        withHeader(headerText, new Uint8Array([...data, 0, 0, 0, 0])),
        '4 trailing bytes after the last tensor',
      ],
      [
        withHeader(
          headerText.trimEnd().replace(/}$/, `,${JSON.stringify(first)}:${JSON.stringify(h[first])}}`),
        ),
        `key "${first}" appears more than once in one object`,
      ],
    ];
    cases.push([
      withHeader(headerText.trimEnd().replace('"param_groups":', '"param_groups":"[]","param_groups":')),
      'key "param_groups" appears more than once in one object',
    ]);
    // A byte-order mark before the header (TextDecoder would drop it silently; JSON parsers do not).
    cases.push([withHeader(`\ufeff${headerText}`), 'header does not start with "{"']);
    // A key twice inside the param_groups JSON string, which JSON.parse would resolve to the last.
    const metadata = h.__metadata__ as Record<string, string>;
    const groupsText = metadata.param_groups!;
    cases.push([
      withHeader(
        JSON.stringify({
          ...h,
          __metadata__: { ...metadata, param_groups: groupsText.replace('"lr":', '"lr":0.5,"lr":') },
        }),
      ),
      'key "lr" appears more than once in one object of "param_groups"',
    ]);
    // A "__proto__" metadata key, which a plain object would swallow.
    cases.push([
      withHeader(headerText.trimEnd().replace('"__metadata__":{', '"__metadata__":{"__proto__":"x",')),
      'unknown metadata key "__proto__"',
    ]);
    // An empty tensor whose other dimensions multiply past 2^53 - 1.
    cases.push([
      withHeader(
        JSON.stringify({
          ...h,
          'empty.momentum_buffer': { dtype: 'F32', shape: [2 ** 40, 2 ** 40, 0], data_offsets: [0, 0] },
        }),
      ),
      'whose dimensions multiply past 2^53 - 1',
    ]);
    for (const [bytes, message] of cases) {
      expect(() => decodeState(bytes), message).toThrow(AccSGDStateError);
      expect(() => decodeState(bytes)).toThrow(message);
    }
  });
});
