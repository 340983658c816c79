// A small typed caller of the management API for tests and benchmarks.

import { readFile } from 'node:fs/promises';
import { bundleFunction } from '@kubefn/builder';
import type { FunctionSpecInput } from '@kubefn/platform';

export class Api {
  constructor(
    readonly url: string,
    readonly token: string,
  ) {}

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

  /** Bundles a function directory and uploads it; returns the image reference. */
  async upload(dir: string, handler: string): Promise<string> {
    const bundle = await bundleFunction({ dir, handler });
    const bytes = await readFile(bundle.file);
    const res = await this.call('PUT', `/system/bundles/${bundle.digest}`, undefined, bytes);
    if (res.status !== 201) throw new Error(`upload: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { image: string }).image;
  }

  async deploy(spec: FunctionSpecInput & { image: string }): Promise<void> {
    const res = await this.call('PUT', '/system/functions', spec);
    if (res.status === 404) await this.ok('POST', '/system/functions', spec);
    else if (!res.ok) throw new Error(`deploy: ${res.status} ${await res.text()}`);
  }

  async status(name: string): Promise<{ replicas: number; availableReplicas: number; invocationCount: number }> {
    return (await this.ok('GET', `/system/function/${name}`)) as { replicas: number; availableReplicas: number; invocationCount: number };
  }
}
