// The outbound-URL policy on its own: address classes in their many spellings, names, schemes,
// operator allowances, DNS answers (an injected resolver), and pinning.
import { expect, test } from "bun:test";
import {
  isPublicAddress,
  OutboundPolicy,
  OutboundRefusedError,
  parseAllowance,
  parseAllowList,
  pinnedLookup,
  type ResolvedAddress,
} from "../../sandbox/outbound-policy.ts";

const HTTP = ["http", "https"];

/** A resolver from a fixed table; unknown names fail like NXDOMAIN. */
const table =
  (answers: Record<string, string[]>) =>
  async (hostname: string): Promise<ResolvedAddress[]> => {
    const list = answers[hostname];
    if (!list) throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    return list.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };

const strict = (answers: Record<string, string[]> = {}) =>
  new OutboundPolicy({ allowPrivate: false, allowHosts: [] }, table(answers));

async function reason(policy: OutboundPolicy, url: string, schemes = HTTP): Promise<string | null> {
  try {
    await policy.resolve(url, schemes);
    return null;
  } catch (error) {
    if (error instanceof OutboundRefusedError) return error.reason;
    throw error;
  }
}

test("non-public addresses are refused, public unicast passes", () => {
  const refused = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254", // cloud metadata
    "169.254.0.1",
    "100.64.0.1", // CGNAT
    "100.127.255.255",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1", // documentation
    "198.18.0.1", // benchmarking
    "192.0.0.170",
    "::1",
    "::",
    "::ffff:127.0.0.1", // IPv4-mapped
    "::ffff:7f00:1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::ffff:0:127.0.0.1", // IPv4-translated (RFC 6145)
    "::127.0.0.1", // ipaddr.js reads this spelling as mapped: judged by 127.0.0.1
    "::7f00:1", // IPv4-compatible (deprecated): outside 2000::/3
    "::808:808",
    "64:ff9b::127.0.0.1", // NAT64 of loopback
    "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
    "64:ff9b:1::8.8.8.8", // local-use NAT64
    "2002:7f00:1::", // 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1", // 6to4 of the metadata address
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
    "fc00::1",
    "fd00:ec2::254", // AWS metadata over IPv6
    "fe80::1",
    "febf::1",
    "fec0::1", // site-local
    "ff02::1",
    "100::1", // discard
    "2001:db8::1", // documentation
    "not an address",
  ];
  for (const ip of refused) expect({ ip, public: isPublicAddress(ip) }).toEqual({ ip, public: false });
  const allowed = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.15.255.255",
    "172.32.0.1",
    "100.63.255.255",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
  ];
  for (const ip of allowed) expect({ ip, public: isPublicAddress(ip) }).toEqual({ ip, public: true });
});

test("every IPv4 spelling of loopback in a URL is refused (WHATWG URL normalises them first)", async () => {
  const policy = strict();
  for (const url of [
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://00000177.0.0.01/",
    "http://127.1/",
    "http://0x7f.1/",
    "http://127.0.0.1./",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://0/",
    "https://10.1.2.3:8443/v1",
  ]) {
    expect({ url, reason: await reason(policy, url) }).toEqual({ url, reason: "NOT_PUBLIC" });
  }
  // The normalised URL is what callers pass on: a backslash cannot hide another host from curl.
  const tricky = await strict({ "evil.example": ["8.8.8.8"] }).resolve(
    "http://evil.example\\@127.0.0.1/",
    HTTP,
  );
  expect(tricky.hostname).toBe("evil.example");
  expect(tricky.url.href).toBe("http://evil.example/@127.0.0.1/");
});

test("names: loopback and metadata names are refused without a lookup; DNS answers are checked, all of them", async () => {
  let lookups = 0;
  const policy = new OutboundPolicy({ allowPrivate: false, allowHosts: [] }, async (name) => {
    lookups++;
    return table({
      "rebind.example": ["127.0.0.1"],
      "mixed.example": ["8.8.8.8", "10.0.0.5"],
      "v6.example": ["::1"],
      "mapped.example": ["::ffff:169.254.169.254"],
      "good.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
      "empty.example": [],
    })(name);
  });
  for (const url of [
    "http://localhost/",
    "http://LOCALHOST./",
    "http://api.localhost/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.goog/",
    "http://printer.local/",
  ])
    expect({ url, reason: await reason(policy, url) }).toEqual({ url, reason: "NOT_PUBLIC" });
  expect(lookups).toBe(0);
  for (const url of [
    "http://rebind.example/",
    "http://mixed.example/",
    "http://v6.example/",
    "http://mapped.example/",
    "http://empty.example/",
    "http://nxdomain.example/", // no such name: the same refusal as a private one
  ])
    expect({ url, reason: await reason(policy, url) }).toEqual({ url, reason: "NOT_PUBLIC" });
  const good = await policy.resolve("https://good.example/v1", HTTP);
  expect(good).toMatchObject({ hostname: "good.example", port: 443, literal: false });
  expect(good.addresses.map((a) => a.address)).toEqual([
    "93.184.215.14",
    "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
  ]);
  // One message for private, unresolvable and blocked: the answer does not map internal DNS.
  const messages = new Set<string>();
  for (const url of [
    "http://rebind.example/",
    "http://nxdomain.example/",
    "http://localhost/",
    "http://10.0.0.1/",
  ])
    await policy.resolve(url, HTTP).catch((e: Error) => messages.add(e.message));
  expect(messages.size).toBe(1);
});

test("schemes and malformed URLs", async () => {
  const policy = strict({ "example.com": ["93.184.215.14"] });
  expect(await reason(policy, "not a url")).toBe("INVALID_URL");
  expect(await reason(policy, "http://")).toBe("INVALID_URL");
  expect(await reason(policy, "http://[fe80::1%25eth0]/")).toBe("INVALID_URL");
  for (const url of [
    "file:///etc/passwd",
    "ftp://example.com/",
    "gopher://example.com/",
    "ssh://git@example.com/x.git",
    "git://example.com/x.git",
    "javascript:alert(1)",
    "data:text/plain,hi",
  ])
    expect({ url, reason: await reason(policy, url) }).toEqual({ url, reason: "UNSUPPORTED_SCHEME" });
  expect(await reason(policy, "https://example.com/", ["https"])).toBeNull();
  expect(await reason(policy, "http://example.com/", ["https"])).toBe("UNSUPPORTED_SCHEME");
  expect((await policy.resolve("https://93.184.215.14/v1", HTTP)).literal).toBe(true);
});

test("operator allowances: host:port, bare IP, CIDR, names; ALLOW_PRIVATE_URLS allows everything", async () => {
  const answers = { "llm.corp": ["10.9.8.7"], "other.corp": ["10.9.8.7"] };
  const policy = new OutboundPolicy(
    { allowPrivate: false, allowHosts: ["127.0.0.1:4010", "192.168.50.0/24", "llm.corp:8000", "[::1]:9000"] },
    table(answers),
  );
  expect(await reason(policy, "http://127.0.0.1:4010/v1")).toBeNull();
  expect(await reason(policy, "http://127.0.0.1:4011/v1")).toBe("NOT_PUBLIC"); // another port
  expect(await reason(policy, "http://127.0.0.2:4010/v1")).toBe("NOT_PUBLIC");
  expect(await reason(policy, "http://192.168.50.9/")).toBeNull();
  expect(await reason(policy, "http://192.168.51.9/")).toBe("NOT_PUBLIC");
  expect(await reason(policy, "http://llm.corp:8000/v1")).toBeNull();
  expect(await reason(policy, "http://llm.corp:8001/v1")).toBe("NOT_PUBLIC");
  expect(await reason(policy, "http://other.corp:8000/v1")).toBe("NOT_PUBLIC"); // same address, other name
  expect(await reason(policy, "http://[::1]:9000/")).toBeNull();
  expect(await reason(policy, "http://169.254.169.254/")).toBe("NOT_PUBLIC");

  const open = new OutboundPolicy(
    { allowPrivate: true, allowHosts: [] },
    table({ localhost: ["127.0.0.1"] }),
  );
  expect(await reason(open, "http://localhost:1234/")).toBeNull();
  expect(await reason(open, "http://10.0.0.1/")).toBeNull();
  expect(await reason(open, "file:///etc/passwd")).toBe("UNSUPPORTED_SCHEME"); // schemes still apply
});

test("allowance entries are validated (config refuses bad ones at start-up)", () => {
  for (const ok of [
    "127.0.0.1",
    "127.0.0.1:4010",
    "10.0.0.0/8",
    "::1",
    "[::1]:9000",
    "fd00::/8",
    "llm.corp",
    "LLM.corp:8000",
  ])
    expect(() => parseAllowance(ok)).not.toThrow();
  for (const bad of [
    "",
    "127.1",
    "2130706433",
    "10.0.0.0/33",
    "host:0",
    "host:99999",
    "ht tp",
    "a_b.corp",
    "[llm.corp]:1",
    "http://x",
  ])
    expect(() => parseAllowance(bad)).toThrow();
  expect(parseAllowList(" 127.0.0.1:4010, 10.0.0.0/8  llm.corp ")).toEqual([
    "127.0.0.1:4010",
    "10.0.0.0/8",
    "llm.corp",
  ]);
});

test("pinnedLookup answers with the checked addresses in both callback shapes", () => {
  const lookup = pinnedLookup([
    { address: "93.184.215.14", family: 4 },
    { address: "2606:2800::1", family: 6 },
  ]);
  const seen: unknown[] = [];
  lookup("example.com", { all: true }, (_e, address) => seen.push(address));
  lookup("example.com", {}, (_e, address, family) => seen.push([address, family]));
  expect(seen).toEqual([
    [
      { address: "93.184.215.14", family: 4 },
      { address: "2606:2800::1", family: 6 },
    ],
    ["93.184.215.14", 4],
  ]);
});
