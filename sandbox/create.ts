// Chooses and starts the sandbox providers from config: the one place that knows the implementations.
// `local` is offered unless `offerLocal` is false (it is the embedded default); `contree` when it has credentials.
import { ContreeClient } from "./contree/client.ts";
import { ContreeProvider } from "./contree/provider.ts";
import type { Patcher } from "./diff.ts";
import { LocalProvider } from "./local/provider.ts";
import type { OutboundPolicy } from "./outbound-policy.ts";
import type { SandboxProvider } from "./provider.ts";
import { SandboxProviders } from "./registry.ts";

export interface ContreeConfig {
  /** Base URL, without /v1. */
  url: string;
  token: string;
  /** The Project header (IAM tokens); null for legacy JWT tokens. */
  project: string | null;
  /** The image new sandboxes start from: a UUID or tag:NAME. */
  image: string;
  /** Imported under the tag when the tag does not exist yet; null = never import. */
  imageSource: string | null;
  /** Outbound network for commands (the agent needs it to reach the model gateway). */
  network: boolean;
  /** Longest silence of an archive or event stream being read before it fails (CONTREE_STREAM_IDLE_MS). */
  streamIdleMs: number;
}

export interface SandboxConfig {
  /** The default for new sessions. */
  provider: "local" | "contree";
  /** Whether `local` is offered (default true; PROFILE=serverless: no bubblewrap, no workspaces on disk). */
  offerLocal?: boolean;
  contree: ContreeConfig | null;
  dir: string;
  /** The local snapshot store, when shared by instances on one machine (else `dir`/store). */
  storeDir?: string | null;
  workspaces: "auto" | "overlay" | "copy";
  requireIsolation: boolean;
  allowLocalRepos: boolean;
  timeoutMs: number;
  maxOutputBytes: number;
  maxProcesses: number;
  maxMemoryBytes: number;
  /** Bytes of files one command may write into its workspace (local; enforced while it runs). */
  maxWriteBytes: number;
  /** Entries one snapshot may hold (local). */
  maxSnapshotEntries: number;
  /** The free-disk floor: a command (or clone) that takes the disk below it is stopped (local). */
  minFreeDiskBytes: number;
}

export type ProviderLog = (level: "info" | "warn", message: string, provider: string) => void;

/** `patcher` makes diff patches off the event loop (the server's diff pool); inline when absent. */
export async function createProviders(
  config: SandboxConfig,
  log: ProviderLog,
  patcher?: Patcher,
  /** Where repository URLs may lead (public addresses only when absent). */
  outbound?: OutboundPolicy,
): Promise<SandboxProviders> {
  const { timeoutMs, maxOutputBytes, maxProcesses, maxMemoryBytes, maxWriteBytes } = config;
  const providers = new Map<string, SandboxProvider>();
  if (config.offerLocal !== false) {
    const local = new LocalProvider({
      dir: config.dir,
      storeDir: config.storeDir ?? undefined,
      workspaces: config.workspaces,
      requireIsolation: config.requireIsolation,
      allowLocalRepos: config.allowLocalRepos,
      limits: {
        timeoutMs,
        maxOutputBytes,
        maxProcesses,
        maxMemoryBytes,
        maxWriteBytes,
        maxSnapshotEntries: config.maxSnapshotEntries,
        minFreeDiskBytes: config.minFreeDiskBytes,
      },
      log: (level, message) => log(level, message, "local"),
      patcher,
      outbound,
    });
    providers.set("local", await local.init());
  }
  if (config.contree) {
    const { url, token, project, image, imageSource, network, streamIdleMs } = config.contree;
    const contree = new ContreeProvider({
      client: new ContreeClient({ baseUrl: url, token, project, streamIdleMs }),
      image,
      imageSource,
      network,
      limits: { timeoutMs, maxOutputBytes },
      log: (level, message) => log(level, message, "contree"),
      patcher,
      outbound,
    });
    providers.set("contree", contree.init());
  }
  return new SandboxProviders(providers, config.provider);
}
