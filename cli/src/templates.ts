// The files `fn init` writes: a commented fn.yaml (defaults read from the spec schema) and a JS or TS handler.

import { clusterScaleDefaults } from '@kubefn/autoscaler';
import { FunctionSpecSchema, ScaleSchema } from '@kubefn/platform';

import type { Lang } from './init.js';

export type { Lang };

/** File name -> contents, in the order they are written. */
export type Scaffold = Record<string, string>;

export function scaffold(name: string, lang: Lang): Scaffold {
  const handler = `handler.${lang}`;
  const files: Scaffold = {
    'fn.yaml': fnYaml(name, handler),
    [handler]: lang === 'ts' ? tsHandler(name) : jsHandler(name),
    'package.json': packageJson(name, lang),
  };
  if (lang === 'ts') files['tsconfig.json'] = tsconfig();
  files['.gitignore'] = 'node_modules/\n.kubefn/\n';
  return files;
}

function fnYaml(name: string, handler: string): string {
  const props = ScaleSchema.properties as Record<string, { default?: unknown; description?: string }>;
  // Knobs without a schema default come from the cluster's autoscaler config; show Knative's.
  const cluster = clusterScaleDefaults() as Record<string, unknown>;
  const scaleLines = Object.entries(props).map(([key, p]) => {
    const fromCluster = p.default === undefined && key in cluster;
    const setting = `#   ${key}: ${String(fromCluster ? cluster[key] : p.default)}`;
    const note = fromCluster ? `${p.description ?? key} (cluster default)` : p.description;
    return note ? `${setting.padEnd(32)} # ${note}` : setting;
  });
  const timeout = (FunctionSpecSchema.properties.timeout as { default?: unknown }).default;
  return [
    `# ${name}: a kubefn function. \`fn deploy\` bundles the handler and deploys it;`,
    `# \`fn invoke ${name}\` calls it. Only \`name\` is required; the commented values are the defaults.`,
    `name: ${name}`,
    `handler: ${handler}`,
    '',
    '# env:',
    '#   GREETING: hello',
    `# timeout: ${String(timeout)}                     # per-call deadline`,
    '# resources:',
    '#   cpu: 500m',
    '#   memory: 256Mi',
    '',
    '# scale:',
    ...scaleLines,
    '',
    '# triggers:                       # default: [{type: http}]',
    '#   - type: http',
    '#   - type: nats',
    '#     subject: orders.created',
    '#   - type: cron',
    '#     schedule: "*/5 * * * *"',
    '',
  ].join('\n');
}

function jsHandler(name: string): string {
  return `// ${name}: answers GET with a greeting and POST with the JSON it was sent.

/**
 * @param {Request} request the incoming call (Web-standard Request)
 * @returns {Promise<Response | object>} an object is sent back as JSON
 */
export default async function handler(request) {
  const url = new URL(request.url);
  if (request.method === 'POST') {
    const body = await request.json().catch(() => null);
    if (body === null) return new Response('expected a JSON body\\n', { status: 400 });
    return { received: body };
  }
  const who = url.searchParams.get('name') ?? 'world';
  return { message: \`hello, \${who}\`, function: ${JSON.stringify(name)} };
}
`;
}

function tsHandler(name: string): string {
  return `// ${name}: answers GET with a greeting and POST {"name": "..."} with a personal one.

interface Greeting {
  message: string;
  function: string;
}

export default async function handler(request: Request): Promise<Response> {
  const url = new URL(request.url);
  let who = url.searchParams.get('name') ?? 'world';
  if (request.method === 'POST') {
    const body = (await request.json().catch(() => null)) as { name?: unknown } | null;
    if (typeof body?.name !== 'string') {
      return Response.json({ error: 'expected a JSON body like {"name": "Ada"}' }, { status: 400 });
    }
    who = body.name;
  }
  const greeting: Greeting = { message: \`hello, \${who}\`, function: ${JSON.stringify(name)} };
  return Response.json(greeting);
}
`;
}

function packageJson(name: string, lang: Lang): string {
  const pkg: Record<string, unknown> = { name, version: '0.1.0', private: true, type: 'module' };
  if (lang === 'ts') pkg.scripts = { typecheck: 'tsc --noEmit' };
  return JSON.stringify(pkg, null, 2) + '\n';
}

function tsconfig(): string {
  const config = {
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      lib: ['ES2022', 'DOM'],
      strict: true,
      noEmit: true,
      skipLibCheck: true,
    },
    include: ['*.ts'],
  };
  return JSON.stringify(config, null, 2) + '\n';
}
