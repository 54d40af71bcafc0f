import {
  AccSGDConfigError,
  type Hyperparams,
  type NonFinitePolicy,
  nonFinitePolicy,
  resolveHyperparams,
  validateHyperparams,
} from '@accsgd/core';
import type { serialization } from '@tensorflow/tfjs-core';
import { type LearningRateSchedule, readConfig, scheduledLr } from './input.js';

type OtherHyperparams = Partial<Omit<Hyperparams, 'lr'>>;

/** A parameter group: variables (by name) that share hyperparameters. Omitted ones are inherited. */
export interface AccSGDGroupConfig extends OtherHyperparams {
  /** Names of the tf.Variables in this group. */
  params: string[];
  /** Names these variables have in the state file and in getWeights(); default: the variable names. */
  names?: string[];
  lr?: number | LearningRateSchedule;
}

export interface AccSGDConfig extends OtherHyperparams {
  /** Short step, as for plain SGD; or a schedule giving it per iteration. */
  lr: number | LearningRateSchedule;
  /** NaN or infinity in a gradient: 'error' (default) rejects the step, 'skip-step' ignores it, 'allow' applies it. */
  nonFinite?: NonFinitePolicy;
  /**
   * Parameter groups. Without it, every variable the optimizer is given joins one group with the
   * top-level hyperparameters. With it, every variable must be listed in a group, and the
   * top-level hyperparameters are the defaults the groups inherit.
   */
  groups?: AccSGDGroupConfig[];
  /** Use the backend's fused 'AccSGDUpdate' kernel when it has one (default true); false: tfjs ops. */
  fused?: boolean;
}

export const CONFIG_KEYS = ['lr', 'kappa', 'xi', 'smallConst', 'weightDecay', 'nonFinite', 'groups', 'fused'];
const GROUP_KEYS = ['lr', 'kappa', 'xi', 'smallConst', 'weightDecay', 'params', 'names'];

/** Variables are float32, so every accepted set of hyperparameters must fit float32 (SPEC §1). */
export const F32 = { precision: 'float32' } as const;

/** One group of a checked config: its hyperparameters now, its schedule, its variables and state names. */
export interface ParsedGroup {
  hyperparams: Hyperparams;
  schedule: LearningRateSchedule | null;
  variables: string[];
  names: string[];
}

export interface ParsedConfig {
  nonFinite: NonFinitePolicy;
  fused: boolean;
  /** The top-level hyperparameters (the defaults groups inherit). */
  defaults: Hyperparams;
  defaultSchedule: LearningRateSchedule | null;
  /** The groups as configured; null without `groups` (one group that grows as variables are seen). */
  groups: ParsedGroup[] | null;
  /** The `groups` option, for messages. */
  groupConfigs: AccSGDGroupConfig[];
}

/** Reads the constructor's argument once (a getter or Proxy trap that throws is an AccSGDConfigError) and checks it. */
export function parseConfig(input: AccSGDConfig): ParsedConfig {
  const config = readConfig(input) as AccSGDConfig;
  if (typeof config !== 'object' || config === null)
    throw new AccSGDConfigError('config', config, 'an object { lr, ... }');
  for (const key of Object.keys(config)) {
    if (!CONFIG_KEYS.includes(key))
      throw new AccSGDConfigError(
        key,
        (config as unknown as Record<string, unknown>)[key],
        `one of ${CONFIG_KEYS.join(', ')}`,
        `is not an AccSGD option (expected one of ${CONFIG_KEYS.join(', ')})`,
      );
  }
  const { lr, nonFinite, groups, fused = true, ...others } = config;
  const policy = nonFinitePolicy(nonFinite);
  if (typeof fused !== 'boolean') throw new AccSGDConfigError('fused', fused, 'true or false');
  const defaultSchedule = typeof lr === 'function' ? lr : null;
  const defaults = resolveHyperparams({ ...others, lr: scheduledLr(lr, 0, 'lr') });
  const parsed = { nonFinite: policy, fused, defaults, defaultSchedule, groupConfigs: groups ?? [] };
  // tfjs variables are float32: the multipliers must fit float32 (SPEC §1).
  if (groups === undefined)
    return { ...parsed, defaults: validateHyperparams({ ...defaults }, F32), groups: null };
  if (!Array.isArray(groups) || groups.length === 0)
    throw new AccSGDConfigError('groups', groups, 'a non-empty array of { params: [...names] }');
  const variables = new Set<string>();
  const stateNames = new Set<string>();
  const parsedGroups = groups.map((group, g): ParsedGroup => {
    if (typeof group !== 'object' || group === null || !Array.isArray(group.params)) {
      throw new AccSGDConfigError(`groups[${g}]`, group, '{ params: [variable names], ... }');
    }
    const { params, names, lr: groupLr, ...hyper } = group;
    const schedule = typeof groupLr === 'function' ? groupLr : groupLr === undefined ? defaultSchedule : null;
    const lrNow = groupLr === undefined ? defaults.lr : scheduledLr(groupLr, 0, `groups[${g}].lr`);
    const hyperparams = validateHyperparams(
      resolveHyperparams({ ...hyper, lr: lrNow }, defaults, GROUP_KEYS),
      F32,
    );
    if (names !== undefined && (!Array.isArray(names) || names.length !== params.length)) {
      throw new AccSGDConfigError(
        `groups[${g}].names`,
        names,
        `an array of ${params.length} names, one per variable`,
      );
    }
    const stateNamesOfGroup = params.map((variableName, k) => {
      const stateName = names?.[k] ?? variableName;
      if (typeof variableName !== 'string')
        throw new AccSGDConfigError(`groups[${g}].params[${k}]`, variableName, 'a variable name');
      if (typeof stateName !== 'string')
        throw new AccSGDConfigError(`groups[${g}].names[${k}]`, stateName, 'a string');
      if (variables.has(variableName))
        throw new AccSGDConfigError(
          `groups[${g}].params[${k}]`,
          variableName,
          'each variable in one group only',
          'is listed twice',
        );
      if (stateNames.has(stateName))
        throw new AccSGDConfigError(`groups[${g}].names[${k}]`, stateName, 'a unique name');
      variables.add(variableName);
      stateNames.add(stateName);
      return stateName;
    });
    return { hyperparams, schedule, variables: [...params], names: stateNamesOfGroup };
  });
  return { ...parsed, groups: parsedGroups };
}

/** The five hyperparameters as a config dict. */
export function hyperparamsConfig(h: Hyperparams): serialization.ConfigDict {
  return { lr: h.lr, kappa: h.kappa, xi: h.xi, smallConst: h.smallConst, weightDecay: h.weightDecay };
}

/**
 * A saved config (getConfig's) back as an AccSGDConfig: only our keys (tfjs-layers adds its own,
 * customObjects, to a config it deserialises), names unwrapped from `{ name }`. Anything that is
 * not an object, or groups that are not an array of objects, go to the constructor as they are,
 * which rejects them.
 */
export function configFromDict(config: serialization.ConfigDict): unknown {
  const read = readConfig(config);
  if (typeof read !== 'object' || read === null) return read;
  const { groups, ...rest } = Object.fromEntries(
    Object.entries(read).filter(([k]) => CONFIG_KEYS.includes(k)),
  ) as Record<string, unknown>;
  const unwrap = (list: unknown) =>
    Array.isArray(list)
      ? list.map((x) => (typeof x === 'object' && x !== null ? (x as { name: string }).name : x))
      : list;
  const restored = { ...rest } as unknown as AccSGDConfig;
  if (groups !== undefined) {
    restored.groups = (
      Array.isArray(groups)
        ? groups.map((g: unknown) =>
            typeof g === 'object' && g !== null && !Array.isArray(g)
              ? {
                  ...g,
                  params: unwrap((g as Record<string, unknown>).params),
                  names: unwrap((g as Record<string, unknown>).names),
                }
              : g,
          )
        : groups
    ) as AccSGDGroupConfig[];
  }
  return restored;
}
