// Access tokens: JWTs signed with jose. EdDSA with a configured Ed25519 key, else HS256 with a secret
// from config; in development the secret is generated once and kept in the data directory.
import { createPublicKey, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { importPKCS8, importSPKI, errors as joseErrors, jwtVerify, SignJWT } from "jose";
import type { Config } from "../config.ts";

const ISSUER = "opencode.cloud";
const AUDIENCE = "opencode.cloud/api";

export interface VerifiedToken {
  userId: string;
  expiresAt: number;
  /** When the token was issued, in ms (see ISSUED_AT_MS). */
  issuedAt: number;
}

/**
 * The issue time in milliseconds, as a private claim: the standard `iat` has whole seconds, too coarse
 * to tell a token issued just before "sign out everywhere" from the fresh one issued just after.
 */
const ISSUED_AT_MS = "iat_ms";

export interface TokenService {
  issue(userId: string): Promise<{ token: string; expiresAt: number }>;
  /** Throws TokenError with a reason a client can act on. */
  verify(token: string): Promise<VerifiedToken>;
  /** Signs arbitrary claims for another audience (share links); never accepted as an access token. */
  signFor(audience: string, claims: Record<string, unknown>, expiresAt: number | undefined): Promise<string>;
  verifyFor(audience: string, token: string): Promise<Record<string, unknown>>;
  /** The signing secret (or key), as material for deriving other keys. */
  secretMaterial(): Promise<string>;
}

export class TokenError extends Error {
  constructor(readonly reason: "expired" | "invalid") {
    super(reason === "expired" ? "Token expired: sign in again" : "Invalid token");
  }
}

type KeyMaterial =
  | { alg: "HS256"; sign: Uint8Array; verify: Uint8Array }
  | { alg: "EdDSA"; sign: CryptoKey; verify: CryptoKey };

/** Reads or creates the development secret (0600) so tokens survive restarts on a laptop. */
function developmentSecret(dataDir: string): string {
  const file = join(dataDir, "jwt-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(48).toString("base64url");
  writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600);
  return secret;
}

async function keyMaterial(config: Config): Promise<KeyMaterial> {
  const { jwtPrivateKey, jwtSecret } = config.auth;
  if (jwtPrivateKey) {
    const spki = createPublicKey(jwtPrivateKey).export({ type: "spki", format: "pem" }).toString();
    return {
      alg: "EdDSA",
      sign: await importPKCS8(jwtPrivateKey, "EdDSA"),
      verify: await importSPKI(spki, "EdDSA"),
    };
  }
  const secret = new TextEncoder().encode(jwtSecret ?? developmentSecret(config.dataDir));
  return { alg: "HS256", sign: secret, verify: secret };
}

export async function createTokenService(config: Config): Promise<TokenService> {
  const key = await keyMaterial(config);
  const ttl = config.auth.tokenTtlSeconds;

  const sign = (audience: string, claims: Record<string, unknown>, expiresAt: number | undefined) => {
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: key.alg })
      .setIssuer(ISSUER)
      .setAudience(audience)
      .setIssuedAt()
      .setJti(crypto.randomUUID());
    if (expiresAt !== undefined) jwt.setExpirationTime(Math.floor(expiresAt / 1000));
    return jwt.sign(key.sign);
  };

  const verifyFor = async (audience: string, token: string) => {
    try {
      const { payload } = await jwtVerify(token, key.verify, {
        issuer: ISSUER,
        audience,
        algorithms: [key.alg],
      });
      return payload as Record<string, unknown>;
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new TokenError("expired");
      throw new TokenError("invalid");
    }
  };

  return {
    async issue(userId) {
      const now = Date.now();
      const expiresAt = (Math.floor(now / 1000) + ttl) * 1000;
      return { token: await sign(AUDIENCE, { sub: userId, [ISSUED_AT_MS]: now }, expiresAt), expiresAt };
    },
    async verify(token) {
      const payload = await verifyFor(AUDIENCE, token);
      if (typeof payload.sub !== "string" || typeof payload.exp !== "number") throw new TokenError("invalid");
      const precise = payload[ISSUED_AT_MS];
      // Tokens without the claim (issued before it existed) fall back to iat, rounded down: never later.
      const issuedAt =
        typeof precise === "number" ? precise : typeof payload.iat === "number" ? payload.iat * 1000 : 0;
      return { userId: payload.sub, expiresAt: payload.exp * 1000, issuedAt };
    },
    signFor: sign,
    verifyFor,
    secretMaterial: async () =>
      config.auth.jwtPrivateKey ?? config.auth.jwtSecret ?? developmentSecret(config.dataDir),
  };
}
