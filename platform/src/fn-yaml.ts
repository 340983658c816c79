// Loads fn.yaml into a validated FunctionSpec; every error names the file, the field and its line.

import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isKubefnError, KubefnError, type FieldError } from './errors.js';
import { parseFunctionSpec, type FunctionSpec } from './spec.js';
import { isMap, isNode, isSeq, LineCounter, parseDocument, type Document } from 'yaml';

export const fnYamlName = 'fn.yaml';

/** Command-line settings that win over fn.yaml (`fn deploy --name --env --min --max`). */
export interface SpecOverrides {
  name?: string;
  env?: Record<string, string>;
  min?: number;
  max?: number;
}

export interface LoadedFunction {
  spec: FunctionSpec;
  /** Absolute path of fn.yaml. */
  file: string;
  /** The function's directory: where fn.yaml is and what `handler` is relative to. */
  dir: string;
}

/**
 * Reads `<target>/fn.yaml` (or `target` itself when it names a file), applies `overrides`, and
 * validates with parseFunctionSpec. Throws INVALID_SPEC whose fields carry "[fn.yaml:line:col]",
 * or NOT_FOUND with a hint to run `fn init` when there is no fn.yaml.
 */
export async function loadFnYaml(target: string, overrides: SpecOverrides = {}): Promise<LoadedFunction> {
  const file = await locate(path.resolve(target));
  const dir = path.dirname(file);
  const source = await readFile(file, 'utf8');
  const shown = displayPath(file);

  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const fields: FieldError[] = doc.errors.slice(0, 10).map((e) => {
      const pos = e.linePos?.[0];
      // Pretty errors end their first line with " at line L, column C:" and a source excerpt; we show the position ourselves.
      const text = (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '');
      return { field: pos ? `${shown}:${pos.line}:${pos.col}` : shown, message: text };
    });
    throw new KubefnError('INVALID_SPEC', `${shown} is not valid YAML`, {
      fields,
      hint: 'fix the YAML syntax at the positions above (indent with spaces, "key: value" per line)',
    });
  }
  const raw: unknown = doc.toJS();
  if (raw === null || raw === undefined) {
    throw new KubefnError('INVALID_SPEC', `${shown} is empty`, {
      hint: 'a minimal fn.yaml is "name: hello" and "handler: handler.js"; `fn init <name>` writes a commented one',
    });
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new KubefnError('INVALID_SPEC', `${shown} must be a mapping of fields (name, handler, scale, ...)`, {
      hint: 'start the file with "name: <function-name>"; `fn init <name>` writes a commented one',
    });
  }

  const input = applyOverrides(raw as Record<string, unknown>, overrides);
  try {
    return { spec: parseFunctionSpec(input), file, dir };
  } catch (err) {
    if (!isKubefnError(err, 'INVALID_SPEC')) throw err;
    const fields = (err.fields ?? []).map((f) => ({
      field: f.field,
      message: `${f.message} [${whereIs(f.field, doc, lineCounter, shown, overrides)}]`,
    }));
    throw new KubefnError('INVALID_SPEC', `invalid function spec in ${shown}`, {
      fields,
      hint: `fix the fields above in ${shown}; the fn.yaml that \`fn init\` writes lists every field with its default`,
      cause: err,
    });
  }
}

/** Relative to the working directory when inside it, else absolute. */
function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

async function locate(target: string): Promise<string> {
  const info = await stat(target).catch(() => null);
  if (info?.isFile()) return target;
  const file = info?.isDirectory() ? path.join(target, fnYamlName) : target;
  const found = await stat(file).catch(() => null);
  if (found?.isFile()) return file;
  const where = info?.isDirectory() ? `no ${fnYamlName} in ${target}` : `${target} does not exist`;
  throw new KubefnError('NOT_FOUND', where, {
    hint: `run \`fn init <name>\` to scaffold a function, or pass the directory that holds its ${fnYamlName}`,
  });
}

function applyOverrides(raw: Record<string, unknown>, o: SpecOverrides): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw };
  if (o.name !== undefined) out.name = o.name;
  if (o.env && Object.keys(o.env).length > 0) {
    const env = typeof raw.env === 'object' && raw.env !== null && !Array.isArray(raw.env) ? raw.env : {};
    out.env = { ...env, ...o.env };
  }
  if (o.min !== undefined || o.max !== undefined) {
    const scale = typeof raw.scale === 'object' && raw.scale !== null && !Array.isArray(raw.scale) ? raw.scale : {};
    out.scale = { ...scale, ...(o.min !== undefined ? { min: o.min } : {}), ...(o.max !== undefined ? { max: o.max } : {}) };
  }
  return out;
}

/**
 * "fn.yaml:7:3" for the deepest node of `field` ("scale.min", "triggers.0.subject") present in
 * the document, or the command-line flag the value came from.
 */
function whereIs(field: string, doc: Document, lines: LineCounter, shown: string, o: SpecOverrides): string {
  const segments = field.split('.').filter(Boolean);
  const flag =
    segments[0] === 'name' && o.name !== undefined ? '--name'
    : segments[0] === 'env' && segments[1] !== undefined && o.env?.[segments[1]] !== undefined ? '--env'
    : segments[0] === 'scale' && segments[1] === 'min' && o.min !== undefined ? '--min'
    : segments[0] === 'scale' && segments[1] === 'max' && o.max !== undefined ? '--max'
    : undefined;
  if (flag) return `from ${flag}`;

  let node: unknown = doc.contents;
  let offset = isNode(node) ? (node.range?.[0] ?? 0) : 0;
  for (const segment of segments) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isNode(p.key) ? String((p.key as { value?: unknown }).value) : String(p.key)) === segment);
      if (!pair) break;
      if (isNode(pair.key) && pair.key.range) offset = pair.key.range[0];
      node = pair.value;
    } else if (isSeq(node)) {
      const item = node.items[Number(segment)];
      if (!isNode(item)) break;
      if (item.range) offset = item.range[0];
      node = item;
    } else {
      break;
    }
  }
  const pos = lines.linePos(offset);
  return `${shown}:${pos.line}:${pos.col}`;
}
