/**
 * `npx tsx bench/noise.ts`: what each noise generator (NOISE_GENERATORS) costs per standard normal,
 * filling one SD latent of 4×64×64 (a 512² image's initial noise, or one ancestral step's) at a
 * time. Generators run interleaved, REPS rounds of ROUNDS fills each; prints the median ns per value
 * and the ratio to the default.
 */
import { createNoiseGenerator, DEFAULT_NOISE_GENERATOR, NOISE_GENERATORS } from '../src/inference/random.js';

const SIZE = 4 * 64 * 64;
const ROUNDS = 200;
const REPS = 9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const out = new Float32Array(SIZE);
const times = new Map<string, number[]>(NOISE_GENERATORS.map((name) => [name, []]));
for (let rep = 0; rep <= REPS; rep++) {
  for (const name of NOISE_GENERATORS) {
    const generator = createNoiseGenerator(name, rep);
    const start = process.hrtime.bigint();
    for (let r = 0; r < ROUNDS; r++) generator.fillNormal(out);
    const ns = Number(process.hrtime.bigint() - start) / (ROUNDS * SIZE);
    if (rep > 0) times.get(name)!.push(ns); // round 0 warms the JIT
  }
}
const base = median(times.get(DEFAULT_NOISE_GENERATOR)!);
for (const name of NOISE_GENERATORS) {
  const ns = median(times.get(name)!);
  console.log(
    `${name.padEnd(8)} ${ns.toFixed(1).padStart(6)} ns/value  ${(ns / base).toFixed(2)}× ${DEFAULT_NOISE_GENERATOR}  (${((ns * SIZE) / 1e6).toFixed(2)} ms per 4×64×64)`,
  );
}
