// Runtime configuration: typed defaults, and the one place the environment is read and validated.

import { hostname } from 'node:os';
import { runtimeEnv } from '@kubefn/platform/runtime-contract';
import { logLevels, type LogLevel } from './logger.js';

/** Not part of the platform contract: a knob for whoever runs the replica. */
export const logLevelEnv = 'KUBEFN_LOG_LEVEL';

export interface RuntimeConfig {
  /** Function port; 0 picks a free one. */
  port: number;
  /** Admin port (healthz, readyz, metrics); 0 picks a free one. */
  adminPort: number;
  host: string;
  functionName: string;
  /** Replica id, for logs. */
  instance: string;
  /** Per-call deadline, in ms. */
  timeoutMs: number;
  /** Max in-flight calls; 0 = no cap. */
  concurrency: number;
  /** How long a drain waits for in-flight calls before cutting them off, in ms. */
  drainMs: number;
  /**
   * How long a draining replica keeps its port open and serves what still arrives (each answer
   * with Connection: close) before it closes idle connections, in ms: the time its router needs to
   * stop sending calls here. Skipped when no connection is open.
   */
  drainLingerMs: number;
  /** Largest request body, in bytes. */
  maxBodyBytes: number;
  logLevel: LogLevel;
}

export const defaultPort = 8080;
export const defaultAdminPort = 8081;
export const defaultHost = '0.0.0.0';
export const defaultTimeoutMs = 30_000;
/** Added to the call timeout for the default drain: a call that started just before SIGTERM may still finish. */
export const drainGraceMs = 5_000;
/** Default drain linger: the platform drivers take a replica out of rotation before they stop it, so calls already on their way arrive within this. */
export const defaultDrainLingerMs = 500;
/** 6 MiB, the same request limit AWS Lambda has. */
export const defaultMaxBodyBytes = 6 * 1024 * 1024;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'INVALID_CONFIG';
}

/** Fills in defaults; `drainMs` follows `timeoutMs` unless given. */
export function resolveConfig(given: Partial<RuntimeConfig> = {}): RuntimeConfig {
  const timeoutMs = given.timeoutMs ?? defaultTimeoutMs;
  const config: RuntimeConfig = {
    port: given.port ?? defaultPort,
    adminPort: given.adminPort ?? defaultAdminPort,
    host: given.host ?? defaultHost,
    functionName: given.functionName || 'function',
    instance: given.instance || hostname(),
    timeoutMs,
    concurrency: given.concurrency ?? 0,
    drainMs: given.drainMs ?? timeoutMs + drainGraceMs,
    drainLingerMs: given.drainLingerMs ?? defaultDrainLingerMs,
    maxBodyBytes: given.maxBodyBytes ?? defaultMaxBodyBytes,
    logLevel: given.logLevel ?? 'info',
  };
  const problems: string[] = [];
  checkInt(problems, 'port', config.port, 0, 65535);
  checkInt(problems, 'adminPort', config.adminPort, 0, 65535);
  checkInt(problems, 'timeoutMs', config.timeoutMs, 1, 2 ** 31 - 1);
  checkInt(problems, 'concurrency', config.concurrency, 0, 2 ** 31 - 1);
  checkInt(problems, 'drainMs', config.drainMs, 0, 2 ** 31 - 1);
  checkInt(problems, 'drainLingerMs', config.drainLingerMs, 0, 2 ** 31 - 1);
  checkInt(problems, 'maxBodyBytes', config.maxBodyBytes, 0, Number.MAX_SAFE_INTEGER);
  if (!logLevels.includes(config.logLevel)) problems.push(`logLevel must be one of ${logLevels.join(', ')}`);
  if (problems.length) throw new ConfigError(`invalid runtime options: ${problems.join('; ')}`);
  return config;
}

/** Reads the platform's environment variables (see runtime-contract.ts); errors name the variable. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  const problems: string[] = [];
  const int = (name: string, min: number, max: number): number | undefined => {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === '') return undefined;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be an integer from ${min} to ${max}`);
      return undefined;
    }
    return value;
  };
  const given: Partial<RuntimeConfig> = {
    port: int(runtimeEnv.port, 0, 65535),
    adminPort: int(runtimeEnv.adminPort, 0, 65535),
    timeoutMs: int(runtimeEnv.timeoutMs, 1, 2 ** 31 - 1),
    concurrency: int(runtimeEnv.concurrency, 0, 2 ** 31 - 1),
    drainMs: int(runtimeEnv.drainMs, 0, 2 ** 31 - 1),
    drainLingerMs: int(runtimeEnv.drainLingerMs, 0, 2 ** 31 - 1),
    maxBodyBytes: int(runtimeEnv.maxBodyBytes, 0, Number.MAX_SAFE_INTEGER),
    functionName: env[runtimeEnv.functionName] || undefined,
    instance: env[runtimeEnv.instance] || undefined,
    host: env[runtimeEnv.host] || undefined,
  };
  const level = env[logLevelEnv]?.trim().toLowerCase();
  if (level) {
    if ((logLevels as readonly string[]).includes(level)) given.logLevel = level as LogLevel;
    else problems.push(`${logLevelEnv}=${JSON.stringify(level)} must be one of ${logLevels.join(', ')}`);
  }
  if (problems.length) throw new ConfigError(`invalid runtime environment: ${problems.join('; ')}`);
  return resolveConfig(given);
}

function checkInt(problems: string[], name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
}
