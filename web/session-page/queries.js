// The GraphQL operations the page sends, in one place (schema.graphql says what each field means).

export const REGISTER = `mutation Register($email: String!, $password: String!) {
  register(email: $email, password: $password) { token user { id email } }
}`;

export const LOGIN = `mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { token user { id email } }
}`;

export const SESSIONS = `query Sessions($after: String) {
  sessions(first: 50, after: $after) {
    nodes { id title createdAt viewerRole }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const CREATE_SESSION = `mutation CreateSession($title: String!) {
  createSession(input: { title: $title }) { id }
}`;

const SNAPSHOT_FIELDS = "id parentId origin label fileCount createdAt createdBy { id status }";

/** Everything but the snapshots; read again (debounced) whenever the session changes. */
export const SESSION = `query Session($id: ID!) {
  session(id: $id) {
    id title viewerRole
    mainBranch { id }
    branches { id name isMain status head { id } }
    runs(first: 25) { nodes { id kind status input exitCode createdAt branch { id name } } }
    explorations { id status candidates { score passed branch { id } } }
    presence { key name color branchId user { id email } }
  }
}`;

/** The tree, a page at a time from the newest back; the first page also reads the event cursor. */
export const SNAPSHOTS = `query Snapshots($id: ID!, $before: String) {
  session(id: $id) {
    eventCursor
    snapshots(last: 100, before: $before) {
      nodes { ${SNAPSHOT_FIELDS} }
      pageInfo { hasPreviousPage startCursor }
    }
  }
}`;

export const SESSION_EVENTS = `subscription SessionEvents($id: ID!, $after: String) {
  sessionEvents(sessionId: $id, after: $after) {
    kind cursor
    snapshot { ${SNAPSHOT_FIELDS} }
  }
}`;

/** Progress of a running exploration: each event (a branch scored…) means fresh scores to read. */
export const EXPLORATION = `subscription Exploration($id: ID!) {
  exploration(id: $id) { kind }
}`;

export const PRESENCE = `subscription Presence($id: ID!) {
  presence(sessionId: $id) { kind entry { key name color branchId user { id email } } }
}`;

export const ANNOUNCE = `mutation Announce($id: ID!, $branch: ID) {
  announcePresence(sessionId: $id, branchId: $branch) { key }
}`;

export const AGENT_EVENTS = `subscription AgentEvents($branch: ID!) {
  agentEvents(branchId: $branch) {
    __typename
    ... on AgentTextDelta { runId partId text }
    ... on AgentToolEvent { runId callId tool phase title error }
    ... on AgentStepFinished { runId cost }
    ... on AgentPermissionAsked { runId permission patterns }
    ... on AgentPermissionReplied { runId reply }
    ... on AgentError { runId message }
    ... on AgentDone { runId }
  }
}`;

export const RUN_OUTPUT = `subscription RunOutput($run: ID!) {
  runOutput(runId: $run) {
    __typename
    ... on RunOutputChunk { seq stream text }
    ... on AgentTextDelta { text }
    ... on AgentToolEvent { tool phase title }
    ... on AgentError { message }
    ... on RunTrailTruncated { storedBytes }
    ... on RunFinished { status exitCode }
  }
}`;

export const EXEC = `mutation Exec($branch: ID!, $command: String!) {
  exec(branchId: $branch, command: $command) { id }
}`;

export const PROMPT = `mutation Prompt($branch: ID!, $text: String!) {
  prompt(branchId: $branch, text: $text) { id }
}`;

export const FORK = `mutation Fork($snapshot: ID!, $name: String) {
  fork(snapshotId: $snapshot, name: $name) { id name }
}`;

export const ROLLBACK = `mutation Rollback($branch: ID!, $snapshot: ID!) {
  rollback(branchId: $branch, snapshotId: $snapshot) { id }
}`;

export const PROMOTE = `mutation Promote($branch: ID!) {
  promote(branchId: $branch) { id }
}`;
