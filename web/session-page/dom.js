// Building DOM without HTML strings: every piece of text goes in as a text node (textContent), so
// nothing a user or a sandbox wrote (file names, output, labels) is ever parsed as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * @param {Element} el
 * @param {Record<string, unknown>} attrs  `on<event>` are listeners; false/null/undefined are left out.
 * @param {(Node | string | null | undefined | false)[]} children
 */
function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children)
    if (child !== null && child !== undefined && child !== false) el.append(child);
  return el;
}

/**
 * An HTML element: h("button", { type: "button", onclick }, "Run").
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 */
export const h = (tag, attrs = {}, ...children) => fill(document.createElement(tag), attrs, children);

/**
 * An SVG element: s("circle", { cx: 10, cy: 10, r: 9 }).
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 */
export const s = (tag, attrs = {}, ...children) =>
  fill(document.createElementNS(SVG_NS, tag), attrs, children);

/** @param {string} id */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el;
}

/** @param {string} iso */
export const time = (iso) => new Date(iso).toLocaleTimeString();
