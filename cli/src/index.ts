// The CLI as a library: the gateway client, fn.yaml loading and the deploy steps, for tests and tools.

export { main, createProgram, version } from './main.js';
export { App, processIo, type Io, type GlobalOptions } from './app.js';
export {
  GatewayClient,
  ndjsonLines,
  unauthorizedHint,
  type FunctionInfo,
  type GatewayClientOptions,
  type GatewayInfo,
  type InvokeRequest,
  type LogEntry,
  type LogQuery,
} from './client.js';
export { resolveConfig, resolveHome, normalizeGateway, defaultGateway, envVars, type Config, type ConfigInput } from './config.js';
export { loadFnYaml, fnYamlName, type LoadedFunction, type SpecOverrides } from '@kubefn/platform';
export { buildFunction, type Built } from './build.js';
export { deployFunction, waitForFunction, type DeployOptions, type DeployResult } from './deploy.js';
export { initFunction, type InitOptions, type InitResult } from './init.js';
export { scaffold, type Lang } from './templates.js';
export { CliError, cliErrorCatalogue, exitCodeFor, formatError, type CliErrorCode } from './errors.js';
export { formatTable, formatAge, formatBytes, shortImage } from './output.js';
export { renderKustomization, replaceImage, defaultDeployDir, platformImageName, generatedToken } from './install.js';
