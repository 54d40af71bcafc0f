export const TRAIN_COUNT: number;
export const TEST_COUNT: number;
export function mnistSubset(): Buffer;
