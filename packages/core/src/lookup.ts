import { AccSGDConfigError } from './errors.js';

/** The parameter group at `index`; throws AccSGDConfigError naming the valid range. Shared by every adapter. */
export function groupAt<T>(groups: readonly T[], index: number): T {
  const group = Number.isInteger(index) ? groups[index] : undefined;
  if (group === undefined)
    throw new AccSGDConfigError('group', index, `an integer in [0, ${groups.length - 1}]`);
  return group;
}

/** A parameter by position or by name; throws AccSGDConfigError listing what exists. */
export function paramAt<T>(params: readonly T[], byName: ReadonlyMap<string, T>, param: number | string): T {
  const found =
    typeof param === 'string' ? byName.get(param) : Number.isInteger(param) ? params[param] : undefined;
  if (found === undefined) {
    throw new AccSGDConfigError(
      'param',
      param,
      `an index in [0, ${params.length - 1}] or one of the names ${[...byName.keys()].join(', ')}`,
    );
  }
  return found;
}
