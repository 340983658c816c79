// A small seeded PRNG, so a simulation run is a pure function of its inputs and its seed.

/** Uniform numbers in [0, 1), mulberry32: fast, 32-bit state, good enough for a load model. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** An exponential draw with the given mean (inverse transform; 1 - u is in (0, 1]). */
export const exponential = (random: () => number, mean: number): number => -mean * Math.log(1 - random());

/**
 * Arrivals of a Poisson process with `rate` per ms during `ms`: counts exponential gaps until they
 * pass the step. Exact for a rate that is constant within the step, and memoryless, so a new
 * rate in the next step needs no bookkeeping.
 */
export function poissonArrivals(random: () => number, rate: number, ms: number): number {
  if (rate <= 0) return 0;
  let n = 0;
  for (let t = exponential(random, 1 / rate); t < ms; t += exponential(random, 1 / rate)) n++;
  return n;
}
