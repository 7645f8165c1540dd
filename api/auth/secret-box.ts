// Sealing small secrets at rest (per-user model keys): AES-256-GCM with a key derived by HKDF from
// SECRETS_KEY, or from the token-signing secret when that is not set. Runtime-neutral (node:crypto).
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import type { SecretBox } from "../../resolvers/context.ts";

export function createSecretBox(material: string): SecretBox {
  const key = Buffer.from(hkdfSync("sha256", material, "opencode.cloud", "user secrets v1", 32));
  return {
    seal(plaintext) {
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      return `v1:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64url")}`;
    },
    open(sealed) {
      if (!sealed.startsWith("v1:")) throw new Error("unknown sealed format");
      const raw = Buffer.from(sealed.slice(3), "base64url");
      const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
    },
  };
}
