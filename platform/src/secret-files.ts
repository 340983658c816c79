// The secret store of the process and podman drivers: one file per secret under the state
// directory, encrypted at rest with AES-256-GCM under a key kept beside it, every file mode 0600.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { KubefnError } from './errors.js';
import { checkSecret, type SecretStore } from './secrets.js';
import { validateName } from './names.js';

/** File layout: magic, 12-byte IV, 16-byte GCM tag, ciphertext. */
const magic = Buffer.from('kfs1');
const ivBytes = 12;
const tagBytes = 16;
const keyBytes = 32;
const suffix = '.secret';

export class FileSecretStore implements SecretStore {
  /** Where the encrypted files are: `<stateDir>/secrets`. */
  readonly dir: string;
  /** The AES-256 key: `<stateDir>/secrets.key`, 32 random bytes made on first use. */
  readonly keyFile: string;
  #key: Promise<Buffer> | undefined;

  constructor(stateDir: string) {
    const root = path.resolve(stateDir);
    this.dir = path.join(root, 'secrets');
    this.keyFile = path.join(root, 'secrets.key');
  }

  async list(): Promise<string[]> {
    const entries = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    return entries.filter((e) => e.endsWith(suffix)).map((e) => e.slice(0, -suffix.length)).sort();
  }

  async create(name: string, value: Uint8Array): Promise<void> {
    checkSecret(name, value);
    const temp = await this.#writeTemp(name, value);
    try {
      // link() fails when the target exists, so two creates of one name cannot both win.
      await link(temp, this.#file(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new KubefnError('ALREADY_EXISTS', `secret "${name}" already exists`, { hint: 'update it instead (PUT, or `fn secret create --update`)' });
      }
      throw err;
    } finally {
      await unlink(temp).catch(() => {});
    }
  }

  async update(name: string, value: Uint8Array): Promise<void> {
    checkSecret(name, value);
    await this.#mustExist(name);
    const temp = await this.#writeTemp(name, value);
    await rename(temp, this.#file(name));
  }

  async remove(name: string): Promise<void> {
    validateName(name, 'secret');
    await unlink(this.#file(name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw notFound(name);
      throw err;
    });
  }

  async read(names: readonly string[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    for (const name of names) {
      validateName(name, 'secret');
      let data: Buffer;
      try {
        data = await readFile(this.#file(name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      out.set(name, this.#decrypt(name, data, await this.#loadKey()));
    }
    return out;
  }

  #file(name: string): string {
    return path.join(this.dir, `${name}${suffix}`);
  }

  async #mustExist(name: string): Promise<void> {
    await stat(this.#file(name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw notFound(name);
      throw err;
    });
  }

  /** The encrypted value in a new 0600 temp file beside the target, synced. */
  async #writeTemp(name: string, value: Uint8Array): Promise<string> {
    const key = await this.#loadKey();
    const iv = randomBytes(ivBytes);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    // The name is authenticated too: a file renamed to another secret's name does not decrypt.
    cipher.setAAD(Buffer.from(name));
    const body = Buffer.concat([cipher.update(value), cipher.final()]);
    const temp = path.join(this.dir, `.tmp-${randomBytes(8).toString('hex')}`);
    const file = await open(temp, 'wx', 0o600);
    try {
      await file.writeFile(Buffer.concat([magic, iv, cipher.getAuthTag(), body]));
      await file.sync();
    } finally {
      await file.close();
    }
    return temp;
  }

  #decrypt(name: string, data: Buffer, key: Buffer): Buffer {
    const headerBytes = magic.length + ivBytes + tagBytes;
    if (data.length < headerBytes || !data.subarray(0, magic.length).equals(magic)) {
      throw new KubefnError('INTERNAL', `secret file ${this.#file(name)} is not a kubefn secret (wrong header)`, {
        hint: `delete it and create the secret again: fn secret delete ${name}`,
      });
    }
    const iv = data.subarray(magic.length, magic.length + ivBytes);
    const tag = data.subarray(magic.length + ivBytes, headerBytes);
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.from(name));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(data.subarray(headerBytes)), decipher.final()]);
    } catch (err) {
      throw new KubefnError('INTERNAL', `cannot decrypt secret "${name}" with the key in ${this.keyFile}: it was written under another key, or the file was changed`, {
        cause: err,
        hint: `put back the key file it was written with, or create the secret again: fn secret delete ${name} && fn secret create ${name} ...`,
      });
    }
  }

  /** Reads the key, or makes it (and the secrets directory) on first use. */
  #loadKey(): Promise<Buffer> {
    this.#key ??= this.#readOrMakeKey().catch((err: unknown) => {
      this.#key = undefined;
      throw err;
    });
    return this.#key;
  }

  async #readOrMakeKey(): Promise<Buffer> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      const file = await open(this.keyFile, 'wx', 0o600);
      try {
        await file.writeFile(randomBytes(keyBytes));
        await file.sync();
      } finally {
        await file.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const key = await readFile(this.keyFile);
    if (key.length !== keyBytes) {
      throw new KubefnError('INTERNAL', `secret key ${this.keyFile} is ${key.length} bytes, not ${keyBytes}`, {
        hint: 'put back the key the secrets were written with; without it they cannot be read',
      });
    }
    return key;
  }
}

function notFound(name: string): KubefnError {
  return new KubefnError('NOT_FOUND', `no secret named "${name}"`, { hint: 'fn secret list shows the secrets there are' });
}
