// The adapter's option schema: a key it does not know is refused (a misspelt option would
// otherwise run silently as the default), with the valid keys in the message.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { methodOptions, parseAdaptOptions } from '../../sdk/adapt/index.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { parseSetFlags } from '../../tools/eval.ts';

const refused = (re: RegExp, code = 'CONFIG_INVALID') => (e: unknown): boolean => isTtaqError(e) && e.code === code && re.test(e.message);

test('unknown top-level and abl keys are refused with the valid keys', () => {
  assert.throws(() => parseAdaptOptions({ foo: 1 } as never, 'x'), refused(/^x: unknown option 'foo'; valid keys: loss, norm, .*lr, .*abl\.<key>$/));
  assert.throws(() => parseAdaptOptions({ abl: { tua: 0 } } as never, 'x'), refused(/unknown option 'abl\.tua'; valid keys: abl\.momentum, .*abl\.tau/));
  assert.throws(() => methodOptions('abl', { abl: { tua: 0 } } as never), refused(/method 'abl': unknown option 'abl\.tua'/));
  // known keys still parse, with the defaults filled in
  const o = parseAdaptOptions({ lr: 5e-4, abl: { tau: 0 } });
  assert.equal(o.lr, 5e-4);
  assert.equal(o.abl.tau, 0);
  assert.equal(o.abl.freqExp, 1);
});

test('ttaq eval --set with an unknown key is a usage error', () => {
  assert.throws(() => parseSetFlags(['abl.tua=0']), refused(/--set: unknown option 'abl\.tua'/, 'CLI_USAGE'));
  assert.throws(() => parseSetFlags(['foo=1']), refused(/--set: unknown option 'foo'/, 'CLI_USAGE'));
  assert.deepEqual(parseSetFlags(['abl.tau=0', 'norm=robust']), { abl: { tau: 0 }, norm: 'robust' });
});
