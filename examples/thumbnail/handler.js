// POST an image (PNG, JPEG, WebP, GIF, AVIF, TIFF); get back a PNG thumbnail at most
// ?width= pixels wide (default 128) and as tall as keeps the aspect ratio.
import sharp from 'sharp';

/** Largest image accepted, in bytes, and largest thumbnail, in pixels. */
const maxInputBytes = 16 * 1024 * 1024;
const maxWidth = 2048;

export default async function thumbnail(request) {
  if (request.method !== 'POST') return Response.json({ error: 'POST an image' }, { status: 405 });
  const width = Number(new URL(request.url).searchParams.get('width') ?? 128);
  if (!Number.isInteger(width) || width < 1 || width > maxWidth) {
    return Response.json({ error: `width must be an integer from 1 to ${maxWidth}` }, { status: 400 });
  }
  if (Number(request.headers.get('content-length') ?? 0) > maxInputBytes) {
    return Response.json({ error: `images are at most ${maxInputBytes} bytes` }, { status: 413 });
  }
  const input = Buffer.from(await request.arrayBuffer());
  if (input.length > maxInputBytes) return Response.json({ error: `images are at most ${maxInputBytes} bytes` }, { status: 413 });
  try {
    const png = await sharp(input, { limitInputPixels: 64 * 1024 * 1024 }).resize({ width, withoutEnlargement: true }).png().toBuffer();
    return new Response(png, { headers: { 'content-type': 'image/png' } });
  } catch (err) {
    return Response.json({ error: `not an image sharp can read: ${err.message}` }, { status: 422 });
  }
}
