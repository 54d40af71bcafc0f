/**
 * The browser runner: runs a conformance adapter inside headless Chromium and hands Node a
 * ConformanceAdapter that forwards to it, so the ordinary Node runner can judge browser backends
 * (WebGPU, WebGL, wasm) without any runner logic in the page.
 *
 *   const adapter = await openBrowserAdapter({ module: '@accsgd/tfjs/conformance', options: { backend: 'webgpu' } });
 *   try { await runConformance(adapter); } finally { await adapter.dispose(); }
 *
 * How: esbuild bundles the adapter module with a small page host (page-host.ts) for the browser;
 * a loopback HTTP server serves it (WebGPU exists only in secure contexts, and 127.0.0.1 is one);
 * playwright-core drives Chromium; every call crosses as one page.evaluate with typed arrays as
 * base64 (wire.ts).
 */
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AccSGDConfigError,
  AccSGDError,
  AccSGDGradientError,
  AccSGDStateError,
  type ConformanceAdapter,
  type ConformanceDType,
  type ConformanceProblem,
  type ConformanceSession,
  type ConformanceSnapshot,
} from '@accsgd/core';
import { build, formatMessages, type Message, type OutputFile, type Plugin } from 'esbuild';
import { type Browser, chromium, type Page } from 'playwright-core';
import { findChromium } from '../environment.js';
import {
  decodeWire,
  encodeWire,
  PAGE_HOST_GLOBAL,
  type SessionMethod,
  type WireError,
  type WireReply,
  type WireRequest,
} from './wire.js';

export interface BrowserAdapterOptions {
  /**
   * Absolute path of a module, or a specifier resolvable from process.cwd() (e.g.
   * '@accsgd/tfjs/conformance'), that exports the adapter factory.
   */
  module: string;
  /** Default 'conformanceAdapter'. */
  exportName?: string;
  /** Passed to the factory in the page; must survive structured cloning (plain JSON is safe). */
  options?: Record<string, unknown>;
  /** Default: findChromium(). */
  executablePath?: string;
  /** Default true: launch Chromium with WebGPU enabled on SwiftShader. */
  webgpu?: boolean;
  /** Receives the page's console output, page errors and failed requests. */
  log?: (line: string) => void;
  /**
   * Extra files to serve, URL path prefix -> absolute directory, e.g.
   * { '/tfjs-wasm/': '<node_modules>/@tensorflow/tfjs-backend-wasm/dist' } for an adapter that is
   * told (through `options`) to fetch its .wasm files from there rather than importing them.
   */
  staticDirs?: Record<string, string>;
  /** Each start-up phase: launching Chromium, loading the bundle, creating the adapter. Default 60 s. */
  startTimeoutMs?: number;
  /** Each open() and session call. Default 120 s: SwiftShader runs shaders on the CPU. */
  callTimeoutMs?: number;
}

export interface BrowserAdapter extends ConformanceAdapter {
  /** Closes the browser and the server. Safe to call more than once. */
  dispose(): Promise<void>;
  /** e.g. "chromium 156.0.8078.108 / google swiftshader", or "chromium 156.0.8078.108 / no WebGPU". */
  readonly environment: string;
}

/**
 * Flags checked on Debian's chromium 156 without a GPU: --enable-unsafe-webgpu is what makes
 * requestAdapter() non-null on Linux; --use-webgpu-adapter=swiftshader picks the CPU Vulkan
 * driver Chromium ships, so results do not depend on whatever GPU a machine has.
 * --enable-features=Vulkan made no difference and is left out.
 */
export const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];

/**
 * --no-sandbox: CI runs as root, where Chromium refuses its sandbox. --disable-dev-shm-usage:
 * containers often give /dev/shm only 64 MiB, which crashes renderers. The rest keep a test run
 * off the network and free of first-run work.
 */
export const BASE_FLAGS = [
  '--no-sandbox',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

const DEFAULT_START_TIMEOUT_MS = 60_000;
const DEFAULT_CALL_TIMEOUT_MS = 120_000;
const BUNDLE_PATH = '/adapter-bundle.js';
/** Errors named here come back as instances of the class, so `instanceof` works as in Node. */
const KNOWN_ERRORS: Record<string, { prototype: Error }> = {
  AccSGDError,
  AccSGDConfigError,
  AccSGDGradientError,
  AccSGDStateError,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
};

export async function openBrowserAdapter(options: BrowserAdapterOptions): Promise<BrowserAdapter> {
  const exportName = options.exportName ?? 'conformanceAdapter';
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const log = options.log ?? (() => {});
  const label = `browser adapter (${options.module})`;

  const executablePath = options.executablePath ?? resolveChromium();
  const files = await bundleForPage(options.module, exportName, log);
  const server = await serve(files, options.staticDirs ?? {});
  const cleanups: (() => Promise<void>)[] = [server.close];
  try {
    const browser = await chromium
      .launch({
        executablePath,
        headless: true,
        args: [...BASE_FLAGS, ...(options.webgpu === false ? [] : WEBGPU_FLAGS)],
        timeout: startTimeoutMs,
      })
      .catch((error: unknown) => {
        throw new Error(
          `${label}: cannot launch Chromium at ${executablePath}: ${(error as Error).message}`,
          { cause: error },
        );
      });
    cleanups.unshift(() => browser.close().catch(() => {}));
    const page = await browser.newPage();
    const channel = new PageChannel(page, browser, label, log);
    await page.goto(`${server.origin}/`, { timeout: startTimeoutMs });
    await channel.loadBundle(`${server.origin}${BUNDLE_PATH}`, startTimeoutMs);
    const created = (await channel.request(
      { op: 'create', options: options.options },
      startTimeoutMs,
      'creating the adapter',
    )) as {
      name: string;
      dtype: string;
    };
    if (created.dtype !== 'float32' && created.dtype !== 'float64') {
      throw new Error(
        `${label}: the adapter's dtype is ${JSON.stringify(created.dtype)}, expected "float32" or "float64"`,
      );
    }
    const webgpu = (await channel.request(
      { op: 'describe-webgpu' },
      startTimeoutMs,
      'asking for a WebGPU adapter',
    )) as string;
    return makeAdapter({
      name: created.name,
      dtype: created.dtype,
      environment: `chromium ${browser.version()} / ${webgpu}`,
      channel,
      callTimeoutMs,
      dispose: () => runCleanups(cleanups),
    });
  } catch (error) {
    await runCleanups(cleanups);
    throw error;
  }
}

export interface RunInBrowserOptions
  extends Pick<BrowserAdapterOptions, 'executablePath' | 'webgpu' | 'log' | 'staticDirs' | 'startTimeoutMs'> {
  /** Absolute path of a module, or a specifier resolvable from process.cwd(). */
  module: string;
  /** The async function to call in the page, exported by `module`. */
  exportName: string;
  /** Its one argument: plain JSON, typed arrays allowed. */
  args?: unknown;
  /** Default 300 s: training a model on SwiftShader takes a while. */
  timeoutMs?: number;
}

/**
 * Calls one exported async function inside headless Chromium and returns its result (plain JSON,
 * typed arrays allowed), or throws its error. For checks of your own that must run in a browser,
 * such as training a model on tfjs's webgl or webgpu backend; same bundling, server and flags as
 * openBrowserAdapter.
 */
export async function runInBrowser<T = unknown>(options: RunInBrowserOptions): Promise<T> {
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const log = options.log ?? (() => {});
  const label = `runInBrowser (${options.module}#${options.exportName})`;
  const executablePath = options.executablePath ?? resolveChromium();
  const files = await bundleForPage(options.module, options.exportName, log);
  const server = await serve(files, options.staticDirs ?? {});
  const cleanups: (() => Promise<void>)[] = [server.close];
  try {
    const browser = await chromium.launch({
      executablePath,
      headless: true,
      args: [...BASE_FLAGS, ...(options.webgpu === false ? [] : WEBGPU_FLAGS)],
      timeout: startTimeoutMs,
    });
    cleanups.unshift(() => browser.close().catch(() => {}));
    const page = await browser.newPage();
    const channel = new PageChannel(page, browser, label, log);
    await page.goto(`${server.origin}/`, { timeout: startTimeoutMs });
    await channel.loadBundle(`${server.origin}${BUNDLE_PATH}`, startTimeoutMs);
    const value = await channel.request(
      { op: 'run', args: encodeWire(options.args) },
      options.timeoutMs ?? 300_000,
      `${options.exportName}()`,
    );
    return decodeWire(value) as T;
  } finally {
    await runCleanups(cleanups);
  }
}

function resolveChromium(): string {
  const found = findChromium();
  if (!found.available) throw new Error(`browser adapter: ${found.reason}`);
  return found.executablePath;
}

async function runCleanups(cleanups: (() => Promise<void>)[]): Promise<void> {
  // Emptied first, so a second dispose() does nothing.
  for (const cleanup of cleanups.splice(0)) await cleanup();
}

interface AdapterParts {
  name: string;
  dtype: ConformanceDType;
  environment: string;
  channel: PageChannel;
  callTimeoutMs: number;
  dispose: () => Promise<void>;
}

function makeAdapter({
  name,
  dtype,
  environment,
  channel,
  callTimeoutMs,
  dispose,
}: AdapterParts): BrowserAdapter {
  const callSession = async (session: number, method: SessionMethod, args: unknown[]): Promise<unknown> =>
    decodeWire(
      await channel.request(
        { op: 'session', session, method, args: args.map(encodeWire) },
        callTimeoutMs,
        `session.${method}()`,
      ),
    );
  return {
    name,
    dtype,
    environment,
    async open(problem: ConformanceProblem): Promise<ConformanceSession> {
      const { session, closedLoop } = (await channel.request(
        { op: 'open', problem: encodeWire(problem) },
        callTimeoutMs,
        'open()',
      )) as { session: number; closedLoop: boolean };
      const forwarded: ConformanceSession = {
        async step(grads) {
          await callSession(session, 'step', [grads]);
        },
        async setLearningRate(lr, group) {
          await callSession(session, 'setLearningRate', [lr, group]);
        },
        async read() {
          return (await callSession(session, 'read', [])) as ConformanceSnapshot;
        },
        async exportState() {
          return (await callSession(session, 'exportState', [])) as Uint8Array;
        },
        async importState(bytes) {
          await callSession(session, 'importState', [bytes]);
        },
        async close() {
          await callSession(session, 'close', []);
        },
      };
      if (closedLoop) {
        forwarded.leastSquaresGradient = async (name, x, y) =>
          (await callSession(session, 'leastSquaresGradient', [name, x, y])) as Float64Array;
      }
      return forwarded;
    },
    async dispose() {
      channel.markDisposed();
      await dispose();
    },
  };
}

/** One page: requests with timeouts, and a clear error instead of a hang when the page dies. */
class PageChannel {
  /** Set once the page can no longer answer; every later request fails with it. */
  private failure: string | undefined;
  private readonly failureListeners = new Set<(reason: string) => void>();
  /** The last few error lines from the page, quoted in timeout and crash messages. */
  private readonly recentErrors: string[] = [];

  constructor(
    private readonly page: Page,
    browser: Browser,
    private readonly label: string,
    log: (line: string) => void,
  ) {
    page.on('console', (message) => {
      const line = `[page ${message.type()}] ${message.text()}`;
      if (message.type() === 'error') this.remember(line);
      log(line);
    });
    page.on('pageerror', (error) => {
      const line = `[page uncaught] ${error.stack ?? `${error.name}: ${error.message}`}`;
      this.remember(line);
      log(line);
    });
    page.on('requestfailed', (request) => {
      const line = `[page request failed] ${request.url()}: ${request.failure()?.errorText ?? 'unknown error'}`;
      this.remember(line);
      log(line);
    });
    page.on('response', (response) => {
      if (response.status() >= 400) log(`[page request] ${response.url()}: HTTP ${response.status()}`);
    });
    page.on('crash', () => this.fail('the page crashed (out of memory, or a GPU process failure)'));
    page.on('close', () => this.fail('the page was closed'));
    browser.on('disconnected', () => this.fail('Chromium exited'));
  }

  markDisposed(): void {
    this.fail('the adapter was disposed');
  }

  /** Imports the bundle; its top-level errors (a throwing import, a missing export) come back here. */
  async loadBundle(url: string, timeoutMs: number): Promise<void> {
    // A string, not a function: test runners rewrite import() in functions they compile
    // (vitest makes it __vite_ssr_dynamic_import__), and the page has no such helper.
    const importBundle = `import(${JSON.stringify(url)}).then(
      () => ({ ok: true, value: null }),
      (e) => ({ ok: false, error: { name: String(e?.name ?? 'Error'), message: String(e?.message ?? e), stack: e?.stack, fields: {} } }),
    )`;
    const reply = await this.guard(
      this.page.evaluate<WireReply>(importBundle),
      timeoutMs,
      'loading the adapter bundle',
    );
    if (!reply.ok) throw this.revive(reply.error, 'loading the adapter bundle');
    const installed = await this.page.evaluate(
      (name) => typeof (globalThis as Record<string, unknown>)[name] === 'object',
      PAGE_HOST_GLOBAL,
    );
    if (!installed) throw new Error(`${this.label}: the bundle loaded but installed no page host`);
  }

  async request(request: WireRequest, timeoutMs: number, what: string): Promise<unknown> {
    const reply = await this.guard(
      this.page.evaluate(
        ({ hostName, request }) =>
          (globalThis as unknown as Record<string, { handle(r: WireRequest): Promise<WireReply> }>)[
            hostName
          ]!.handle(request),
        { hostName: PAGE_HOST_GLOBAL, request },
      ),
      timeoutMs,
      what,
    );
    if (!reply.ok) throw this.revive(reply.error, what);
    return reply.value;
  }

  /** Races a page call against the timeout and the page's death, naming the call in the error. */
  private guard<T>(call: Promise<T>, timeoutMs: number, what: string): Promise<T> {
    if (this.failure) {
      call.catch(() => {});
      return Promise.reject(new Error(`${this.label}: cannot run ${what}: ${this.failure}`));
    }
    return new Promise<T>((resolve, reject) => {
      const onFailure = (reason: string) =>
        finish(() => reject(new Error(`${this.label}: ${what} failed: ${reason}${this.recentErrorText()}`)));
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new Error(
                `${this.label}: ${what} timed out after ${timeoutMs} ms (see startTimeoutMs, callTimeoutMs)${this.recentErrorText()}`,
              ),
            ),
          ),
        timeoutMs,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.failureListeners.delete(onFailure);
        settle();
      };
      this.failureListeners.add(onFailure);
      call.then(
        (value) => finish(() => resolve(value)),
        (error: unknown) => {
          const reason = this.failure ?? (error instanceof Error ? error.message : String(error));
          finish(() =>
            reject(
              new Error(`${this.label}: ${what} failed in Chromium: ${reason}${this.recentErrorText()}`, {
                cause: error,
              }),
            ),
          );
        },
      );
    });
  }

  private fail(reason: string): void {
    if (this.failure) return;
    this.failure = reason;
    for (const listener of [...this.failureListeners]) listener(reason);
  }

  private remember(line: string): void {
    this.recentErrors.push(line);
    if (this.recentErrors.length > 10) this.recentErrors.shift();
  }

  private recentErrorText(): string {
    return this.recentErrors.length === 0 ? '' : `\nrecent page errors:\n  ${this.recentErrors.join('\n  ')}`;
  }

  /**
   * The page's error as a Node Error with the same name and message (and the class, when it is
   * one we know), so callers test it exactly as they would a Node adapter's error.
   */
  private revive(wire: WireError, what: string): Error {
    const error = new Error(wire.message);
    const known = KNOWN_ERRORS[wire.name];
    if (known) Object.setPrototypeOf(error, known.prototype);
    error.name = wire.name;
    Object.assign(error, wire.fields);
    // Playwright's own evaluation frames say nothing about the adapter.
    const pageFrames = (wire.stack ?? '')
      .split('\n')
      .filter((line) => /^\s+at /.test(line) && !/UtilityScript|eval at evaluate/.test(line));
    const nodeFrames = (error.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
    error.stack = [
      `${wire.name}: ${wire.message}`,
      `    (thrown in Chromium during ${what})`,
      ...pageFrames,
      '    (called from Node)',
      ...nodeFrames,
    ].join('\n');
    return error;
  }
}

interface ServedFile {
  contents: Uint8Array;
  contentType: string;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
};

function contentTypeOf(filePath: string): string {
  return CONTENT_TYPES[path.extname(filePath).toLowerCase()] ?? 'application/octet-stream';
}

/** The empty favicon keeps Chromium from logging a 404 for /favicon.ico. */
const INDEX_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>accsgd conformance</title></head><body></body></html>
`;

/**
 * Bundles the page host with the adapter module, in memory. Resolution starts at process.cwd(),
 * so a workspace package specifier works from wherever the runner is started. Node built-ins
 * fail the build: code that needs them cannot run in the page.
 */
async function bundleForPage(
  module: string,
  exportName: string,
  log: (line: string) => void,
): Promise<Map<string, ServedFile>> {
  const workingDir = process.cwd();
  const outdir = path.join(workingDir, '.accsgd-browser-bundle');
  const entry = [
    `import { installPageHost } from ${JSON.stringify(pageHostSource())};`,
    `import { ${JSON.stringify(exportName)} as adapterFactory } from ${JSON.stringify(module)};`,
    `installPageHost(adapterFactory, ${JSON.stringify(exportName)});`,
  ].join('\n');
  let outputFiles: OutputFile[];
  try {
    const result = await build({
      stdin: { contents: entry, resolveDir: workingDir, sourcefile: 'accsgd-browser-entry.js', loader: 'js' },
      absWorkingDir: workingDir,
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      outdir,
      entryNames: path.basename(BUNDLE_PATH, '.js'),
      assetNames: '[name]-[hash]',
      // Imported .wasm files become URLs under the server root, which the page can fetch.
      loader: { '.wasm': 'file' },
      publicPath: '/',
      logLevel: 'silent',
      plugins: [missingDynamicImports],
    });
    for (const line of await formatMessages(result.warnings, { kind: 'warning', color: false }))
      log(`[esbuild] ${line}`);
    outputFiles = result.outputFiles;
  } catch (error) {
    const messages = (error as { errors?: Message[] }).errors;
    if (!messages) throw error;
    const text = (await formatMessages(messages, { kind: 'error', color: false })).join('');
    const nodeOnly = messages.some((m) => /built into node/.test(m.notes.map((n) => n.text).join(' ')))
      ? '\n(the module, or something it imports, needs Node built-ins, which do not exist in the browser)'
      : '';
    throw new Error(`browser adapter: cannot bundle ${module} for the browser:\n${text}${nodeOnly}`, {
      cause: error,
    });
  }
  const files = new Map<string, ServedFile>([
    ['/', { contents: new TextEncoder().encode(INDEX_HTML), contentType: CONTENT_TYPES['.html']! }],
  ]);
  for (const file of outputFiles) {
    const urlPath = `/${path.relative(outdir, file.path).split(path.sep).join('/')}`;
    files.set(urlPath, { contents: file.contents, contentType: contentTypeOf(file.path) });
  }
  return files;
}

const MISSING = 'accsgd-missing-package';

/**
 * A package imported only by a dynamic import() that is not installed (an optional peer, such as a
 * tfjs backend the run does not use) becomes a module that throws when it is loaded, instead of
 * failing the whole bundle: the adapter's own lazy loading decides whether it is needed. Static
 * imports of missing packages still fail the build.
 */
const missingDynamicImports: Plugin = {
  name: 'accsgd-missing-dynamic-imports',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.kind !== 'dynamic-import' || args.pluginData === MISSING) return undefined;
      const resolved = await build.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: MISSING,
      });
      if (resolved.errors.length === 0) return resolved;
      return { path: args.path, namespace: MISSING };
    });
    build.onLoad({ filter: /.*/, namespace: MISSING }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not installed (it was imported lazily, so the bundle was built without it); install it to use this part of the adapter`)});`,
      loader: 'js',
    }));
  },
};

/** page-host.js next to this file once built; page-host.ts when running from source (vitest). */
function pageHostSource(): string {
  for (const extension of ['.js', '.ts']) {
    const candidate = fileURLToPath(new URL(`./page-host${extension}`, import.meta.url));
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`browser adapter: page-host.js is missing next to ${fileURLToPath(import.meta.url)}`);
}

async function serve(
  files: Map<string, ServedFile>,
  staticDirs: Record<string, string>,
): Promise<{ origin: string; close: () => Promise<void> }> {
  const server: Server = createServer((request, response) => {
    void (async () => {
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        response.writeHead(405).end();
        return;
      }
      const urlPath = decodeURIComponent(new URL(request.url ?? '/', 'http://127.0.0.1').pathname);
      const file =
        files.get(urlPath === '/index.html' ? '/' : urlPath) ?? (await readStatic(urlPath, staticDirs));
      if (!file) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${urlPath}`);
      } else {
        response.writeHead(200, {
          'content-type': file.contentType,
          'content-length': file.contents.byteLength,
          'cache-control': 'no-store',
          // Cross-origin isolation gives the page SharedArrayBuffer, which threaded wasm backends need.
          'cross-origin-opener-policy': 'same-origin',
          'cross-origin-embedder-policy': 'require-corp',
        });
        response.end(request.method === 'HEAD' ? undefined : file.contents);
      }
    })().catch((error: unknown) => {
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain' });
      response.end(String(error));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function readStatic(
  urlPath: string,
  staticDirs: Record<string, string>,
): Promise<ServedFile | undefined> {
  for (const [prefix, dir] of Object.entries(staticDirs)) {
    if (!urlPath.startsWith(prefix)) continue;
    const root = path.resolve(dir);
    const filePath = path.resolve(root, `.${path.posix.sep}${urlPath.slice(prefix.length)}`);
    // Never serve outside the directory, whatever ../ the URL carries.
    if (filePath !== root && !filePath.startsWith(root + path.sep)) continue;
    const info = await stat(filePath).catch(() => undefined);
    if (info?.isFile()) return { contents: await readFile(filePath), contentType: contentTypeOf(filePath) };
  }
  return undefined;
}
