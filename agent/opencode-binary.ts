// Where the opencode binary is. We depend on the platform package (opencode-linux-x64, pinned)
// rather than the opencode-ai wrapper: the wrapper only picks a platform binary, and its other
// platforms' packages are missing from our registry, which breaks `npm ci`. Same file either way.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

export const OPENCODE_VERSION = "1.18.33";

/**
 * The agent's state directory, inside the workspace: its conversation (opencode's database) lives
 * with the files, so snapshots carry it: a fork continues it, a rollback forgets.
 */
export const AGENT_STATE_DIR = ".opencode-state";

export function opencodeBinary(): string | null {
  try {
    const pkg = createRequire(import.meta.url).resolve(
      `opencode-${process.platform}-${process.arch}/package.json`,
    );
    const bin = join(dirname(pkg), "bin", "opencode");
    return existsSync(bin) ? bin : null;
  } catch {
    return null;
  }
}

/** Environment that keeps opencode offline and self-contained under `stateDir`. */
export function offlineEnv(stateDir: string): Record<string, string> {
  return {
    HOME: join(stateDir, "home"),
    XDG_CONFIG_HOME: join(stateDir, "xdg/config"),
    XDG_DATA_HOME: join(stateDir, "xdg/data"),
    XDG_CACHE_HOME: join(stateDir, "xdg/cache"),
    XDG_STATE_HOME: join(stateDir, "xdg/state"),
    OPENCODE_DISABLE_AUTOUPDATE: "1",
    OPENCODE_DISABLE_MODELS_FETCH: "1",
    OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
    OPENCODE_DISABLE_SHARE: "1",
    OPENCODE_DISABLE_DEFAULT_PLUGINS: "1",
    OPENCODE_DISABLE_CLAUDE_CODE: "1",
    OPENCODE_DISABLE_EXTERNAL_SKILLS: "1",
  };
}

/** opencode.json for a project whose model is an OpenAI-compatible endpoint, with unattended permissions. */
export function projectConfig(baseURL: string, apiKey: string, model = "fake-model"): string {
  return JSON.stringify(
    {
      $schema: "https://opencode.ai/config.json",
      model: `platform/${model}`,
      small_model: `platform/${model}`,
      autoupdate: false,
      share: "disabled",
      permission: {
        "*": "allow",
        edit: "allow",
        bash: "allow",
        webfetch: "allow",
        external_directory: "allow",
      },
      provider: {
        platform: {
          npm: "@ai-sdk/openai-compatible",
          name: "opencode.cloud",
          options: { baseURL, apiKey },
          models: { [model]: { name: model, tool_call: true, limit: { context: 128000, output: 8192 } } },
        },
      },
    },
    null,
    2,
  );
}
