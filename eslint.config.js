// ESLint runs only graphql-eslint's schema checks on the committed schema.graphql (part of
// `npm run lint:schema`); TypeScript is linted by biome (`npm run lint`).
import graphql from "@graphql-eslint/eslint-plugin";

export default [
  {
    files: ["schema.graphql"],
    languageOptions: {
      parser: graphql.parser,
      // The schema that the rules needing one (no-unreachable-types, relay-*) check against: this file.
      parserOptions: { graphQLConfig: { schema: "schema.graphql" } },
    },
    plugins: { "@graphql-eslint": graphql },
    rules: {
      ...graphql.configs["flat/schema-recommended"].rules,
      ...graphql.configs["flat/schema-relay"].rules,
      // Stricter than recommended (types and root fields only): every field, argument, input field and
      // enum value, so GraphiQL's docs panel explains everything.
      "@graphql-eslint/require-description": [
        "error",
        {
          types: true,
          rootField: true,
          FieldDefinition: true,
          InputValueDefinition: true,
          EnumValueDefinition: true,
          DirectiveDefinition: true,
        },
      ],
      // Off: value objects (payloads, events, file entries, health) have no identity to give; every type
      // with an identity implements Node instead, which test/schema/relay.test.ts checks.
      "@graphql-eslint/strict-id-in-types": "off",
      "@graphql-eslint/relay-edge-types": [
        "error",
        {
          withEdgeSuffix: true,
          // false: FileEntry (a path in one snapshot's directory) is a value, not an object to refetch.
          shouldImplementNode: false,
          // false: short bounded lists (members, branches, diff files) need no connection.
          listTypeCanWrapOnlyEdgeType: false,
        },
      ],
    },
  },
];
