// The whoami fixture (tests/fixtures/whoami) as the warm pool tests call it: which process or
// container answered, and what of the environment it sees.

import assert from 'node:assert/strict';
import path from 'node:path';
import { request } from 'undici';
import type { Api } from './api.js';
import { repoRoot } from './platform-process.js';

export const whoamiDir = path.join(repoRoot, 'tests', 'fixtures', 'whoami');

export interface Whoami {
  pid: number;
  /** Its hostname: a container's own. */
  host: string;
  uid: number | null;
  fn: string | null;
  marker: string | null;
  markers: string[];
  /** Calls answered by this process, this one included. */
  calls: number;
}

/** Calls `name` through the gateway; fails unless it answers 200. */
export async function callWhoami(api: Api, name: string): Promise<Whoami> {
  const res = await request(`${api.url}/function/${name}`);
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, `${name} answered ${res.statusCode}: ${text}`);
  return JSON.parse(text) as Whoami;
}

/** The last 500 lines of `name`'s log, the platform's own lines among them. */
export async function logText(api: Api, name: string): Promise<string> {
  return (await api.call('GET', `/system/logs?name=${name}&follow=false&tail=500`)).text();
}
