// The `graphql` tag the sample's operations are written with. relay-compiler reads them from the
// source (scripts/schema-relay.ts); nothing runs this code.
export const graphql = (strings: TemplateStringsArray): string => strings.join("");
