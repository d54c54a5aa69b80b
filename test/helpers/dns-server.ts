/**
 * A DNS server on loopback for discovery tests (dns2, UDP): answers A queries for the names it
 * was given — `tasks.<service>` as Docker's embedded DNS would — with a TTL of 1 s; AAAA for a
 * known name gets an empty answer, an unknown name NXDOMAIN. `set()` changes an answer at once,
 * which is how a test scales a "service" up or down. PTR queries for an address are answered
 * with the name given to `setName()` (as Docker's DNS names a task address after the task).
 */
import dns2 from 'dns2'

const { Packet } = dns2

export interface TestDnsServer {
  /** `127.0.0.1:<port>`, for the resolvers setting. */
  address: string
  port: number
  /** Replaces the A records of `name` ([] = the name exists with no address). */
  set(name: string, addresses: string[]): void
  /** Makes `name` unknown (NXDOMAIN). */
  remove(name: string): void
  /** Answers PTR queries for `address` (IPv4) with `name`; undefined removes it (NXDOMAIN). */
  setName(address: string, name: string | undefined): void
  /** Stops answering (queries are dropped, as by an overloaded or partitioned DNS) until resume(). */
  pause(): void
  resume(): void
  /** A queries answered so far. */
  readonly queries: number
  close(): Promise<void>
}

export async function startDnsServer(records: Record<string, string[]> = {}): Promise<TestDnsServer> {
  const zone = new Map<string, string[]>(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v]))
  const ptr = new Map<string, string>()
  let queries = 0
  let paused = false
  const server = dns2.createUDPServer((request, send) => {
    if (paused) return
    const response = Packet.createResponseFromRequest(request)
    const [question] = request.questions
    if (question !== undefined) {
      const name = question.name.toLowerCase().replace(/\.$/, '')
      const addresses = zone.get(name)
      const reverse = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\.in-addr\.arpa$/.exec(name)
      if (reverse !== null && question.type === Packet.TYPE.PTR) {
        const task = ptr.get([reverse[4], reverse[3], reverse[2], reverse[1]].join('.'))
        if (task === undefined) response.header.rcode = 3
        else response.answers.push({ name: question.name, type: Packet.TYPE.PTR, class: Packet.CLASS.IN, ttl: 600, domain: task } as (typeof response.answers)[number])
      } else if (addresses === undefined) {
        response.header.rcode = 3 // NXDOMAIN
      } else if (question.type === Packet.TYPE.A) {
        queries++
        for (const address of addresses) {
          response.answers.push({ name: question.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 1, address } as (typeof response.answers)[number])
        }
      }
    }
    void send(response)
  })
  server.on('requestError', () => {})
  await server.listen(0, '127.0.0.1')
  const bound = server.address()
  let closed: Promise<void> | undefined
  return {
    address: `127.0.0.1:${bound.port}`,
    port: bound.port,
    set(name, addresses) {
      zone.set(name.toLowerCase(), [...addresses])
    },
    remove(name) {
      zone.delete(name.toLowerCase())
    },
    setName(address, name) {
      if (name === undefined) ptr.delete(address)
      else ptr.set(address, name)
    },
    pause() {
      paused = true
    },
    resume() {
      paused = false
    },
    get queries() {
      return queries
    },
    close() {
      closed ??= new Promise<void>((resolve) => server.close(() => resolve()))
      return closed
    },
  }
}
