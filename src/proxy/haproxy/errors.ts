/** Coded errors of the HAProxy engine (same registry style as src/control/errors.ts). */
import createError from '@fastify/error'

/** The haproxy binary is missing or unusable; the message says how to install it. */
export const HaproxyNotInstalledError = createError<[string, string]>('HAPROXY_NOT_INSTALLED', 'HAProxy cannot run: %s; %s', 500)
/** HAProxy did not come up (its own output is in the message). */
export const HaproxyStartError = createError<[string]>('HAPROXY_START_FAILED', 'HAProxy did not start: %s', 500)
/** A reload did not produce a new worker; the previous one keeps serving. */
export const HaproxyReloadError = createError<[string]>('HAPROXY_RELOAD_FAILED', 'HAProxy reload failed: %s', 500)
/** `haproxy -c` refused the configuration and no route could be blamed; nothing was applied. */
export const HaproxyConfigError = createError<[string]>('HAPROXY_CONFIG_INVALID', 'HAProxy refused the configuration: %s', 500)
/** The runtime API did not answer. */
export const HaproxyRuntimeError = createError<[string]>('HAPROXY_RUNTIME_UNAVAILABLE', 'HAProxy runtime API: %s', 503)
