// jpeg_compression: encoded as JPEG at `quality` and decoded again (OpenCV's libjpeg, 4:2:0
// chroma subsampling for colour), working on the bytes directly.
import { TtaqError } from '../../errors/index.ts';
import { cv, matFromU8, u8Of } from '../cv.ts';
import { level, type Corruption } from './common.ts';

/** JPEG quality, severities 1-5 (CIFAR-10-C's table). */
export const JPEG_QUALITY = [80, 65, 58, 50, 40] as const;

export const jpegCompression: Corruption = {
  name: 'jpeg_compression',
  random: false,
  apply(batch, severity) {
    const q = JPEG_QUALITY[level(severity, this.name)]!;
    const c = cv();
    const { height: H, width: W, channels: C } = batch;
    const per = H * W * C;
    const out = new Uint8Array(batch.images.length);
    for (let i = 0; i < batch.count; i++) {
      let m = matFromU8(batch.images.subarray(i * per, (i + 1) * per), H, W, C);
      if (C === 3) m = m.cvtColor(c.COLOR_RGB2BGR);
      const jpg = c.imencode('.jpg', m, [c.IMWRITE_JPEG_QUALITY, q]);
      let d = c.imdecode(jpg, C === 1 ? c.IMREAD_GRAYSCALE : c.IMREAD_COLOR);
      if (C === 3) d = d.cvtColor(c.COLOR_BGR2RGB);
      const bytes = u8Of(d);
      if (bytes.length !== per) throw new TtaqError('INTERNAL', `jpeg_compression: decoded ${bytes.length} bytes, expected ${per}`);
      out.set(bytes, i * per);
    }
    return out;
  },
};
