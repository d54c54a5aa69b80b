/**
 * The logger every service takes: the four pino methods it uses, so a pino logger (or a child)
 * fits, and tests pass a recording or silent one.
 */
export interface Logger {
  debug(obj: object, msg: string): void
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

/** Logs nothing. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} }
