// One session as a Relay app writes it: fragments on Node types (refetched through node(id:)), runs
// paged forward, snapshots paged backward from the newest (last/before), and a mutation whose result
// Relay merges into the store by global id.
import { graphql } from "./graphql.ts";

export const query = graphql`
  query SessionPageQuery($id: ID!) {
    session(id: $id) {
      id
      title
      mainBranch {
        ...SessionPage_branch
      }
      ...SessionPage_runs
      ...SessionPage_snapshots
    }
  }
`;

export const branch = graphql`
  fragment SessionPage_branch on Branch @refetchable(queryName: "SessionPageBranchRefetchQuery") {
    id
    name
    status
    head {
      id
      label
    }
  }
`;

export const runs = graphql`
  fragment SessionPage_runs on Session
  @refetchable(queryName: "SessionPageRunsPaginationQuery")
  @argumentDefinitions(count: { type: "Int", defaultValue: 20 }, cursor: { type: "String" }) {
    runs(first: $count, after: $cursor) @connection(key: "SessionPage_runs") {
      edges {
        node {
          id
          kind
          status
          input
          exitCode
        }
      }
    }
  }
`;

export const snapshots = graphql`
  fragment SessionPage_snapshots on Session
  @refetchable(queryName: "SessionPageSnapshotsPaginationQuery")
  @argumentDefinitions(count: { type: "Int", defaultValue: 50 }, cursor: { type: "String" }) {
    snapshots(last: $count, before: $cursor) @connection(key: "SessionPage_snapshots") {
      edges {
        node {
          id
          parentId
          origin
          label
          createdAt
        }
      }
    }
  }
`;

export const checkpoint = graphql`
  mutation SessionPageCheckpointMutation($branchId: ID!) {
    checkpoint(branchId: $branchId) {
      id
      label
    }
  }
`;
