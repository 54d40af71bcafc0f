import { findNodeWebGPU } from '@accsgd/conformance';
import { describeConformance } from '@accsgd/conformance/vitest';
import { conformanceAdapter } from './conformance.js';

type Adapter = Awaited<ReturnType<typeof conformanceAdapter>>;

// The full conformance suite in Node, on Dawn (SwiftShader when there is no GPU). Each adapter owns
// its device, destroyed by dispose() after the suite.
const node = await findNodeWebGPU();
let plain: Adapter | undefined;
describeConformance(async () => (plain = await conformanceAdapter()), {
  title: `webgpu-kernel conformance in Node (${node.available ? node.description : 'no adapter'})`,
  requireClosedLoop: true,
  ...(node.available ? {} : { unavailable: node.reason }),
  dispose: () => plain?.dispose(),
});

// Again with at most 2 workgroups per dimension: windows of 2,048 elements (2 x 2 workgroups of
// 512), so golden cases with long tensors also run through the split-binding and 2-D folding paths.
let folded: Adapter | undefined;
describeConformance(async () => (folded = await conformanceAdapter({ maxWorkgroupsPerDimension: 2 })), {
  title: 'webgpu-kernel conformance in Node, split bindings and folded dispatches',
  requireClosedLoop: true,
  ...(node.available ? {} : { unavailable: node.reason }),
  dispose: () => folded?.dispose(),
});
