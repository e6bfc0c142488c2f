/**
 * Everything wrong with a node's `fl` settings, found before its mesh starts: the schema and the cross-key and
 * filesystem checks of fl-config.ts, then the chosen round protocol's own option rules (the registry's).
 */
import { ConfigError } from '../util/errors.ts';
import { checkFederationConfig, roundOptionsOf, type FederationConfig } from './fl-config.ts';
import { protocolOptionIssues } from './registry.ts';

/** @throws ConfigError (exit 2) naming the flags or the protocol rule. */
export function preflightFederation(input: unknown, opts: { filesystem?: boolean } = {}): FederationConfig {
  const cfg = checkFederationConfig(input, opts);
  const issues = protocolOptionIssues(cfg.protocol, roundOptionsOf(cfg));
  if (issues.length) throw new ConfigError(`--protocol ${cfg.protocol}: ${issues.join('; ')}`);
  return cfg;
}
