// Public surface of the ConTree client (Nebius microVM sandboxes): see client.ts for the API.
export * from "./client.ts";
export * from "./encoding.ts";
export * from "./errors.ts";
export * from "./instance.ts";
export * from "./retry.ts";
export * from "./sse.ts";
export { buildPath, type HttpMethod, type QueryValue, type RequestSpec, Transport } from "./transport.ts";
export * from "./types.ts";
