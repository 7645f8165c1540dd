// Where user-supplied URLs may lead: the model endpoints users bring (setModelKey, the gateway) and
// the repositories sessions clone. A URL passes when its scheme is allowed and every address its host
// resolves to is public unicast, unless the operator allows more (OUTBOUND_ALLOW_HOSTS,
// ALLOW_PRIVATE_URLS). Callers connect to the addresses checked here (pinning), never to a second
// DNS answer, so a name cannot pass the check and then rebind to 127.0.0.1.
//
// A leaf: no project imports, so agent/ and sandbox/ (and resolvers/ through them) share one policy.
// Range classification is ipaddr.js's (a small, widely used library whose tables follow the IANA
// special-purpose registries) rather than hand-written CIDR maths that is easy to get subtly wrong.
import { lookup } from "node:dns/promises";
import ipaddr from "ipaddr.js";

export type OutboundRefusal = "INVALID_URL" | "UNSUPPORTED_SCHEME" | "NOT_PUBLIC";

/** A URL the policy refuses; `reason` is stable, the message is safe to show to the user. */
export class OutboundRefusedError extends Error {
  constructor(
    readonly reason: OutboundRefusal,
    message: string,
  ) {
    super(message);
    this.name = "OutboundRefusedError";
  }
}

export interface OutboundRules {
  /** Every address is allowed (a single-user development machine; never a shared server). */
  allowPrivate: boolean;
  /**
   * Operator exceptions: `host`, `host:port`, `[v6]:port`, an IP or a CIDR (`10.1.0.0/16`). A host
   * name entry trusts that name whatever it resolves to; IP and CIDR entries allow those addresses.
   */
  allowHosts: readonly string[];
}

type Allowance =
  | { kind: "name"; name: string; port: number | null }
  | { kind: "range"; range: [ipaddr.IPv4 | ipaddr.IPv6, number]; port: number | null };

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** A checked target: connect only to `addresses`, sending `hostname` as Host/SNI. */
export interface ResolvedTarget {
  /** The normalised URL (WHATWG): pass this on, never the raw input (parsers differ). */
  url: URL;
  /** Lower case, without IPv6 brackets or a trailing dot. */
  hostname: string;
  port: number;
  addresses: ResolvedAddress[];
  /** The host is an IP literal: nothing to resolve or pin. */
  literal: boolean;
}

export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

const DNS_TIMEOUT_MS = 5000;

const systemResolver: Resolver = async (hostname) => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("DNS lookup timed out")), DNS_TIMEOUT_MS);
  });
  try {
    const answers = await Promise.race([lookup(hostname, { all: true, verbatim: true }), timeout]);
    return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
  } finally {
    clearTimeout(timer);
  }
};

/**
 * Names refused before any lookup: loopback by definition (RFC 6761) and the clouds' metadata
 * services. Resolution would catch them too on most machines; these do not depend on /etc/hosts.
 */
const BLOCKED_NAMES = new Set(["localhost", "metadata.google.internal", "metadata.goog", "instance-data"]);
const BLOCKED_SUFFIXES = [".localhost", ".internal", ".local", ".home.arpa"];

/** The one message for every address-level refusal: it must not tell "no such name" from "private". */
const NOT_PUBLIC = "does not resolve to a public address this server may connect to";

const DEFAULT_PORTS: Record<string, number> = { "http:": 80, "https:": 443 };

export class OutboundPolicy {
  private readonly allowances: Allowance[];

  constructor(
    private readonly rules: OutboundRules,
    private readonly resolver: Resolver = systemResolver,
  ) {
    this.allowances = rules.allowHosts.map(parseAllowance);
  }

  /** Parses and checks the scheme only (no DNS). `schemes` without the colon: ["http", "https"]. */
  parse(raw: string, schemes: readonly string[]): URL {
    let url: URL;
    try {
      url = new URL(raw.trim());
    } catch {
      throw new OutboundRefusedError("INVALID_URL", "is not a valid URL");
    }
    if (!schemes.includes(url.protocol.slice(0, -1)))
      throw new OutboundRefusedError("UNSUPPORTED_SCHEME", `must use ${schemes.join(" or ")}`);
    if (!url.hostname || DEFAULT_PORTS[url.protocol] === undefined)
      throw new OutboundRefusedError("INVALID_URL", "is not a valid URL");
    return url;
  }

  /** Parses, resolves and checks every address; OutboundRefusedError when any is not allowed. */
  async resolve(raw: string | URL, schemes: readonly string[]): Promise<ResolvedTarget> {
    const url = typeof raw === "string" ? this.parse(raw, schemes) : this.parse(raw.href, schemes);
    const hostname = url.hostname.replace(/^\[|\]$/g, "").replace(/\.+$/, "");
    const port = url.port ? Number(url.port) : DEFAULT_PORTS[url.protocol]!;
    // WHATWG URL has already rewritten every IPv4 spelling (2130706433, 0177.0.0.1, 127.1, 0x7f.1)
    // to dotted decimal, and IPv6 literals come in brackets: a name can look like neither.
    const literal = url.hostname.startsWith("[") || /^\d+\.\d+\.\d+\.\d+$/.test(hostname);
    const target = { url, hostname, port, literal };
    if (literal) {
      const addr = ipaddr.parse(hostname);
      const address = { address: addr.toString(), family: addr.kind() === "ipv6" ? 6 : 4 } as const;
      if (!this.addressAllowed(address.address, port)) throw refused();
      return { ...target, addresses: [address] };
    }
    const trustedName = this.rules.allowPrivate || this.nameAllowed(hostname, port);
    if (!trustedName && isBlockedName(hostname)) throw refused();
    let addresses: ResolvedAddress[];
    try {
      addresses = await this.resolver(hostname);
    } catch {
      throw refused();
    }
    if (addresses.length === 0) throw refused();
    // All of them: the connection may use any, and a name that mixes public and private is suspect.
    if (!trustedName && !addresses.every((a) => this.addressAllowed(a.address, port))) throw refused();
    return { ...target, addresses };
  }

  /** Whether a connection to `address`:`port` is allowed (public, or allowed by the operator). */
  addressAllowed(address: string, port: number): boolean {
    if (this.rules.allowPrivate) return true;
    if (!ipaddr.isValid(address)) return false;
    const addr = ipaddr.parse(address);
    if (isPublicAddress(addr)) return true;
    return this.allowances.some(
      (a) =>
        a.kind === "range" &&
        (a.port === null || a.port === port) &&
        sameFamily(addr, a.range[0]) &&
        addr.match(a.range),
    );
  }

  private nameAllowed(hostname: string, port: number): boolean {
    return this.allowances.some(
      (a) => a.kind === "name" && a.name === hostname && (a.port === null || a.port === port),
    );
  }
}

const refused = () => new OutboundRefusedError("NOT_PUBLIC", NOT_PUBLIC);

function isBlockedName(hostname: string): boolean {
  return BLOCKED_NAMES.has(hostname) || BLOCKED_SUFFIXES.some((s) => hostname.endsWith(s));
}

function sameFamily(a: ipaddr.IPv4 | ipaddr.IPv6, b: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  return a.kind() === b.kind();
}

const v4 = (hi: number, lo: number) =>
  new ipaddr.IPv4([(hi >> 8) & 0xff, hi & 0xff, (lo >> 8) & 0xff, lo & 0xff]);

/**
 * Public unicast only. IPv4 must be in no special range (loopback, private, link-local incl.
 * 169.254.169.254, CGNAT, 0/8, multicast, broadcast, reserved, documentation…). IPv6 must be global
 * unicast (2000::/3) outside every special range; forms that carry an IPv4 address (mapped,
 * translated, NAT64, 6to4) are judged by that address, and Teredo is refused.
 */
export function isPublicAddress(input: string | ipaddr.IPv4 | ipaddr.IPv6): boolean {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = typeof input === "string" ? ipaddr.parse(input) : input;
  } catch {
    return false;
  }
  if (addr.kind() === "ipv4") return (addr as ipaddr.IPv4).range() === "unicast";
  const v6 = addr as ipaddr.IPv6;
  const p = v6.parts;
  switch (v6.range()) {
    case "ipv4Mapped": // ::ffff:a.b.c.d
    case "rfc6145": // ::ffff:0:a.b.c.d
      return isPublicAddress(v4(p[6]!, p[7]!));
    case "rfc6052": // 64:ff9b::a.b.c.d (well-known NAT64); 64:ff9b:1::/48 is local-use: refused
      return p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0 && isPublicAddress(v4(p[6]!, p[7]!));
    case "6to4": // 2002:aabb:ccdd::/48 embeds aa.bb.cc.dd
      return isPublicAddress(v4(p[1]!, p[2]!));
    case "unicast":
      return (p[0]! & 0xe000) === 0x2000;
    default:
      return false;
  }
}

/** Parses one OUTBOUND_ALLOW_HOSTS entry; throws Error with a message naming the bad entry. */
export function parseAllowance(entry: string): Allowance {
  const raw = entry.trim().toLowerCase();
  const bad = () => new Error(`"${entry}" is not a host, host:port, IP, [IPv6]:port or CIDR`);
  if (!raw) throw bad();
  if (raw.includes("/")) {
    if (!ipaddr.isValidCIDR(raw)) throw bad();
    const [ip, bits] = ipaddr.parseCIDR(raw);
    if (ip.kind() === "ipv4" && !ipaddr.IPv4.isValidFourPartDecimal(raw.split("/")[0]!)) throw bad();
    return { kind: "range", range: [ip, bits], port: null };
  }
  let host = raw;
  let port: number | null = null;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(raw);
  if (bracketed) {
    host = bracketed[1]!;
    port = bracketed[2] === undefined ? null : Number(bracketed[2]);
  } else if (!ipaddr.IPv6.isValid(raw)) {
    const m = /^([^:]+)(?::(\d+))?$/.exec(raw);
    if (!m) throw bad();
    host = m[1]!;
    port = m[2] === undefined ? null : Number(m[2]);
  }
  if (port !== null && (port < 1 || port > 65535)) throw bad();
  host = host.replace(/\.+$/, "");
  if (ipaddr.IPv6.isValid(host) || ipaddr.IPv4.isValidFourPartDecimal(host)) {
    const ip = ipaddr.parse(host);
    return { kind: "range", range: [ip, ip.kind() === "ipv6" ? 128 : 32], port };
  }
  if (bracketed || !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(host))
    throw bad();
  if (/^[0-9.]+$/.test(host)) throw bad(); // "127.1" and friends: write the address out in full
  return { kind: "name", name: host, port };
}

/** Splits OUTBOUND_ALLOW_HOSTS (comma or space separated) and checks every entry. */
export function parseAllowList(value: string): string[] {
  const entries = value.split(/[\s,]+/).filter(Boolean);
  for (const entry of entries) parseAllowance(entry);
  return entries;
}

/** A node:net `lookup` that answers with already-checked addresses (connect-time pinning). */
export function pinnedLookup(addresses: readonly ResolvedAddress[]) {
  return (
    _hostname: string,
    options: { all?: boolean } | number | undefined,
    callback: (error: Error | null, address: string | ResolvedAddress[], family?: number) => void,
  ): void => {
    if (typeof options === "object" && options?.all) callback(null, [...addresses]);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  };
}
