// The page's two live regions: what just happened (role=status) and what went wrong (role=alert).
import { byId } from "./dom.js";

/** @param {string} text */
export function say(text) {
  byId("status").textContent = text;
}

/** @param {unknown} error */
export function fail(error) {
  const code = error && typeof error === "object" && "code" in error ? ` (${error.code})` : "";
  byId("error").textContent = `${error instanceof Error ? error.message : String(error)}${code}`;
}

export function clearNotices() {
  byId("status").textContent = "";
  byId("error").textContent = "";
}
