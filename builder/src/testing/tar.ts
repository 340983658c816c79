// Tar archives for tests, hostile ones included: every entry written as given, with tar-stream.

import { pack, type Header } from 'tar-stream';

export type TarTestEntry = Partial<Header> & { name: string; body?: string | Buffer };

export async function tarOf(entries: TarTestEntry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    p.on('data', (c: unknown) => chunks.push(c as Buffer));
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const { body, ...header } of entries) p.entry({ mtime: new Date(0), ...header }, body ?? '');
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}
