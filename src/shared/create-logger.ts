/**
 * The one place every role makes its pino logger. `LOG_FORMAT=json` (the default) writes one
 * JSON object a line, for log collectors; `LOG_FORMAT=pretty` writes coloured, human-readable
 * lines through pino-pretty, for a terminal. Pretty printing runs in the process (synchronous
 * writes, no worker thread): it is meant for people watching, not for high log volumes.
 */
import { pino, type Logger, type LoggerOptions } from 'pino'
import { Type } from 'typebox'
import pretty from 'pino-pretty'

export const LOG_FORMATS = ['json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]

export function createLogger(options: LoggerOptions, format: LogFormat, fd: 1 | 2 = 1): Logger {
  if (format === 'pretty') {
    const tty = fd === 1 ? process.stdout.isTTY : process.stderr.isTTY
    return pino(options, pretty({ destination: fd, sync: true, colorize: tty === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }))
  }
  return pino(options, pino.destination(fd))
}

/** TETHER_LOG_FORMAT, for every role; LOG_FORMAT is read too (when TETHER_LOG_FORMAT is unset). */
export const LogFormatEnv = {
  TETHER_LOG_FORMAT: Type.Optional(Type.Union(LOG_FORMATS.map((f) => Type.Literal(f)), { description: "Log format: 'json' (one object a line, the default) or 'pretty' (for terminals)." })),
  LOG_FORMAT: Type.Optional(Type.Union(LOG_FORMATS.map((f) => Type.Literal(f)), { description: 'The same as TETHER_LOG_FORMAT.' })),
}

export function logFormatOf(env: { TETHER_LOG_FORMAT?: LogFormat | undefined; LOG_FORMAT?: LogFormat | undefined }): LogFormat {
  return env.TETHER_LOG_FORMAT ?? env.LOG_FORMAT ?? 'json'
}
