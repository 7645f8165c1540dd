// Repository URLs for sessions made from git: checked against the outbound policy before any clone,
// the git options that keep a clone on the checked address, and the errors a failed clone may show.
// Both providers use it: `local` clones on the host, `contree` inside its microVM.
import { OutboundPolicy, OutboundRefusedError, type ResolvedTarget } from "./outbound-policy.ts";
import { SandboxError } from "./provider.ts";

/**
 * What the user sees for every failure to fetch: refused, reset, timed out, not found, no such
 * repository, authentication wanted. Telling them apart would turn cloning into a port scanner.
 */
export const FETCH_FAILED = "Could not fetch the repository (check the URL and that it is public)";

const STRICT = new OutboundPolicy({ allowPrivate: false, allowHosts: [] });

/** The repository URL, checked and resolved; BAD_BASE naming the rule otherwise. */
export async function checkRepoUrl(url: string, policy: OutboundPolicy = STRICT): Promise<ResolvedTarget> {
  try {
    return await policy.resolve(url, ["https", "http"]);
  } catch (error) {
    if (!(error instanceof OutboundRefusedError)) throw error;
    if (error.reason === "NOT_PUBLIC")
      throw new SandboxError("BAD_BASE", `The repository URL ${error.message}`);
    throw new SandboxError(
      "BAD_BASE",
      "Repository URLs must be https:// or http:// (ssh, git:// and other transports are refused)",
    );
  }
}

/**
 * `git -c` options for a network clone of a checked target: http(s) only, no redirects (nor
 * http-alternates, which git treats alike), and curl told to connect to the checked addresses
 * (http.curloptResolve, git 2.37+; older gits ignore it, and then the check alone stands).
 */
export function gitNetworkConfig(target: ResolvedTarget): string[] {
  const config = [
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "http.followRedirects=false",
  ];
  if (!target.literal) {
    const addresses = target.addresses.map((a) => (a.family === 6 ? `[${a.address}]` : a.address));
    // The name exactly as curl will see it in the normalised URL (a trailing dot included).
    config.push(`http.curloptResolve=${target.url.hostname}:${target.port}:${addresses.join(",")}`);
  }
  return config.flatMap((c) => ["-c", c]);
}

/**
 * The message for a failed clone. Only a missing ref (the server answered, and the user chose the
 * ref) is told apart; everything else is FETCH_FAILED. The raw stderr goes to the log, not here.
 */
export function cloneFailure(stderr: string, ref: string | undefined): SandboxError {
  if (
    ref &&
    (/Remote branch .* not found/i.test(stderr) ||
      /pathspec .* did not match/i.test(stderr) ||
      /Could not find remote branch/i.test(stderr))
  )
    return new SandboxError("BAD_BASE", `The ref "${ref}" was not found in the repository`);
  return new SandboxError("BAD_BASE", FETCH_FAILED);
}
