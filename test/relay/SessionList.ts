// A session list page as a Relay app writes it: a paginated @connection on Query.sessions, refetched
// with new variables (@refetchable on Query).
import { graphql } from "./graphql.ts";

export const query = graphql`
  query SessionListQuery($count: Int = 20, $cursor: String) {
    ...SessionList_query @arguments(count: $count, cursor: $cursor)
    me {
      id
      email
    }
  }
`;

export const sessions = graphql`
  fragment SessionList_query on Query
  @refetchable(queryName: "SessionListPaginationQuery")
  @argumentDefinitions(count: { type: "Int", defaultValue: 20 }, cursor: { type: "String" }) {
    sessions(first: $count, after: $cursor) @connection(key: "SessionList_sessions") {
      edges {
        node {
          id
          title
          createdAt
          viewerRole
          owner {
            id
            email
          }
        }
      }
    }
  }
`;
