// Objects by global id: node(id:) and nodes(ids:) with a selection per type.
import { graphql } from "./graphql.ts";

export const node = graphql`
  query NodeLookupQuery($id: ID!, $ids: [ID!]!) {
    node(id: $id) {
      __typename
      id
      ... on Session {
        title
      }
      ... on Run {
        status
      }
    }
    nodes(ids: $ids) {
      id
      ... on Snapshot {
        label
      }
      ... on User {
        email
      }
    }
  }
`;
