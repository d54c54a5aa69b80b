/** IPv4/IPv6 addresses and CIDR blocks as Tether takes them (ipAllow, ipDeny, TETHER_TRUSTED_PROXIES). */
import { isIPv4, isIPv6 } from 'node:net'

/** The rule's sentence (route.ts rules.cidr.text says the same to API users). */
export const CIDR_RULE = 'must be an IPv4 or IPv6 address, or a CIDR block (10.0.0.0/8, 192.168.1.7, 2001:db8::/32, ::1)'

/** Why `text` is not an address or CIDR block, or null. Dotted quads without leading zeros (octal to some parsers). */
export function cidrProblem(text: string): string | null {
  const slash = text.indexOf('/')
  const address = slash < 0 ? text : text.slice(0, slash)
  const prefix = slash < 0 ? undefined : text.slice(slash + 1)
  const v4 = isIPv4(address) && !/(?:^|\.)0[0-9]/.test(address)
  if (!v4 && !(address.includes(':') && isIPv6(address))) return CIDR_RULE
  if (prefix !== undefined && (!/^(?:0|[1-9][0-9]{0,2})$/.test(prefix) || Number(prefix) > (v4 ? 32 : 128))) return `has a prefix length out of range (${v4 ? '0 to 32 for IPv4' : '0 to 128 for IPv6'})`
  return null
}
