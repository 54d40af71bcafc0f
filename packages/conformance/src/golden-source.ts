/**
 * Where the runner gets the golden cases. In Node: the committed files under vectors/. Bundlers
 * that target browsers swap this module for golden-source.web.ts (package.json "browser" field),
 * which decodes the same bytes from a bundled module, so the runner itself has no Node imports.
 */
export { listGoldenCases, loadGoldenCase } from './vectors.js';
