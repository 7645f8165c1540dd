// Run changes applied to a live Y.Text: exact, small where it can be (cursors outside the changed
// spans stay put), and bounded on large files (the changed span is replaced whole past the budget).
import { expect, test } from "bun:test";
import * as Y from "yjs";
import { applyTextChange, textChanges } from "../../collab/text-edit.ts";

function textOf(content: string) {
  const doc = new Y.Doc();
  const text = doc.getText("content");
  text.insert(0, content);
  return { doc, text };
}

const cursorAt = (text: Y.Text, index: number) => Y.createRelativePositionFromTypeIndex(text, index);
const indexOf = (doc: Y.Doc, cursor: Y.RelativePosition) =>
  Y.createAbsolutePositionFromRelativePosition(cursor, doc)!.index;

/** ~1 MiB of distinct lines. */
const bigLines = (tag: string) =>
  Array.from({ length: 16_000 }, (_, i) => `line ${i} ${tag} lorem ipsum dolor sit amet, consectetur\n`);

test("the result is exactly the new text, whatever changed (emoji kept whole)", () => {
  const cases: [string, string][] = [
    ["", "new file\n"],
    ["gone\n", ""],
    ["roses are red\nviolets are blue\n", "roses are red\nviolets are green\n"],
    ["a 😀 b", "a 😃 b"],
    ["x\n".repeat(5000), "y\n".repeat(5000)],
  ];
  const base = bigLines("a");
  cases.push([base.join(""), bigLines("b").join("")]);
  cases.push([base.join(""), base.map((l, i) => (i % 2 ? l.toUpperCase() : l)).join("")]);
  for (const [from, to] of cases) {
    const { text } = textOf(from);
    applyTextChange(text, to, "test");
    expect(text.toString()).toBe(to);
    expect(text.toString()).not.toContain("\ufffd");
  }
});

test("in a 1 MiB file, two edited lines far apart leave every cursor between them in place", () => {
  const base = bigLines("a");
  const from = base.join("");
  const to = base.map((l, i) => (i === 10 || i === 15_000 ? l.replace("ipsum", "IPSUM") : l)).join("");
  const { doc, text } = textOf(from);
  // On unchanged lines between the two edits, and inside an edited line after the edit.
  const middle = from.indexOf("line 8000 a");
  const lineTen = from.indexOf("line 10 a");
  const cursors = [cursorAt(text, middle), cursorAt(text, lineTen + "line 10 a lorem ipsum".length)];
  applyTextChange(text, to, "test");
  expect(text.toString()).toBe(to);
  expect(indexOf(doc, cursors[0]!)).toBe(middle);
  expect(indexOf(doc, cursors[1]!)).toBe(lineTen + "line 10 a lorem IPSUM".length);
});

test("edits are line- then character-sized, not a wholesale replace", () => {
  const base = bigLines("a");
  const to = base.map((l, i) => (i % 1000 === 0 ? l.replace("dolor", "DOLOR") : l)).join("");
  const changes = textChanges(base.join(""), to);
  const removed = changes.filter((c) => c.removed).reduce((n, c) => n + c.value.length, 0);
  // 16 words of 5 characters changed, out of ~1 MiB.
  expect(removed).toBeLessThan(200);
});

test("past its time budget a changed span is replaced whole: still exact", () => {
  const from = bigLines("a").join("");
  const to = bigLines("b").join("");
  const changes = textChanges(from, to, 0);
  expect(changes).toEqual([
    { value: from, removed: true },
    { value: to, added: true },
  ]);
  const small = textChanges("one two three", "one 2 three", 0);
  expect(
    small
      .filter((c) => !c.added)
      .map((c) => c.value)
      .join(""),
  ).toBe("one two three");
  expect(
    small
      .filter((c) => !c.removed)
      .map((c) => c.value)
      .join(""),
  ).toBe("one 2 three");
});
