import { defineConfig } from 'vite';

// A static build: relative asset URLs (base './') so dist/ works from any static host and path.
export default defineConfig({
  base: './',
  build: {
    target: 'es2022',
    outDir: 'dist',
    // tfjs and onnxruntime-web are large by nature; the page splits them into lazily loaded chunks.
    chunkSizeWarningLimit: 4096,
  },
  // onnxruntime-web loads its wasm glue at run time from env.wasm.wasmPaths (public/ort/).
  optimizeDeps: { exclude: ['onnxruntime-web'] },
});
