// The image flags of `fn build` and `fn deploy` (--registry, --base, --tag, --insecure-registry), declared
// without loading the builder: registering them is part of every `fn` start, building only of some.

import path from 'node:path';
import type { Command } from 'commander';
import { collect } from './args.js';

/** @kubefn/builder's `hostBaseName` and `defaultBase`, repeated for the help text (a test keeps them equal). */
export const hostBaseName = 'host';
export const defaultBase = 'docker.io/library/node:20-bookworm-slim';

export interface ImageFlags {
  registry?: string;
  base?: string;
  tag?: string;
  insecureRegistry?: string[];
}

export function addImageOptions(command: Command): Command {
  return command
    .option('--registry <host[:port][/path]>', 'build an OCI image and push it here, e.g. 127.0.0.1:5000 or ghcr.io/acme')
    .option('--base <image>', `base image: a reference, "${hostBaseName}" (this machine's node) or "scratch" (default ${defaultBase})`)
    .option('--tag <tag>', 'tag to push (default "latest"); specs always name the image by digest')
    .option('--insecure-registry <host:port>', 'talk plain HTTP to this registry (loopback ones always are; repeatable)', collect);
}

/** Where the host base and downloaded base layers are kept between builds: <home>/cache. */
export function imageCacheDir(home: string): string {
  return path.join(home, 'cache');
}
