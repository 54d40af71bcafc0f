import { describeConformance } from '@accsgd/conformance/vitest';
import { conformanceAdapter } from './conformance.js';

// One test per check, named "AccSGD conformance > example/float32 > <check>".
describeConformance(() => conformanceAdapter(), { requireClosedLoop: true });
