// The sandbox providers this server offers, by name (a session keeps the one it was created with),
// and the platform default for new sessions.
import { SandboxError, type SandboxProvider } from "./provider.ts";

export class SandboxProviders {
  constructor(
    private readonly providers: ReadonlyMap<string, SandboxProvider>,
    readonly defaultName: string,
  ) {
    if (!providers.has(defaultName)) throw new Error(`default provider "${defaultName}" is not configured`);
  }

  get names(): string[] {
    return [...this.providers.keys()];
  }

  get default(): SandboxProvider {
    return this.get(this.defaultName);
  }

  has(name: string): boolean {
    return this.providers.has(name);
  }

  /** The provider of that name; NOT_FOUND when this server does not offer it (any more). */
  get(name: string): SandboxProvider {
    const provider = this.providers.get(name);
    if (!provider)
      throw new SandboxError("NOT_FOUND", `The sandbox provider "${name}" is not configured on this server`);
    return provider;
  }

  all(): SandboxProvider[] {
    return [...this.providers.values()];
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((p) => p.close()));
  }
}
