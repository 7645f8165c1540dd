// Chooses and starts the sandbox provider from config: the one place that knows the implementations.
import { LocalProvider } from "./local/provider.ts";
import type { SandboxProvider } from "./provider.ts";

export interface SandboxConfig {
  provider: "local";
  dir: string;
  workspaces: "auto" | "overlay" | "copy";
  requireIsolation: boolean;
  allowLocalRepos: boolean;
  timeoutMs: number;
  maxOutputBytes: number;
  maxProcesses: number;
  maxMemoryBytes: number;
}

export async function createProvider(
  config: SandboxConfig,
  log: (level: "info" | "warn", message: string) => void,
): Promise<SandboxProvider> {
  const { timeoutMs, maxOutputBytes, maxProcesses, maxMemoryBytes } = config;
  return new LocalProvider({
    dir: config.dir,
    workspaces: config.workspaces,
    requireIsolation: config.requireIsolation,
    allowLocalRepos: config.allowLocalRepos,
    limits: { timeoutMs, maxOutputBytes, maxProcesses, maxMemoryBytes },
    log,
  }).init();
}
