/**
 * A listener address, `[host]:port`: the one rule and parser for TETHER_PROXY_LISTEN,
 * TETHER_PROXY_LISTEN_TLS and TETHER_ADMIN_LISTEN (config.ts checks the environment with it) and
 * for the engine's own settings (haproxy/settings.ts), so both accept exactly the same addresses.
 */

const PORT = '(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})'

/** `:80` (every address), `*:80`, `127.0.0.1:8080`, `[::1]:8080`; port 1-65535. */
export const LISTEN_PATTERN = `^(?:(?:[0-9]{1,3}(?:\\.[0-9]{1,3}){3})|\\[[0-9A-Fa-f:.]{2,45}\\]|\\*)?:${PORT}$`
/** A DNS server: IPv4 or [IPv6] address and port. */
export const HOST_PORT_PATTERN = `^(?:(?:[0-9]{1,3}(?:\\.[0-9]{1,3}){3})|\\[[0-9A-Fa-f:.]{2,45}\\]):${PORT}$`

const listenRegExp = new RegExp(LISTEN_PATTERN)

export interface Listen {
  /** undefined: every address. */
  host: string | undefined
  port: number
}

/** Whether `text` is a listener address HAProxy's `bind` takes as is. */
export function isListen(text: string): boolean {
  return listenRegExp.test(text)
}

/** Parses `:80`, `127.0.0.1:8080`, `[::1]:8080`, `*:80`. Caller checked it with isListen (or the pattern). */
export function parseListen(text: string): Listen {
  const colon = text.lastIndexOf(':')
  const rawHost = text.slice(0, colon)
  const host = rawHost === '' || rawHost === '*' ? undefined : rawHost.replace(/^\[(.*)\]$/, '$1')
  return { host, port: Number(text.slice(colon + 1)) }
}

/** The text HAProxy's `bind` and the docs use: `:80`, `127.0.0.1:8080`, `[::1]:8080`. */
export function formatListen(listen: Listen): string {
  if (listen.host === undefined) return `:${listen.port}`
  return listen.host.includes(':') ? `[${listen.host}]:${listen.port}` : `${listen.host}:${listen.port}`
}
