/**
 * A JPEG's size, channels and EXIF orientation read from its markers in JavaScript, so the usual
 * photo skips sharp's header read (a libvips pipeline on the thread pool: about 0.3-0.7 ms of CPU an
 * image, a tenth of decoding a 500x375 JPEG). Only the plain case is read here: 8-bit baseline,
 * extended or progressive, 1, 3 or 4 components, at most one EXIF block whose first directory holds
 * the orientation, or none. Anything else (no orientation in IFD0, arithmetic coding, a malformed
 * segment, a second EXIF block) is left to sharp, so what libvips would say stays the answer.
 */

/** What the markers say; `orientation` 1-8 (1 when there is no EXIF block). */
export interface JpegHeader {
  width: number;
  height: number;
  components: 1 | 3 | 4;
  orientation: number;
}

const SOI = 0xd8;
const SOS = 0xda;
const APP1 = 0xe1;
/** Huffman-coded baseline, extended sequential and progressive frames, the ones read here. */
const FRAMES = new Set([0xc0, 0xc1, 0xc2]);
/** Every start-of-frame marker (C4 DHT, C8 JPG and CC DAC are not frames). */
const isFrame = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
const EXIF = [0x45, 0x78, 0x69, 0x66, 0, 0]; // "Exif\0\0"

/** The plain JPEG's header, or undefined when sharp should read it. */
export function readJpegHeader(b: Uint8Array): JpegHeader | undefined {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== SOI) return undefined;
  let frame: Omit<JpegHeader, 'orientation'> | undefined;
  let orientation: number | undefined;
  let exifBlocks = 0;
  let at = 2;
  while (at + 4 <= b.length) {
    if (b[at] !== 0xff) return undefined;
    const marker = b[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    if (marker === SOS) break;
    const length = (b[at + 2]! << 8) | b[at + 3]!;
    const start = at + 4;
    const end = at + 2 + length;
    if (length < 2 || end > b.length) return undefined;
    if (isFrame(marker)) {
      if (frame || !FRAMES.has(marker) || length < 8 || b[start] !== 8) return undefined;
      const height = (b[start + 1]! << 8) | b[start + 2]!;
      const width = (b[start + 3]! << 8) | b[start + 4]!;
      const components = b[start + 5]!;
      if (!width || !height || (components !== 1 && components !== 3 && components !== 4)) return undefined;
      frame = { width, height, components };
    } else if (marker === APP1 && EXIF.every((v, k) => b[start + k] === v)) {
      exifBlocks++;
      orientation = exifOrientation(b.subarray(start + EXIF.length, end));
      if (orientation === undefined) return undefined;
    }
    at = end;
  }
  if (!frame || exifBlocks > 1 || b[at] !== 0xff || b[at + 1] !== SOS) return undefined;
  return { ...frame, orientation: orientation ?? 1 };
}

/** The orientation tag (0x0112, one SHORT, 1-8) of the TIFF block's first directory, or undefined. */
function exifOrientation(tiff: Uint8Array): number | undefined {
  if (tiff.length < 8) return undefined;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return undefined;
  const u16 = (p: number) => (little ? tiff[p]! | (tiff[p + 1]! << 8) : (tiff[p]! << 8) | tiff[p + 1]!);
  const u32 = (p: number) => (little ? u16(p) + u16(p + 2) * 65536 : u16(p) * 65536 + u16(p + 2));
  if (u16(2) !== 42) return undefined;
  const ifd = u32(4);
  if (ifd < 8 || ifd + 2 > tiff.length) return undefined;
  const entries = u16(ifd);
  if (ifd + 2 + entries * 12 > tiff.length) return undefined;
  for (let e = 0; e < entries; e++) {
    const p = ifd + 2 + e * 12;
    if (u16(p) !== 0x0112) continue;
    const value = u16(p + 8);
    return u16(p + 2) === 3 && u32(p + 4) === 1 && value >= 1 && value <= 8 ? value : undefined;
  }
  return undefined;
}
