// The management API for tests and benchmarks: the CLI's GatewayClient, plus raw calls for
// asserting on status codes.

import { bundleFunction, packApp } from '@kubefn/builder';
import { GatewayClient, type FunctionInfo } from '@kubefn/cli';
import { parseFunctionSpec, type FunctionSpecInput, type WarmPoolStats } from '@kubefn/platform';

export class Api {
  /** The CLI's client, for everything but raw status checks. */
  readonly client: GatewayClient;

  constructor(
    readonly url: string,
    readonly token: string,
  ) {
    this.client = new GatewayClient({ gateway: url, token });
  }

  async call(method: string, path: string, body?: unknown, raw?: Uint8Array): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    let payload: string | Uint8Array | undefined;
    if (raw) {
      headers['content-type'] = 'application/octet-stream';
      payload = raw;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    return fetch(this.url + path, { method, headers, body: payload ?? null });
  }

  async ok(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await this.call(method, path, body);
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }

  /** Bundles a function directory and uploads it with its files, as `fn deploy` does; returns the image reference. */
  async upload(dir: string, handler: string): Promise<string> {
    const app = await packApp(await bundleFunction({ dir, handler }));
    return (await this.client.uploadApp(app.digest, app.tar)).image;
  }

  /** Creates or updates, as `fn deploy` does. */
  async deploy(spec: FunctionSpecInput & { image: string }): Promise<void> {
    await this.client.deployFunction(parseFunctionSpec(spec));
  }

  async status(name: string): Promise<FunctionInfo> {
    return this.client.getFunction(name);
  }

  /** The platform's warm pool (GET /system/info), undefined when it keeps none. */
  async pool(): Promise<WarmPoolStats | undefined> {
    const info = (await this.ok('GET', '/system/info')) as { kubefn?: { pool?: WarmPoolStats } };
    return info.kubefn?.pool;
  }
}
