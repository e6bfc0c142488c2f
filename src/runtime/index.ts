export { Session, RuntimeError, defaultThreads, ortVersion, spinDefault, EXECUTION_PROVIDERS } from './session.ts';
export type { ExecutionProvider, SessionOptions, FeedValue, Fetched } from './session.ts';
