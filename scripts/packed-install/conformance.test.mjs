// The vitest helper, as an adapter author uses it.

import { describeConformance } from '@accsgd/conformance/vitest';
import { conformanceAdapter } from '@accsgd/core/conformance';

describeConformance(() => conformanceAdapter({ dtype: 'float32' }), { requireClosedLoop: true });
describeConformance(() => conformanceAdapter({ dtype: 'float64' }), { title: 'CPU optimizer, float64' });
