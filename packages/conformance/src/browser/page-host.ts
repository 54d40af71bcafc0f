/**
 * The page side of the browser runner. The bundle built by index.ts imports the adapter factory
 * and hands it to installPageHost, which answers WireRequests on globalThis.__accsgd. It never
 * throws across page.evaluate: every failure comes back as a WireError, so Node can rebuild it
 * with the page error's own name and message.
 */
import type {
  ConformanceAdapter,
  ConformanceAdapterFactory,
  ConformanceProblem,
  ConformanceSession,
} from '@accsgd/core';
import {
  decodeWire,
  encodeError,
  encodeWire,
  PAGE_HOST_GLOBAL,
  SESSION_METHODS,
  type WireReply,
  type WireRequest,
} from './wire.js';

export interface PageHost {
  handle(request: WireRequest): Promise<WireReply>;
}

export function installPageHost(factory: unknown, exportName: string): void {
  let adapter: ConformanceAdapter | undefined;
  const sessions = new Map<number, ConformanceSession>();
  let nextSessionId = 1;

  async function create(options: unknown): Promise<{ name: string; dtype: string }> {
    if (typeof factory !== 'function')
      throw new TypeError(`export "${exportName}" is a ${typeof factory}, not a factory function`);
    const created = (await (factory as ConformanceAdapterFactory)(
      options as Record<string, unknown> | undefined,
    )) as unknown;
    if (
      typeof created !== 'object' ||
      created === null ||
      typeof (created as ConformanceAdapter).open !== 'function'
    ) {
      throw new TypeError(
        `"${exportName}"(options) did not return a ConformanceAdapter (an object with open())`,
      );
    }
    adapter = created as ConformanceAdapter;
    return { name: String(adapter.name), dtype: String(adapter.dtype) };
  }

  /** The session's id, and whether it has the optional closed loop (SPEC §5.1). */
  async function open(problem: unknown): Promise<{ session: number; closedLoop: boolean }> {
    if (!adapter) throw new Error('the adapter has not been created yet');
    const session = await adapter.open(decodeWire(problem) as ConformanceProblem);
    const id = nextSessionId++;
    sessions.set(id, session);
    return { session: id, closedLoop: typeof session.leastSquaresGradient === 'function' };
  }

  async function callSession(id: number, method: string, args: unknown[]): Promise<unknown> {
    const session = sessions.get(id);
    if (!session) throw new Error(`session ${id} is closed or was never opened`);
    if (
      !(SESSION_METHODS as readonly string[]).includes(method) ||
      typeof session[method as keyof ConformanceSession] !== 'function'
    )
      throw new TypeError(`unknown session method "${method}"`);
    const decoded = args.map(decodeWire);
    try {
      const result = await (
        session[method as keyof ConformanceSession] as (...a: unknown[]) => Promise<unknown>
      ).apply(session, decoded);
      return encodeWire(result);
    } finally {
      // A failed close still ends the session: the caller cannot do anything more with it.
      if (method === 'close') sessions.delete(id);
    }
  }

  async function describeWebGPU(): Promise<string> {
    const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
    if (!gpu) return 'no WebGPU';
    const adapter = await gpu.requestAdapter();
    if (!adapter) return 'no WebGPU';
    const info = adapter.info;
    const parts = [info.vendor, info.architecture || info.device || info.description].filter(Boolean);
    return parts.length > 0 ? parts.join(' ') : 'WebGPU (unnamed adapter)';
  }

  const host: PageHost = {
    async handle(request) {
      try {
        switch (request.op) {
          case 'create':
            return { ok: true, value: await create(request.options) };
          case 'open':
            return { ok: true, value: await open(request.problem) };
          case 'session':
            return { ok: true, value: await callSession(request.session, request.method, request.args) };
          case 'run':
            // runInBrowser: the export is a plain async function, not an adapter factory.
            if (typeof factory !== 'function')
              throw new TypeError(`export "${exportName}" is a ${typeof factory}, not a function`);
            return { ok: true, value: encodeWire(await factory(decodeWire(request.args))) };
          case 'describe-webgpu':
            return { ok: true, value: await describeWebGPU() };
          default:
            throw new TypeError(`unknown request ${JSON.stringify(request)}`);
        }
      } catch (error) {
        return { ok: false, error: encodeError(error) };
      }
    },
  };
  (globalThis as Record<string, unknown>)[PAGE_HOST_GLOBAL] = host;
}
