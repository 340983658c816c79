// Functions kept apart on one machine: when the process driver runs as root, each function's
// replicas run as a user of their own (uid = gid, from a range no login uses), in a private
// directory only that user reaches: a copy of the function's app, its home, its temp directory
// and its secret files. The state directory, the token and other functions' files and
// environments (/proc/<pid>/environ needs the same uid) stay out of its reach.

import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, chown, cp, lchown, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KubefnError } from './errors.js';
import type { ProcessArtifact } from './process-launch.js';

export interface IsolationOptions {
  /** Root-owned directory (made 0711) that holds one private directory per function. */
  runDir: string;
  /** JSON file (root's alone) keeping which uid each function has, so it keeps it across restarts. */
  usersFile: string;
  /** The node binary replicas run: every user must be able to reach and run it. */
  nodePath: string;
  /** First uid handed out; functions get the next free ones (default 420000). */
  firstId?: number;
  /** How many uids the range holds (default 65536). */
  idCount?: number;
}

/** Where one function's replica runs and as whom. */
export interface IsolatedPlace extends ProcessArtifact {
  uid: number;
  gid: number;
  /** HOME: private, writable. */
  home: string;
  /** TMPDIR: private, writable. */
  tmp: string;
  /** Where the function's secret files go. */
  secretsDir: string;
}

/** The run directory `fn up` uses for a state directory: under /var/lib, since a home under /root is closed to other users. */
export function defaultRunDir(stateDir: string): string {
  const key = createHash('sha256').update(path.resolve(stateDir)).digest('hex').slice(0, 12);
  return path.join('/var/lib/kubefn/run', key);
}

/** Whether this process may start replicas as other users. */
export function canIsolate(): boolean {
  return process.getuid?.() === 0;
}

export class ProcessIsolation {
  readonly runDir: string;
  readonly #usersFile: string;
  readonly #firstId: number;
  readonly #idCount: number;
  /** Function name -> uid; written through to the users file. */
  #users = new Map<string, number>();
  /** Function name -> the app copy its current spec runs, kept with the one before for replicas still draining. */
  readonly #copies = new Map<string, string[]>();

  private constructor(options: IsolationOptions) {
    this.runDir = path.resolve(options.runDir);
    this.#usersFile = options.usersFile;
    this.#firstId = options.firstId ?? 420_000;
    this.#idCount = options.idCount ?? 65_536;
  }

  /** Checks that isolation can work here, and clears what an earlier run left in the run directory. */
  static async open(options: IsolationOptions): Promise<ProcessIsolation> {
    if (!canIsolate()) {
      throw new KubefnError('NOT_SUPPORTED', 'running functions as users of their own needs root', {
        hint: 'run fn up as root, or without isolation',
      });
    }
    await checkReachableByAll(options.nodePath);
    const isolation = new ProcessIsolation(options);
    await mkdir(path.dirname(isolation.runDir), { recursive: true, mode: 0o711 });
    await rm(isolation.runDir, { recursive: true, force: true });
    await mkdir(isolation.runDir, { recursive: true, mode: 0o711 });
    // Every directory from / down must be root's and closed to writes by others: a user who
    // could rename one could swap a function's private directory for its own.
    for (let dir = isolation.runDir; ; dir = path.dirname(dir)) {
      const info = await lstat(dir);
      if (!info.isDirectory() || info.uid !== 0 || (info.mode & 0o022 && !(info.mode & 0o1000))) {
        throw new KubefnError('BAD_REQUEST', `${dir} must be a directory owned by root and not writable by others, to hold functions' private directories`);
      }
      if (dir === path.dirname(dir)) break;
    }
    await chmod(isolation.runDir, 0o711);
    isolation.#users = await readUsers(options.usersFile);
    return isolation;
  }

  /** The uid (and gid) of function `name`, handed out on first use. */
  async userOf(name: string): Promise<number> {
    const known = this.#users.get(name);
    if (known !== undefined) return known;
    const taken = new Set(this.#users.values());
    let id = this.#firstId;
    while (taken.has(id)) id++;
    if (id >= this.#firstId + this.#idCount) {
      throw new KubefnError('UNAVAILABLE', `no free uid left for function "${name}" (${this.#idCount} in use)`, { hint: 'remove functions you no longer need' });
    }
    this.#users.set(name, id);
    await this.#saveUsers();
    return id;
  }

  /**
   * Gives function `name` its private directory with a copy of `artifact` (its app directory,
   * or its bundle file alone), owned by the function's user, and says where everything is.
   */
  async place(name: string, artifact: ProcessArtifact): Promise<IsolatedPlace> {
    const uid = await this.userOf(name);
    const root = path.join(this.runDir, name);
    await mkdir(root, { recursive: true, mode: 0o700 });
    await chown(root, uid, uid).catch(async (err: NodeJS.ErrnoException) => {
      throw new KubefnError('INTERNAL', `cannot give ${root} to uid ${uid}: ${err.message}`);
    });
    const home = path.join(root, 'home');
    const tmp = path.join(root, 'tmp');
    const secretsDir = path.join(root, 'secrets');
    for (const dir of [home, tmp]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chown(dir, uid, uid);
    }
    // One copy per app (a bundle alone is its own app): a rolling update's old replicas keep theirs.
    const source = isStoredBundle(artifact.file) ? artifact.file : artifact.cwd;
    const key = createHash('sha256').update(source).digest('hex').slice(0, 16);
    const copy = path.join(root, `app-${key}`);
    if (!(await exists(copy))) {
      const temp = path.join(root, `.tmp-${randomBytes(6).toString('hex')}`);
      await cp(source, source === artifact.file ? path.join(temp, path.basename(source)) : temp, { recursive: true, verbatimSymlinks: true });
      await chownTree(temp, uid);
      await rename(temp, copy);
    }
    const previous = (this.#copies.get(name) ?? []).filter((c) => c !== copy);
    this.#copies.set(name, [copy, ...previous.slice(0, 1)]);
    for (const stale of previous.slice(1)) await rm(stale, { recursive: true, force: true });
    return {
      file: path.join(copy, path.relative(source === artifact.file ? path.dirname(source) : source, artifact.file)),
      cwd: copy,
      uid,
      gid: uid,
      home,
      tmp,
      secretsDir,
    };
  }

  /** Hands the secret files just written for a function to its user. */
  async ownSecrets(name: string, dir: string): Promise<void> {
    const uid = await this.userOf(name);
    await chownTree(dir, uid);
  }

  /** Removes function `name`'s private directory and frees its uid. */
  async forget(name: string): Promise<void> {
    await rm(path.join(this.runDir, name), { recursive: true, force: true });
    this.#copies.delete(name);
    if (this.#users.delete(name)) await this.#saveUsers();
  }

  /** Removes every private directory (decrypted secrets among them); the uids stay assigned. */
  async close(): Promise<void> {
    await rm(this.runDir, { recursive: true, force: true });
  }

  async #saveUsers(): Promise<void> {
    const temp = `${this.#usersFile}.tmp-${randomBytes(6).toString('hex')}`;
    await writeFile(temp, JSON.stringify(Object.fromEntries(this.#users), null, 2) + '\n', { mode: 0o600 });
    await rename(temp, this.#usersFile);
  }
}

async function readUsers(file: string): Promise<Map<string, number>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  const parsed = JSON.parse(text) as unknown;
  const users = new Map<string, number>();
  if (parsed && typeof parsed === 'object') {
    for (const [name, uid] of Object.entries(parsed)) if (Number.isInteger(uid) && (uid as number) > 0) users.set(name, uid as number);
  }
  return users;
}

/** A bundle alone, from the bundle store (`<sha256 hex>.mjs`), whose directory holds every other bundle too. */
function isStoredBundle(file: string): boolean {
  return /^[0-9a-f]{64}\.mjs$/.test(path.basename(file));
}

async function chownTree(dir: string, uid: number): Promise<void> {
  const info = await lstat(dir);
  if (info.isDirectory()) {
    for (const entry of await readdir(dir)) await chownTree(path.join(dir, entry), uid);
  }
  // lchown: a symlink is given away itself, never what it points at.
  await lchown(dir, uid, uid);
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** The node binary must be reachable (every directory above it searchable) and runnable by any user. */
async function checkReachableByAll(file: string): Promise<void> {
  const resolved = path.resolve(file);
  const info = await stat(resolved);
  if (!(info.mode & 0o001)) {
    throw new KubefnError('BAD_REQUEST', `${resolved} is not executable by other users, so functions cannot run it as users of their own`, {
      hint: 'install node where every user can run it (e.g. /usr/local/bin), or run fn up without isolation',
    });
  }
  for (let dir = path.dirname(resolved); ; dir = path.dirname(dir)) {
    const d = await stat(dir);
    if (!(d.mode & 0o001)) {
      throw new KubefnError('BAD_REQUEST', `${dir} is closed to other users, so functions cannot reach ${resolved} as users of their own`, {
        hint: 'install node where every user can run it (e.g. /usr/local/bin), or run fn up without isolation',
      });
    }
    if (dir === path.dirname(dir)) break;
  }
  await access(resolved, constants.X_OK);
}
