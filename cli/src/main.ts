// The `fn` program: global options, every command, and main(argv) returning the exit code.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { defaultPipelining, defaultWarmPoolMemoryBytes, defaultWarmPoolSize } from '@kubefn/platform/core';
import { App, processIo, type Io } from './app.js';
import { collect, parseCount, parseSize } from './args.js';
import { registerBuild } from './build-command.js';
import { defaultGateway, envVars } from './config.js';
import { registerDeploy } from './deploy-command.js';
import { exitCodeFor, formatError, usageError } from './errors.js';
import { registerFunctions } from './functions.js';
import { registerInit } from './init.js';
import { registerInstall } from './install-command.js';
import { registerInvoke } from './invoke.js';
import { registerLogs } from './logs.js';
import { registerPublish } from './publish.js';
import { registerSecret } from './secret.js';
import type { UpOptions } from './up.js';
import type { AutoscalerConfig } from '@kubefn/autoscaler';

export const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Builds the commander program; errors surface as thrown CommanderError (exitOverride), never process.exit. */
export function createProgram(app: App): Command {
  const { io } = app;
  const program = new Command('fn')
    .description('kubefn: deploy JavaScript/TypeScript functions and call them over HTTP; they scale from zero')
    .version(version, '--version', 'print the fn version')
    .helpOption('-h, --help', 'show help')
    .option('--gateway <url>', `gateway URL (env ${envVars.gateway}; default ${defaultGateway})`)
    .option('--token <token>', `management API token (env ${envVars.token}; default: read <home>/token written by \`fn up\`)`)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
    })
    .showHelpAfterError('(run with --help for usage)')
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      `
Getting started:
  $ fn up &                      # gateway on http://127.0.0.1:8080, token in ~/.kubefn/token
  $ fn init hello && cd hello
  $ fn deploy
  $ fn invoke hello -q name=Ada
  $ fn logs hello -f
  $ fn publish orders.new '{"id":1}' --reply   # NATS through the gateway (fn up runs a nats-server)

Environment: ${envVars.gateway}, ${envVars.token}, ${envVars.home} (default ~/.kubefn).`,
    );

  registerInit(program, app);
  registerBuild(program, app);
  registerDeploy(program, app);
  registerInvoke(program, app);
  registerPublish(program, app);
  registerFunctions(program, app);
  registerLogs(program, app);
  registerSecret(program, app);
  registerUp(program, app);
  registerInstall(program, app);
  return program;
}

interface UpFlags {
  port: string;
  host: string;
  home?: string;
  deploy?: string[];
  json?: boolean;
  driver: string;
  registry?: string;
  base?: string;
  insecureRegistry?: string[];
  podmanNetwork: string;
  autoscalerConfig?: string;
  /** A URL, false for --no-nats, undefined when neither is given. */
  nats?: string | false;
  maxBody: string;
  /** False for --no-isolation. */
  isolation: boolean;
  pool: string;
  poolMemory?: string;
  /** False for --no-request-log. */
  requestLog: boolean;
  workers: string;
  pipelining: string;
}

/** Most gateway workers `fn up --workers` takes, per CPU: past a few per CPU they only add context switches. */
const maxWorkersPerCpu = 4;

function registerUp(program: Command, app: App): void {
  program
    .command('up')
    .description('run kubefn on this machine: gateway, autoscaler, build service and functions as local processes or containers')
    .option('--port <port>', 'gateway port', '8080')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--home <dir>', `state directory: functions, bundles, token, image cache (env ${envVars.home}; default ~/.kubefn)`)
    .option('--deploy <dir...>', 'deploy these function directories once the gateway is up')
    .option('--driver <kind>', 'what runs replicas: "process" (node child processes) or "podman" (containers)', 'process')
    .option('--registry <host:port>', 'podman driver: push built images here (default: load them into podman directly)')
    .option('--base <image>', 'podman driver: base image for functions built by the platform (default "host": this machine\'s node)')
    .option('--insecure-registry <host:port>', 'talk plain HTTP to this registry (loopback ones always are; repeatable)', collect)
    .option('--podman-network <mode>', 'podman driver: "bridge" (ports published on 127.0.0.1) or "host" (faster start, no isolation)', 'bridge')
    .option('--autoscaler-config <file>', 'cluster autoscaler defaults (Knative config-autoscaler keys, e.g. deploy/autoscaler-config.yaml), applied again whenever the file changes; a function\'s scale spec wins')
    .option('--nats <url>', 'NATS server for nats triggers, output subjects and `fn publish` (default: start nats-server from PATH when first needed, store in <home>/nats)')
    .option('--no-nats', 'run without NATS: no local nats-server, nats triggers are refused')
    .option('--max-body <size>', 'largest request body (and event message) a function is sent, e.g. 1Mi', '32Mi')
    .option('--no-isolation', 'process driver as root: run every function as root too, not as a user of its own')
    .option('--pool <count>', 'warm runtimes (process driver) or containers (podman) kept ready for functions scaling from zero (0 turns the pool off)', String(defaultWarmPoolSize))
    .option('--pool-memory <size>', `most memory the idle warm runtimes or containers may hold (default ${defaultWarmPoolMemoryBytes / 1024 / 1024}Mi)`)
    .option('--pipelining <calls>', 'most GET and HEAD calls to one path, arriving together, that share one connection to a replica answering quickly, answered in order (1: a connection each)', String(defaultPipelining))
    .option('--workers <count>', `gateway processes serving the port (1 to ${maxWorkersPerCpu} per CPU); this process keeps the driver, autoscaler and build service`, '1')
    .option('--json', 'log one JSON object per event on stdout, a line per gateway request among them')
    .option('--no-request-log', 'with --json: leave out the line per gateway request')
    .addHelpText(
      'after',
      `
Runs until Ctrl-C; deployed functions come back on the next \`fn up\`.
Without --nats, \`fn up\` starts its own nats-server (JetStream on, store in <home>/nats, on a
free port of 127.0.0.1) when nats-server is on PATH, and stops it when it stops.
With --driver podman each replica is a container of the function's OCI image; \`fn deploy\`
then sends the source to the platform's build service (or, with --registry, builds and
pushes the image itself). podman must work for the current user.
The process driver keeps a pool of warm runtimes (node processes holding no function yet):
a function scaling from zero takes one and skips the process start. \`fn describe\` says whether
a function's replicas start from the pool, and why not when they do not.
With --workers N, N gateway processes accept calls on the one port and split each function's
containerConcurrency among them; this process keeps the replicas, the autoscaler, the build
service and the management API (the workers pass it on), and starts again a worker that dies.
Run as root, the process driver gives each function a user of its own and a private directory:
a function cannot read the state directory, the token, or other functions' files and
environments. Run as any other user, every function runs as that user: use --driver podman
for code you do not trust.

Examples:
  $ fn up
  $ fn up --port 9090 --home ./.kubefn-dev
  $ fn up --deploy examples/hello examples/json-api
  $ fn up --driver podman --deploy examples/hello
  $ fn up --autoscaler-config deploy/autoscaler-config.yaml
  $ fn up --workers 4
  $ fn up --nats nats://127.0.0.1:4222
  $ fn up --no-nats
  $ fn up --driver podman --registry 127.0.0.1:5000 --base 127.0.0.1:5000/library/node:20
  $ KUBEFN_TOKEN=secret fn up --host 0.0.0.0`,
    )
    .action(async (opts: UpFlags, command: Command) => {
      const port = parseCount(opts.port, '--port', 0, 65_535);
      const workers = parseCount(opts.workers, '--workers', 1, maxWorkersPerCpu * availableParallelism());
      const config = app.config(command);
      if (opts.driver !== 'process' && opts.driver !== 'podman') throw usageError(`--driver must be "process" or "podman", got ${JSON.stringify(opts.driver)}`);
      if (opts.podmanNetwork !== 'bridge' && opts.podmanNetwork !== 'host') {
        throw usageError(`--podman-network must be "bridge" or "host", got ${JSON.stringify(opts.podmanNetwork)}`);
      }
      if (opts.driver === 'process' && (opts.registry || opts.base)) throw usageError('--registry and --base need --driver podman');
      // Validated before anything starts: a bad file is an error naming its keys, not a half-started platform.
      let autoscalerConfig: AutoscalerConfig | undefined;
      const autoscalerConfigFile = opts.autoscalerConfig !== undefined ? path.resolve(app.io.cwd, opts.autoscalerConfig) : undefined;
      if (autoscalerConfigFile !== undefined) {
        const { loadAutoscalerConfig } = await import('@kubefn/autoscaler');
        autoscalerConfig = await loadAutoscalerConfig(autoscalerConfigFile);
      }
      const options: UpOptions = {
        port,
        host: opts.host,
        home: opts.home ? path.resolve(app.io.cwd, opts.home) : config.home,
        json: opts.json === true,
        requestLog: opts.json === true && opts.requestLog !== false,
        driver: opts.driver,
        podman: { network: opts.podmanNetwork },
        ...(opts.registry ? { registry: opts.registry } : {}),
        ...(opts.base ? { base: opts.base } : {}),
        insecureRegistries: opts.insecureRegistry ?? [],
        // Watched while fn up runs: a valid change applies without a restart.
        ...(autoscalerConfig ? { autoscalerConfig, autoscalerConfigFile } : {}),
        ...(typeof opts.nats === 'string' ? { nats: opts.nats } : { localNats: opts.nats !== false }),
        maxBodyBytes: parseSize(opts.maxBody, '--max-body'),
        ...(opts.isolation === false ? { isolation: false } : {}),
        ...(workers > 1 ? { workers } : {}),
        pipelining: parseCount(opts.pipelining, '--pipelining', 1, 256),
        pool: { size: parseCount(opts.pool, '--pool', 0, 64), ...(opts.poolMemory !== undefined ? { memoryBytes: parseSize(opts.poolMemory, '--pool-memory') } : {}) },
      };
      // A token from the token file is the previous run's; let `fn up` decide whether to reuse it.
      if (config.token !== undefined && config.tokenSource !== 'file') options.token = config.token;
      if (opts.deploy?.length) {
        options.deploy = opts.deploy.map((dir) => path.resolve(app.io.cwd, dir));
        const { GatewayClient } = await import('./client.js');
        const { deployFunction } = await import('./deploy.js');
        options.deployer = async (dir, gateway, token) => {
          const client = new GatewayClient({ gateway, token, userAgent: `kubefn-cli/${version}` });
          const result = await deployFunction(client, dir);
          if (!opts.json) app.note(`deployed ${result.name}: ${result.url}`);
        };
      }
      // Loaded on demand: the local platform (gateway, autoscaler, driver) is only needed here,
      // and every other command starts faster without it.
      const { runUp } = await import('./up.js');
      app.exitCode = await runUp(options);
    });
}

/**
 * Runs `fn` with `argv` (as process.argv: node, script, args...). Returns the exit code:
 * 0 ok, 1 failed, 2 usage error, 130 interrupted.
 */
export async function main(argv: readonly string[] = process.argv, io?: Io): Promise<number> {
  const real = io ? undefined : processIo();
  const theIo = io ?? (real as { io: Io }).io;
  const app = new App(theIo, version);
  try {
    await createProgram(app).parseAsync([...argv], { from: 'node' });
    return app.exitCode;
  } catch (err) {
    // Commander already printed its message (and the help hint) through configureOutput.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    theIo.stderr.write(formatError(err, { stack: Boolean(theIo.env.KUBEFN_DEBUG) }));
    return exitCodeFor(err);
  } finally {
    real?.dispose();
  }
}
