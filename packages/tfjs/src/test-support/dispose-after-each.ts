import { afterEach } from 'vitest';

/**
 * A `track(x)` that disposes x when the current test ends, so that no test leaks variables,
 * tensors or optimizers (tfjs variable names are global) into the next.
 */
export function disposeAfterEach(): <T extends { dispose(): void }>(owned: T) => T {
  const owned: { dispose(): void }[] = [];
  afterEach(() => {
    for (const o of owned.splice(0)) o.dispose();
  });
  return (o) => {
    owned.push(o);
    return o;
  };
}
