/** The inference library's log sink: the server maps each level to its logger's (services.ts). */
export type EngineLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** `warn`: something an operator should act on; `error`: a fault; `info`: the rest; `debug`: detail (small models' per-component load times). */
export type EngineLog = (message: string, level: EngineLogLevel) => void;
