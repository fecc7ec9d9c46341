/**
 * Admission to denoising (ModelHost): with the stage thread two pipeline calls denoise at once,
 * one in its denoise loop while the other's encoders or decoder run, but only when their memory
 * plans fit the budget together; calls enter in arrival order, and a model loads only once no
 * call is inside or waiting.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DenoiseSlots } from '../src/inference/modelHost.js';

const MB = 2 ** 20;
const call = (weightsOf: string, weightMb: number, mb: number) => ({ weightsOf, weightBytes: weightMb * MB, bytes: mb * MB });
const settledSoon = async <T>(p: Promise<T>): Promise<boolean> => {
  let done = false;
  void p.then(() => (done = true));
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return done;
};

describe('denoise slots', () => {
  it('admits a second call of the same model when both plans fit, counting its weights once', async () => {
    const slots = new DenoiseSlots(2);
    await slots.enter(call('m', 100, 300), 500 * MB); // transient 200
    // 100 weights + 200 + 200 = 500: fits exactly.
    assert.ok(await settledSoon(slots.enter(call('m', 100, 300), 500 * MB)));
  });

  it('holds a call whose plan does not fit beside the one inside until that one leaves', async () => {
    const slots = new DenoiseSlots(2);
    const leave = await slots.enter(call('m', 100, 300), 499 * MB);
    const second = slots.enter(call('m', 100, 300), 499 * MB);
    assert.equal(await settledSoon(second), false);
    leave();
    assert.ok(await settledSoon(second));
  });

  it('counts the weights of each model inside', async () => {
    const slots = new DenoiseSlots(2);
    await slots.enter(call('a', 100, 150), 400 * MB);
    // 100 + 100 weights + 50 + 150 transient = 400: fits; one byte less does not.
    assert.ok(await settledSoon(slots.enter(call('b', 100, 250), 400 * MB)));
    const tight = new DenoiseSlots(2);
    await tight.enter(call('a', 100, 150), 400 * MB - 1);
    assert.equal(await settledSoon(tight.enter(call('b', 100, 250), 400 * MB - 1)), false);
  });

  it('lets a lone call in whatever its plan (the plan has refused what can never fit) and no more than the limit', async () => {
    const slots = new DenoiseSlots(2);
    await slots.enter(call('m', 10, 20), 1);
    const one = new DenoiseSlots(1);
    await one.enter(call('m', 1, 2), 1e12);
    assert.equal(await settledSoon(one.enter(call('m', 1, 2), 1e12)), false);
  });

  it('admits in arrival order: a small call does not pass a large one waiting ahead of it', async () => {
    const slots = new DenoiseSlots(2);
    const leave = await slots.enter(call('m', 100, 300), 600 * MB);
    const large = slots.enter(call('m', 100, 500), 600 * MB);
    const small = slots.enter(call('m', 100, 150), 600 * MB);
    assert.equal(await settledSoon(large), false);
    assert.equal(await settledSoon(small), false);
    leave();
    assert.ok(await settledSoon(large));
    assert.ok(await settledSoon(small));
  });

  it('is idle only when no call is inside or waiting', async () => {
    const slots = new DenoiseSlots(1);
    assert.ok(await settledSoon(slots.idle()));
    const leave = await slots.enter(call('m', 1, 2), 1e12);
    const next = slots.enter(call('m', 1, 2), 1e12);
    const idle = slots.idle();
    assert.equal(await settledSoon(idle), false);
    leave();
    assert.equal(await settledSoon(idle), false);
    (await next)();
    assert.ok(await settledSoon(idle));
  });
});
