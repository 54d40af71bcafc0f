export interface FencedBlock {
  lang: string;
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
}
export interface CodeBlock extends FencedBlock {
  /** The block starts with `// excerpt: ...` and is not run. */
  excerpt: boolean;
}
export const EXCERPT: RegExp;
export function fencedBlocks(markdown: string): FencedBlock[];
export function codeBlocks(path: string): CodeBlock[];
export function makeProject(packageRoot: string, links?: Record<string, string>): string;
export function removeProject(dir: string): void;
export function runModule(
  dir: string,
  file: string,
  code: string,
  options?: { env?: NodeJS.ProcessEnv; timeout?: number },
): Promise<{ stdout: string; stderr: string }>;
export function run(
  command: string,
  args: string[],
  dir: string,
  env?: NodeJS.ProcessEnv,
  timeout?: number,
): Promise<{ stdout: string; stderr: string }>;
