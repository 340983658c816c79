// PNG images made and read here, for the tests of examples/thumbnail (sharp): an input of a known
// size, and the size a thumbnail says it has, without an image library of the tests' own.

import { crc32, deflateSync } from 'node:zlib';

const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A `width` x `height` RGB PNG of a gradient: signature, IHDR, one IDAT, IEND. */
export function png(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bits per channel
  ihdr[9] = 2; // RGB
  const rows: number[] = [];
  for (let y = 0; y < height; y++) {
    rows.push(0); // filter: none
    for (let x = 0; x < width; x++) rows.push((x * 255) / width, (y * 255) / height, 128);
  }
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.from(rows))), chunk('IEND', Buffer.alloc(0))]);
}

/**
 * [width, height] from a PNG's IHDR, which the format puts first: bytes 8-15 are its length and
 * type, 16-23 the two sizes. Throws, naming what it found, for anything else.
 */
export function pngSize(image: Buffer): [number, number] {
  if (image.length < 24 || !image.subarray(0, 8).equals(signature) || image.toString('latin1', 12, 16) !== 'IHDR') {
    throw new Error(`not a PNG with an IHDR first: ${image.subarray(0, 32).toString('latin1')}`);
  }
  return [image.readUInt32BE(16), image.readUInt32BE(20)];
}
