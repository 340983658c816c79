// The embedded platform: gateway + autoscaler + process driver in one process, state on disk.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Autoscaler, type AutoscalerLogger } from '@kubefn/autoscaler';
import { createGateway } from '@kubefn/gateway';
import { BundleStore, KubefnError, ProcessDriver } from '@kubefn/platform';

export interface EmbeddedOptions {
  /** State directory: functions, bundles, token. */
  home: string;
  port: number;
  host: string;
  /** Use this token instead of the one kept in `<home>/token`. */
  token?: string;
  logger?: AutoscalerLogger;
}

export interface EmbeddedPlatform {
  url: string;
  token: string;
  driver: ProcessDriver;
  autoscaler: Autoscaler;
  close(): Promise<void>;
}

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedPlatform> {
  await mkdir(options.home, { recursive: true, mode: 0o700 });
  const token = options.token ?? (await loadOrCreateToken(options.home));
  const bundles = await BundleStore.open(path.join(options.home, 'bundles'));
  const driver = new ProcessDriver({ bundles, stateDir: options.home });
  const gateway = createGateway({ driver, bundles, token });
  const autoscaler = new Autoscaler({ target: driver, sources: [gateway.stats], ...(options.logger ? { logger: options.logger } : {}) });
  gateway.onNoReplica = (name) => {
    autoscaler.poke(name).catch((err: unknown) => options.logger?.warn('scale from zero failed', { function: name, err: String(err) }));
  };
  let url: string;
  try {
    url = await gateway.app.listen({ port: options.port, host: options.host });
  } catch (err) {
    await driver.close();
    if ((err as { code?: string }).code === 'EADDRINUSE') {
      throw new KubefnError('START_FAILED', `port ${options.port} on ${options.host} is in use`, {
        hint: 'is another `fn up` running? stop it, or pass --port',
        cause: err,
      });
    }
    throw err;
  }
  // Bring back what was deployed before, now that the gateway can route to it.
  await driver.restore();
  autoscaler.start();
  let closing: Promise<void> | undefined;
  return {
    url,
    token,
    driver,
    autoscaler,
    close: () =>
      (closing ??= (async () => {
        await autoscaler.stop();
        await gateway.close();
        await driver.close();
      })()),
  };
}

async function loadOrCreateToken(home: string): Promise<string> {
  const file = path.join(home, 'token');
  try {
    const t = (await readFile(file, 'utf8')).trim();
    if (t) return t;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  const t = randomBytes(24).toString('base64url');
  await writeFile(file, t + '\n', { mode: 0o600 });
  return t;
}
