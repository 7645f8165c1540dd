// The local provider: the shared contract for both workspace strategies, plus isolation and limits.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalProvider } from "../../sandbox/local/provider.ts";
import { runProviderContract } from "./provider.contract.ts";

const dirs = new Map<LocalProvider, string>();

for (const workspaces of ["overlay", "copy"] as const) {
  runProviderContract({
    name: `local (${workspaces})`,
    async newProvider() {
      const dir = mkdtempSync(join(tmpdir(), `occ-sbx-${workspaces}-`));
      const provider = await new LocalProvider({ dir, workspaces, allowLocalRepos: true }).init();
      dirs.set(provider, dir);
      return provider;
    },
    async dispose(provider) {
      await provider.close();
      rmSync(dirs.get(provider as LocalProvider)!, { recursive: true, force: true });
    },
  });
}
