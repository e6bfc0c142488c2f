/**
 * Loaded by ava before every test file (package.json "ava.require"): fixes fast-check's seed so property tests
 * reproduce. Set FC_SEED to explore other seeds locally.
 */
import fc from 'fast-check';

fc.configureGlobal({ seed: Number(process.env.FC_SEED ?? 20261124) });
