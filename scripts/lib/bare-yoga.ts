// The hot-path baseline: bare graphql-yoga on Bun serving a one-field schema of the same shape as the
// platform's `{ me { id } }`, with no auth, no limits and no database. bench-server starts it beside
// the platform and prints the ratio. Prints "listening on <url>" once it serves.
import { createSchema, createYoga } from "graphql-yoga";

const yoga = createYoga({
  schema: createSchema({
    typeDefs: "type User { id: ID! }\ntype Query { me: User }",
    resolvers: { Query: { me: () => ({ id: "usr_bare" }) } },
  }),
  graphiql: false,
  landingPage: false,
  logging: false,
});

const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: yoga.fetch });
console.log(`listening on http://127.0.0.1:${server.port}`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
