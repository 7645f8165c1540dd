// The page's GraphQL client: queries and mutations over HTTP, subscriptions over graphql-ws (the
// library's own browser build, served by the server from node_modules). One socket per sign-in.
import { createClient } from "./vendor/graphql-ws/client.js";

const TOKEN_KEY = "opencode.cloud.token";
const EMAIL_KEY = "opencode.cloud.email";

/** A GraphQL error as the API typed it (extensions.code). */
export class ApiError extends Error {
  /** @param {string} message @param {string} code */
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

/** @param {unknown} errors */
function toApiError(errors) {
  const first = Array.isArray(errors) ? errors[0] : errors;
  if (first && typeof first === "object" && "message" in first) {
    const code = /** @type {{ extensions?: { code?: string } }} */ (first).extensions?.code ?? "ERROR";
    return new ApiError(String(first.message), code);
  }
  if (first instanceof CloseEvent) return new ApiError(first.reason || "The connection closed", "CLOSED");
  return new ApiError(String(first), "ERROR");
}

/** The signed-in account, kept for this tab only (sessionStorage). */
export const account = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  get email() {
    return sessionStorage.getItem(EMAIL_KEY);
  },
  /** @param {string} token @param {string} email */
  set(token, email) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(EMAIL_KEY, email);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EMAIL_KEY);
  },
};

/**
 * @param {string} query
 * @param {Record<string, unknown>} [variables]
 * @returns {Promise<any>} the data
 */
export async function request(query, variables = {}) {
  const token = account.token;
  const response = await fetch("/graphql", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/graphql-response+json, application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered ${response.status}`, "ERROR");
  }
  if (body.errors?.length) throw toApiError(body.errors);
  return body.data;
}

/** @type {import("./vendor/graphql-ws/client.js").Client | undefined} */
let socket;
/** @type {(state: "connecting" | "live" | "closed") => void} */
let onState = () => {};

/** @param {(state: "connecting" | "live" | "closed") => void} listener */
export function onConnectionState(listener) {
  onState = listener;
}

function client() {
  if (socket) return socket;
  const url = new URL("/graphql", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  socket = createClient({
    url: url.href,
    connectionParams: () => ({ authorization: `Bearer ${account.token}` }),
    lazy: true,
    // Reconnect for as long as the page is open (graphql-ws gives up on fatal closes such as 4401);
    // subscriptions start again, sessionEvents from its cursor.
    retryAttempts: Number.POSITIVE_INFINITY,
    on: {
      connecting: () => onState("connecting"),
      connected: () => onState("live"),
      closed: () => onState("closed"),
    },
  });
  return socket;
}

/**
 * Subscribes; returns the function that stops it.
 * @param {string} query
 * @param {Record<string, unknown>} variables
 * @param {{ next: (data: any) => void, error?: (error: ApiError) => void }} sink
 */
export function subscribe(query, variables, sink) {
  return client().subscribe(
    { query, variables },
    {
      next: (result) => {
        if (result.errors?.length) sink.error?.(toApiError(result.errors));
        else if (result.data) sink.next(result.data);
      },
      error: (error) => sink.error?.(toApiError(error)),
      complete: () => {},
    },
  );
}

/** Closes the socket (on sign-out: the next subscription opens one with the new token). */
export function disconnect() {
  socket?.dispose();
  socket = undefined;
}
